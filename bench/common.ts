/**
 * Helpers shared by the benchmark groups: run options, temporary directories (removed on
 * exit, Ctrl-C included), a seeded PRNG so the engine and its peer see the same offsets,
 * and number formatting with the unit in every column name.
 */
import { rmSync } from "node:fs";
import { mkdtemp, rm, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export interface BenchContext {
  /** A short smoke run: smaller volumes, shorter timings. Numbers are not meaningful. */
  quick: boolean;
  /** Where temporary stores and raw files go (default: the OS temp dir). */
  tempParentDir: string;
}

export interface BenchGroup {
  readonly name: string;
  readonly description: string;
  run(context: BenchContext): Promise<void>;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Environment variable naming the directory for temporary stores (default os.tmpdir()). */
export const benchDirVariable = "OKEANOS_BENCH_DIR";

export function defaultTempParentDir(): string {
  return resolve(process.env[benchDirVariable] ?? tmpdir());
}

// ── temporary directories ──────────────────────────────────────────────────

const liveTempDirs = new Set<string>();
let signalHandlerInstalled = false;

function removeLiveTempDirsNow(): void {
  for (const dir of liveTempDirs) rmSync(dir, { recursive: true, force: true });
  liveTempDirs.clear();
}

/** Runs `body` with a fresh directory under `parent`, removed afterwards (and on SIGINT/SIGTERM). */
export async function withTempDir<T>(parent: string, label: string, body: (dir: string) => Promise<T>): Promise<T> {
  if (!signalHandlerInstalled) {
    signalHandlerInstalled = true;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        removeLiveTempDirsNow();
        process.exit(130);
      });
    }
  }
  const dir = await mkdtemp(join(parent, `okeanos-bench-${label}-`));
  liveTempDirs.add(dir);
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
    liveTempDirs.delete(dir);
  }
}

/** statfs(2) f_type magic numbers (linux/magic.h) of the file systems we are likely to meet. */
const fileSystemMagics = new Map<number, string>([
  [0xef53, "ext4"],
  [0x58465342, "xfs"],
  [0x9123683e, "btrfs"],
  [0x01021994, "tmpfs"],
  [0x794c7630, "overlayfs"],
  [0x2fc12fc1, "zfs"],
  [0xca451a4e, "bcachefs"],
  [0x6969, "nfs"],
]);

export async function fileSystemName(path: string): Promise<string> {
  const { type } = await statfs(path);
  return fileSystemMagics.get(type) ?? `unknown (statfs type 0x${type.toString(16)})`;
}

/** Refuses to start a benchmark that would fill the disk: `needBytes` plus a 2 GiB margin must be free. */
export async function assertFreeSpace(dir: string, needBytes: number): Promise<void> {
  const { bavail, bsize } = await statfs(dir);
  const freeBytes = bavail * bsize;
  const marginBytes = 2 * GiB;
  if (freeBytes < needBytes + marginBytes) {
    throw new Error(`${dir} has ${formatBytes(freeBytes)} free; this benchmark writes up to ${formatBytes(needBytes)} (plus a 2 GiB margin). Set ${benchDirVariable}.`);
  }
}

// ── randomness ─────────────────────────────────────────────────────────────

/** mulberry32: a tiny seeded PRNG, returns floats in [0, 1). Same seed, same offsets for every target. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** 0 … n-1 in a seeded random order. */
export function shuffledIndices(n: number, seed: number): number[] {
  const random = seededRandom(seed);
  const out = Array.from({ length: n }, (_, index) => index);
  for (let index = n - 1; index > 0; index--) {
    const other = Math.floor(random() * (index + 1));
    [out[index], out[other]] = [out[other] as number, out[index] as number];
  }
  return out;
}

// ── statistics and formatting ──────────────────────────────────────────────

/** The q-quantile (0…1) of `sorted`, nearest rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

export function median(values: readonly number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}

/** Bytes per millisecond → MB/s (10^6 bytes per second). */
export function megabytesPerSecond(bytes: number, elapsedMs: number): number {
  return bytes / 1e6 / (elapsedMs / 1000);
}

/** A number rounded to `significant` significant digits, as a number (console.table prints it plainly). */
export function round(value: number, significant = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  return Number(value.toPrecision(significant));
}

/** "1 GiB", "512 MiB", "4 KiB". */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [["TiB", 1024 * GiB], ["GiB", GiB], ["MiB", MiB], ["KiB", KiB]] as const) {
    if (bytes >= size) return `${round(bytes / size, 3)} ${unit}`;
  }
  return `${bytes} B`;
}

export function printTitle(title: string): void {
  console.log(`\n── ${title} ${"─".repeat(Math.max(0, 76 - title.length))}`);
}

/** console.table, rows numbered from 1. */
export function printTable(rows: ReadonlyArray<Record<string, unknown>>): void {
  console.table(Object.fromEntries(rows.map((row, index) => [index + 1, row])));
}
