/**
 * A real VM on an okeanos volume (issue 3, "Done when: A real VM"). qemu-system-x86_64 under
 * TCG boots a kernel and an initramfs assembled from Debian packages (build-guest.sh), with
 * the volume attached as a virtio disk over NBD from `okeanos nbd serve`. The guest makes an
 * ext2 file system and writes two files; after power-off the test reads them through the
 * engine. Then the volume is snapshotted and cloned, and the clone boots, finds the files and
 * writes one of its own, which neither the snapshot nor the original sees.
 *
 * Then, on an ext4 volume (a journal), while a guest keeps writing and syncing files:
 * `okeanos volume snapshot` through the serving process's control socket — the guest never
 * notices, and the snapshot's clone boots, recovers its journal and holds every file synced
 * before the snapshot and none written after it; and a restart of the server under the
 * running guest (qemu's reconnect-delay), which goes on writing without an I/O error.
 *
 * And the `cloud` task compute.test.ts boots, without the compute service: a NoCloud seed
 * (genisoimage) as a second disk; the guest takes its hostname and keys, writes a marker, stays
 * up until the ACPI power button, and a second boot finds the marker.
 *
 * Needs qemu-system-x86, e2fsprogs (debugfs) and apt (test/vm/README.md), and genisoimage for
 * the cloud task: without them the test is skipped with a warning, and fails under CI=true.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../engine/engine.ts";
import { openObjectStore } from "../../engine/blocker/open-store.ts";
import { runCli } from "../../cli/testing/run-cli.ts";
import {
  bootGuest,
  bootTimeoutMs,
  buildGuest,
  exportThroughEngine,
  fileSystemFeatures,
  guestBuildTimeoutMs,
  hostTools,
  importExt4Volume,
  makeSeedIso,
  missingTools,
  readGuestFile,
  serveVolume,
  startGuest,
  type BootResult,
  type Guest,
  type RunningGuest,
  type Server,
} from "./harness.ts";

const ci = process.env["CI"] === "true";
const missing = missingTools([...hostTools, "genisoimage"]);
const install = "apt-get install qemu-system-x86 e2fsprogs genisoimage (test/vm/README.md)";
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
/** What the live task writes into each after-N.txt (`seq 1 2000`). */
const afterText = `${Array.from({ length: 2000 }, (_, index) => index + 1).join("\n")}\n`;
/** Anything the guest's kernel says when a disk request fails or ext4 finds damage. */
const ioErrorPattern = /I\/O error|EXT4-fs error|EXT4-fs warning|blk_update_request|Aborting journal/i;

/** The last after-N.txt the live task reports written and synced. */
function lastProgress(running: RunningGuest): number {
  const all = [...running.console().matchAll(/^OKEANOS-VM-PROGRESS: (\d+)$/gm)];
  return all.length === 0 ? 0 : Number(all.at(-1)?.[1]);
}

