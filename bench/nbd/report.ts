/**
 * Results of the NBD benchmark: per-round fio numbers per (workload, target), their medians,
 * and okeanos/peer ratios taken round by round (the two sides of a ratio ran back to back in
 * the same round, so drift in the machine's load hits both alike).
 */
import { median, round } from "../common.ts";
import type { FioResult, Workload } from "./fio.ts";

/** The comparisons issue 3 asks for: okeanos against each peer, the copy-on-write rows against qcow2. */
export const comparisons: ReadonlyArray<{ ours: string; peer: string }> = [
  { ours: "okeanos", peer: "qemu-nbd raw" },
  { ours: "okeanos", peer: "nbdkit file" },
  { ours: "okeanos-cow", peer: "qemu-nbd qcow2" },
  // OKEANOS_BENCH_NBD_BASELINE: this checkout against another one, in the same run.
  { ours: "okeanos", peer: "okeanos-base" },
];

export class Results {
  /** workload → target → one result per round (undefined where a job failed). */
  readonly #rounds = new Map<string, Map<string, Array<FioResult | undefined>>>();

  add(workload: Workload, target: string, round: number, result: FioResult | undefined): void {
    let byTarget = this.#rounds.get(workload.name);
    if (byTarget === undefined) this.#rounds.set(workload.name, (byTarget = new Map()));
    let list = byTarget.get(target);
    if (list === undefined) byTarget.set(target, (list = []));
    list[round] = result;
  }

  results(workload: Workload, target: string): FioResult[] {
    return (this.#rounds.get(workload.name)?.get(target) ?? []).filter((result): result is FioResult => result !== undefined);
  }

  /** The median of each measure over the rounds. */
  medians(workload: Workload, target: string): FioResult | undefined {
    const list = this.results(workload, target);
    if (list.length === 0) return undefined;
    const of = (pick: (result: FioResult) => number): number => median(list.map(pick));
    return {
      iops: of((result) => result.iops),
      megabytesPerSecond: of((result) => result.megabytesPerSecond),
      clatP50Us: of((result) => result.clatP50Us),
      clatP99Us: of((result) => result.clatP99Us),
      ios: of((result) => result.ios),
      serverCpuUsPerOp: of((result) => result.serverCpuUsPerOp),
    };
  }

  /** ours/peer throughput per round (rounds where both ran), then their median, min and max. */
  ratio(workload: Workload, ours: string, peer: string): { median: number; min: number; max: number; rounds: number } | undefined {
    const mine = this.#rounds.get(workload.name)?.get(ours) ?? [];
    const theirs = this.#rounds.get(workload.name)?.get(peer) ?? [];
    const ratios: number[] = [];
    for (let index = 0; index < Math.max(mine.length, theirs.length); index++) {
      const a = mine[index];
      const b = theirs[index];
      if (a !== undefined && b !== undefined && b.iops > 0) ratios.push(a.iops / b.iops);
    }
    if (ratios.length === 0) return undefined;
    return { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios), rounds: ratios.length };
  }

  toJSON(): unknown {
    return Object.fromEntries([...this.#rounds].map(([workload, byTarget]) => [workload, Object.fromEntries(byTarget)]));
  }
}

/** "1.23 (0.98–1.40)": median of the per-round ratios and their range. */
export function formatRatio(ratio: { median: number; min: number; max: number; rounds: number } | undefined): string {
  if (ratio === undefined) return "—";
  // Two significant digits: the noise floor here is ±25% (../shared/notes/nbd.md).
  const median = round(ratio.median, 2).toString();
  return ratio.rounds === 1 ? median : `${median} (${round(ratio.min, 2)}–${round(ratio.max, 2)})`;
}

/** The headline measure of a workload: IOPS for 4 KiB rows, MB/s for 1 MiB rows. */
export function headline(workload: Workload, result: FioResult | undefined): string {
  if (result === undefined) return "—";
  return workload.blockBytes >= 1024 * 1024 ? `${round(result.megabytesPerSecond)} MB/s` : `${round(result.iops)} IOPS`;
}

/** A GitHub-flavoured markdown table (for pasting into RESULTS.md). */
export function markdownTable(rows: ReadonlyArray<Record<string, unknown>>): string {
  const first = rows[0];
  if (first === undefined) return "";
  const columns = Object.keys(first);
  const line = (cells: readonly unknown[]): string => `| ${cells.map(String).join(" | ")} |`;
  return [line(columns), line(columns.map(() => "---")), ...rows.map((row) => line(columns.map((column) => row[column] ?? "—")))].join("\n");
}
