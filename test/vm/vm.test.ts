/**
 * A real VM on an okeanos volume (issue 3, "Done when: A real VM"). qemu-system-x86_64 under
 * TCG boots a kernel and an initramfs assembled from Debian packages (build-guest.sh), with
 * the volume attached as a virtio disk over NBD from `okeanos nbd serve`. The guest makes an
 * ext2 file system and writes two files; after power-off the test reads them through the
 * engine. Then the volume is snapshotted and cloned, and the clone boots, finds the files and
 * writes one of its own, which neither the snapshot nor the original sees.
 *
 * Needs qemu-system-x86, e2fsprogs (debugfs) and apt (test/vm/README.md): without them the
 * test is skipped with a warning, and fails under CI=true.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../engine/engine.ts";
import { openObjectStore } from "../../engine/blocker/open-store.ts";
import {
  bootGuest,
  bootTimeoutMs,
  buildGuest,
  exportThroughEngine,
  guestBuildTimeoutMs,
  hostTools,
  missingTools,
  readGuestFile,
  serveVolume,
  type BootResult,
  type Guest,
  type Server,
} from "./harness.ts";

const ci = process.env["CI"] === "true";
const missing = missingTools(hostTools);
const install = "apt-get install qemu-system-x86 e2fsprogs (test/vm/README.md)";
if (missing.length > 0 && !ci) {
  console.warn(`\n*** test/vm SKIPPED: ${missing.join(", ")} not found. To run it: ${install} ***\n`);
}

/** Big enough for a real file system, small enough that mke2fs stays quick under TCG. */
const volumeSizeBytes = 256 * 1024 * 1024;
/** `seq 1 200000` is 1.3 MB: a file spanning many 4 KiB guest blocks, written in one go. */
const seqLines = 200_000;
/** Boot, then export and debugfs on the host. */
const stepTimeoutMs = bootTimeoutMs + 60_000;

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

const seqText = `${Array.from({ length: seqLines }, (_, index) => index + 1).join("\n")}\n`;
const seqSha256 = sha256(seqText);

describe.skipIf(missing.length > 0 && !ci)("a real VM on an okeanos volume", () => {
  let dir: string;
  let storeDir: string;
  let guest: Guest;
  const servers: Server[] = [];
  const token = randomBytes(8).toString("hex");

  beforeAll(async () => {
    if (missing.length > 0) throw new Error(`CI=true and the VM test's host tools are missing: ${missing.join(", ")}. ${install}`);
    dir = await mkdtemp(join(tmpdir(), "okeanos-vm-"));
    storeDir = join(dir, "store");
    guest = await buildGuest();
    const engine = await Engine.init(await openObjectStore(`file:${storeDir}`, { create: true }));
    try {
      await engine.createVolume("disk", volumeSizeBytes);
    } finally {
      await engine.close();
    }
  }, guestBuildTimeoutMs + 10_000);

  afterAll(async () => {
    for (const server of servers) server.kill();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** Serves one export, boots the guest on it, and stops the server gracefully. */
  async function bootOn(exportName: string, params: Record<string, string>): Promise<BootResult> {
    const socketPath = join(dir, `${exportName}.sock`);
    const server = await serveVolume(storeDir, exportName, socketPath);
    servers.push(server);
    let booted: BootResult;
    try {
      booted = await bootGuest(guest, { socketPath, exportName, params });
    } catch (error) {
      server.kill();
      throw error;
    }
    await server.stop();
    return booted;
  }

  /** The guest's files in a volume, snapshot or clone, read through the engine. */
  async function filesOf(name: string): Promise<{ token?: string; seqSha256?: string; note?: string }> {
    const rawPath = join(dir, `${name}.raw`);
    await exportThroughEngine(storeDir, name, rawPath);
    try {
      const seq = await readGuestFile(rawPath, "/seq.txt");
      return {
        token: (await readGuestFile(rawPath, "/token.txt"))?.trim(),
        seqSha256: seq === undefined ? undefined : sha256(seq),
        note: (await readGuestFile(rawPath, "/note.txt"))?.trim(),
      };
    } finally {
      await rm(rawPath, { force: true });
    }
  }

  it(
    "the guest formats the disk and writes files over NBD; after power-off the engine reads them",
    async () => {
      const booted = await bootOn("disk", { task: "write", token, lines: String(seqLines) });
      expect(booted.result).toBe(`write-done token=${token} sha256=${seqSha256}`);

      expect(await filesOf("disk")).toEqual({ token, seqSha256, note: undefined });
    },
    stepTimeoutMs,
  );

  it(
    "a clone of a snapshot boots, finds the files, and its own writes stay its own",
    async () => {
      // TODO(issue 3): take the snapshot while the guest runs, through the serving process's
      // control socket (the it.todo below); until that exists it is taken with the server stopped.
      const engine = await Engine.open(await openObjectStore(`file:${storeDir}`));
      try {
        await engine.snapshot("disk", "snap1");
        await engine.clone("snap1", "disk2");
      } finally {
        await engine.close();
      }

      const note = randomBytes(8).toString("hex");
      const booted = await bootOn("disk2", { task: "check", note });
      expect(booted.result).toBe(`check-done token=${token} sha256=${seqSha256} note=${note}`);

      expect(await filesOf("disk2")).toEqual({ token, seqSha256, note });
      expect(await filesOf("snap1")).toEqual({ token, seqSha256, note: undefined });
      expect(await filesOf("disk")).toEqual({ token, seqSha256, note: undefined });
    },
    stepTimeoutMs,
  );

  it.todo("a snapshot taken through the control socket while the guest writes is crash-consistent, and its clone boots (issue 3)");
});