async function progressReaches(running: RunningGuest, count: number): Promise<void> {
  await running.waitFor(new RegExp(`^OKEANOS-VM-PROGRESS: ${count}$`, "m"));
}

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

  /** One file of the guest's file system in a volume or clone (cleanly unmounted), read through the engine. */
  async function fileIn(name: string, guestPath: string): Promise<string | undefined> {
    const rawPath = join(dir, `${name}.raw`);
    await exportThroughEngine(storeDir, name, rawPath);
    try {
      return await readGuestFile(rawPath, guestPath);
    } finally {
      await rm(rawPath, { force: true });
    }
  }

  /** Serves `name` and starts the live task on it, with qemu reconnecting to a restarted server. */
  async function startLive(name: string, note: string): Promise<{ socketPath: string; server: Server; running: RunningGuest }> {
    await importExt4Volume(storeDir, name, volumeSizeBytes, dir);
    const socketPath = join(dir, `${name}.sock`);
    const server = await serveVolume(storeDir, name, socketPath);
    servers.push(server);
    const running = startGuest(guest, {
      socketPath,
      exportName: name,
      params: { task: "live", token, lines: String(seqLines), note },
      reconnectDelaySeconds: 20,
    });
    await running.waitFor(/^OKEANOS-VM-READY: /m);
    return { socketPath, server, running };
  }

  /** Tells the live task to finish; its result must be clean and its console free of I/O errors. */
  async function finishLive(running: RunningGuest, note: string): Promise<number> {
    running.send("stop");
    const booted = await running.result;
    const after = Number(booted.fields.get("after"));
    expect(booted.result).toBe(`live-done token=${token} sha256=${seqSha256} after=${after} note=${note}`);
    expect(booted.console).not.toMatch(ioErrorPattern);
    return after;
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
      // The volume is not served here: the engine snapshots it directly (the live case is below).
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

  it(
    "a snapshot taken from the CLI while the guest writes is crash-consistent: its clone boots and holds what was synced before it",
    async () => {
      const note = randomBytes(8).toString("hex");
      const { server, running } = await startLive("live", note);
      await progressReaches(running, 2); // the guest is writing
      const taken = await runCli(["--store", `file:${storeDir}`, "volume", "snapshot", "live", "live-snap"]);
      expect(taken.code, taken.stderr).toBe(0);
      expect(taken.stdout).toBe(`Snapshot live-snap of live taken by the serving process ${server.pid} (256 MiB; no data copied)\n`);
      // Files reported synced before the snapshot was asked for are in it; files begun three
      // reports after it returned are not. The guest noticed nothing and goes on writing.
      const syncedBefore = 2;
      const writtenAfter = lastProgress(running) + 3;
      await progressReaches(running, writtenAfter);
      await finishLive(running, note);
      await server.stop();

      // The snapshot is of a mounted file system, as a power cut would leave it.
      const snapshotRaw = join(dir, "live-snap.raw");
      await exportThroughEngine(storeDir, "live-snap", snapshotRaw);
      expect(await fileSystemFeatures(snapshotRaw)).toContain("needs_recovery");
      await rm(snapshotRaw, { force: true });

      const clone = await runCli(["--store", `file:${storeDir}`, "volume", "clone", "live-snap", "live-clone"]);
      expect(clone.code, clone.stderr).toBe(0);
      const cloneNote = randomBytes(8).toString("hex");
      // The clone mounts a file system that was never unmounted: ext4 replays its journal.
      const booted = await bootOn("live-clone", { task: "check", note: cloneNote });
      expect(booted.result).toBe(`check-done token=${token} sha256=${seqSha256} note=${cloneNote}`);
      expect(booted.console).not.toMatch(/I\/O error|EXT4-fs error/i);

      expect(await fileIn("live-clone", `/after-${syncedBefore}.txt`)).toBe(afterText);
      expect(await fileIn("live-clone", `/after-${writtenAfter}.txt`)).toBeUndefined();
      expect(await fileIn("live-clone", "/post.txt")).toBeUndefined();
      expect(await fileIn("live", `/after-${writtenAfter}.txt`)).toBe(afterText);
      expect((await fileIn("live", "/post.txt"))?.trim()).toBe(note);
      expect(await filesOf("live-clone")).toEqual({ token, seqSha256, note: cloneNote });
    },
    3 * stepTimeoutMs,
  );

  it(
    "the server restarts under the running guest (qemu reconnect-delay): the guest goes on writing without an I/O error",
    async () => {
      const note = randomBytes(8).toString("hex");
      const started = await startLive("restart", note);
      const { socketPath, running } = started;
      let server = started.server;
      await progressReaches(running, 2);
      await server.stop(); // graceful: in-flight requests answered, volume flushed and unlocked
      server = await serveVolume(storeDir, "restart", socketPath);
      servers.push(server);
      const writtenThrough = lastProgress(running) + 3; // files begun after the restart
      await progressReaches(running, writtenThrough);
      const after = await finishLive(running, note);
      await server.stop();

      expect(after).toBeGreaterThanOrEqual(writtenThrough);
      expect(await fileIn("restart", `/after-${writtenThrough}.txt`)).toBe(afterText);
      expect(await fileIn("restart", `/after-${after}.txt`)).toBe(afterText);
      expect((await fileIn("restart", "/post.txt"))?.trim()).toBe(note);
      expect(await filesOf("restart")).toMatchObject({ token, seqSha256 });
    },
    2 * stepTimeoutMs,
  );

  it(
    "the cloud task takes hostname and keys from a NoCloud seed, stays up until the ACPI power button, and keeps its marker",
    async () => {
      await importExt4Volume(storeDir, "cloud", volumeSizeBytes, dir);
      const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOkeanosTestKeyOnlyForTheGuestToWrite test@okeanos";
      const other = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQOkeanos other@okeanos";
      const seedIsoPath = join(dir, "seed.iso");
      // As compute/qemu/nocloud.ts writes them: double-quoted scalars, the key in both files.
      await makeSeedIso(seedIsoPath, {
        "meta-data": `instance-id: "i-0123"\nlocal-hostname: "cloudy"\npublic-keys:\n  - ${JSON.stringify(key)}\n`,
        "user-data": `#cloud-config\nhostname: "cloudy"\nssh_authorized_keys:\n  - ${JSON.stringify(key)}\n  - ${other}\n`,
      }, dir);
      const keysSha256 = sha256(`${key}\n${other}\n`);
      const boot = async (note: string): Promise<BootResult> => {
        const socketPath = join(dir, "cloud.sock");
        const qmpSocketPath = join(dir, "cloud-qmp.sock");
        const server = await serveVolume(storeDir, "cloud", socketPath);
        servers.push(server);
        try {
          const running = startGuest(guest, { socketPath, exportName: "cloud", params: { task: "cloud", note }, seedIsoPath, qmpSocketPath });
          await running.waitFor(/^OKEANOS-VM-POWER: waiting /m);
          // Still running a while later: the server would stay ACTIVE.
          await new Promise((resolve) => setTimeout(resolve, 1000));
          expect(running.console()).not.toMatch(/OKEANOS-VM-POWER: pressed/);
          await running.pressPowerButton();
          const booted = await running.result;
          expect(booted.console).toMatch(/^OKEANOS-VM-POWER: pressed$/m);
          return booted;
        } finally {
          await server.stop();
        }
      };
      const first = await boot("first-note");
      expect(first.result).toBe(`cloud hostname=cloudy instance=i-0123 key-sha256=${keysSha256} found=none`);
      const second = await boot("second-note");
      expect(second.result).toBe(`cloud hostname=cloudy instance=i-0123 key-sha256=${keysSha256} found=first-note`);
      expect((await fileIn("cloud", "/marker.txt"))?.trim()).toBe("second-note");
      expect(await fileIn("cloud", "/root/.ssh/authorized_keys")).toBe(`${key}\n${other}\n`);
    },
    2 * stepTimeoutMs,
  );
});
