/**
 * QemuDriver against the real qemu-system-x86_64 (TCG here; KVM when /dev/kvm is usable),
 * booting test/vm's guest (a Debian kernel and a busybox initramfs, harness.ts buildGuest)
 * with its root disk served by an in-process NbdServer over a file-backed engine store.
 *
 * Two boots: the `write` task (formats the disk, writes, unmounts, powers off) shows the
 * guest's writes reaching the volume through NBD flushes and the console log; an idle guest
 * (`rdinit=/bin/sleep`, which ignores the ACPI power button like a hung OS) carries VNC,
 * adoption by a fresh driver, hard and soft reboot, stop past the grace period, and destroy.
 * The rest needs no boot. Needs qemu-system-x86, genisoimage and apt (test/vm/README.md):
 * skipped with a loud warning without them, failed under CI=true.
 */
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../engine/engine.ts";
import { openObjectStore } from "../../engine/blocker/open-store.ts";
import { NbdServer } from "../../engine/nbd/server.ts";
import { requireTools } from "../../engine/nbd/testing/require-tool.ts";
import { bootTimeoutMs, buildGuest, guestBuildTimeoutMs, type Guest } from "../../test/vm/harness.ts";
import type { InstanceSpec } from "../driver.ts";
import { isComputeError } from "../errors.ts";
import { QemuDriver } from "./driver.ts";
import { isInstanceProcess } from "./process.ts";
import { qmpExecute } from "./qmp.ts";

const haveTools = requireTools("qemu-system-x86_64", "genisoimage", "apt-get", "apt-cache", "dpkg-deb", "gzip");

/** mke2fs of a small disk is quick under TCG; big enough for the write task's files. */
const diskBytes = 64 * 1024 * 1024;
/** The write task's seq.txt: a few hundred KiB, many guest blocks. */
const seqLines = 50_000;
/** Short: the idle guest ignores the power button, so stop goes on to `quit`. */
const graceMs = 300;
/** Boot, power-off and checks, on a loaded machine. */
const stepTimeoutMs = bootTimeoutMs + 30_000;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = bootTimeoutMs): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The RFB server's first words: its version, then (after ours) the security types it offers (RFC 6143 7.1.1, 7.1.2). */
async function rfbHandshake(path: string): Promise<{ version: string; securityTypes: number[] }> {
  const socket = createConnection(path);
  const received: Buffer[] = [];
  const bytes = () => Buffer.concat(received);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.on("data", (chunk: Buffer) => {
        received.push(chunk);
        const all = bytes();
        if (all.length === 12) socket.write(all); // answer with the same version
        if (all.length > 12 && all.length >= 13 + (all[12] as number)) resolve();
      });
    });
    const all = bytes();
    return { version: all.subarray(0, 12).toString("latin1"), securityTypes: [...all.subarray(13, 13 + (all[12] as number))] };
  } finally {
    socket.destroy();
  }
}

/** True when `text` occurs in the volume's bytes (read through the engine, zero extents skipped). */
async function volumeContains(engine: Engine, name: string, text: string): Promise<boolean> {
  const needle = Buffer.from(text);
  const volume = await engine.openVolume(name, { readOnly: true });
  try {
    for (const extent of volume.blockStatus(0, volume.sizeBytes)) {
      if (extent.zero) continue;
      const data = await volume.read(extent.offsetBytes, extent.lengthBytes);
      if (data.includes(needle)) return true;
    }
    return false;
  } finally {
    await volume.close();
  }
}

describe.skipIf(!haveTools)("QemuDriver on qemu-system-x86_64", () => {
  let dir: string;
  let stateDir: string;
  let nbdSocket: string;
  let engine: Engine;
  let server: NbdServer;
  let guest: Guest;
  let driver: QemuDriver;
  const started = new Set<string>();

  beforeAll(async () => {
    // Short: the sockets live below it, and a unix socket path has at most 107 bytes.
    dir = await mkdtemp(join(tmpdir(), "okq-"));
    stateDir = join(dir, "state");
    nbdSocket = join(dir, "nbd.sock");
    guest = await buildGuest();
    engine = await Engine.init(await openObjectStore(`file:${join(dir, "store")}`, { create: true }));
    for (const name of ["disk", "idle"]) await engine.createVolume(name, diskBytes);
    server = new NbdServer({ engine, exports: ["disk", "idle"], socketPath: nbdSocket, shutdownTimeoutMs: 5_000 });
    await server.listen();
    driver = new QemuDriver({ stateDir, nbdReconnectDelaySeconds: 10 });
  }, guestBuildTimeoutMs + 10_000);

  afterAll(async () => {
    for (const id of started) await driver?.destroy(id).catch(() => undefined);
    await server?.close();
    await engine?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  function specFor(exportName: string, commandLine: string): InstanceSpec {
    const id = randomUUID();
    started.add(id);
    return {
      id,
      name: `test ${exportName}`,
      vcpus: 1,
      ramMiB: 256,
      rootDisk: { socketPath: nbdSocket, exportName },
      extraDisks: [],
      seed: { instanceId: id, hostname: exportName, sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 test"] },
      kernel: { kernelPath: guest.kernelPath, initrdPath: guest.initrdPath, commandLine },
    };
  }

  it(
    "boots: running with a pid and the seed disk; the guest's writes reach the volume through NBD flushes; it powers off",
    async () => {
      const token = randomBytes(8).toString("hex");
      const spec = specFor("disk", `console=ttyS0 loglevel=5 okeanos.task=write okeanos.token=${token} okeanos.lines=${seqLines}`);
      await driver.start(spec);
      const running = await driver.status(spec.id);
      expect(running.power).toBe("running");
      expect(running.pid).toBeGreaterThan(1);
      const layout = driver.layout(spec.id);
      expect((await readdir(layout.dir)).sort()).toEqual(["console.log", "qemu.log", "qemu.pid", "qmp.sock", "seed.iso", "spec.json", "vnc.sock"]);
      expect(JSON.parse(await readFile(layout.specFile, "utf8"))).toMatchObject({ id: spec.id, rootDisk: spec.rootDisk });

      // The guest is still booting (seconds under TCG): QEMU sees the root disk and the seed.
      const blocks = await qmpExecute<Array<{ device: string; inserted?: { ro: boolean; file: string } }>>(layout.qmpSocket, "query-block");
      expect(blocks.map((block) => block.device)).toEqual(["root", "seed"]);
      expect(blocks[1]?.inserted).toMatchObject({ ro: true, file: layout.seedIso });
      expect(blocks[0]?.inserted?.file).toContain(nbdSocket);

      // guest-init.sh powers off after its result line; QEMU exits and removes its pid file.
      await until("power-off", async () => ((await driver.status(spec.id)).power === "shutdown" ? true : undefined));
      expect(await stat(layout.pidFile).catch(() => undefined)).toBeUndefined();
      const consoleText = await driver.consoleLog(spec.id, 64 * 1024);
      expect(consoleText).toMatch(new RegExp(`^OKEANOS-VM: write-done token=${token} sha256=[0-9a-f]{64}\\r?$`, "m"));
      expect((await driver.consoleLog(spec.id, 10)).length).toBeLessThanOrEqual(10);

      // The guest's umount flushed: NBD_CMD_FLUSH reached the engine, and token.txt is on the volume.
      expect((await server.ioCounters()).get("disk")?.flushes).toBeGreaterThan(0);
      expect(await volumeContains(engine, "disk", `${token}\n`)).toBe(true);
      expect(await driver.list()).toContain(spec.id);
    },
    stepTimeoutMs,
  );

  it(
    "a guest that ignores ACPI: VNC speaks RFB behind a password, a fresh driver adopts it, reboots, stops past the grace period, is destroyed",
    async () => {
      // busybox sleep as PID 1: boots, touches no disk, never answers the power button.
      const spec = specFor("idle", "console=ttyS0 loglevel=5 rdinit=/bin/sleep -- 3600");
      await driver.start(spec);
      const { pid } = await driver.status(spec.id);
      expect(pid).toBeGreaterThan(1);
      await driver.start(spec); // idempotent: the same process
      expect((await driver.status(spec.id)).pid).toBe(pid);

      const vnc = await driver.vnc(spec.id);
      expect(vnc.address).toEqual({ kind: "unix", path: driver.layout(spec.id).vncSocket });
      expect(vnc.password).toMatch(/^[A-Za-z0-9]{8}$/);
      expect((await driver.vnc(spec.id)).password).not.toBe(vnc.password); // fresh each time
      const rfb = await rfbHandshake(driver.layout(spec.id).vncSocket);
      expect(rfb.version).toBe("RFB 003.008\n");
      expect(rfb.securityTypes).toContain(2); // VNC authentication
      expect(rfb.securityTypes).not.toContain(1); // None

      // The service restarted: a new driver over the same directory finds the instance.
      const fresh = new QemuDriver({ stateDir });
      expect(await fresh.list()).toContain(spec.id);
      expect(await fresh.status(spec.id)).toEqual({ power: "running", pid });

      // Paused (QMP stop) and running again (cont), as query-status reports them.
      await qmpExecute(driver.layout(spec.id).qmpSocket, "stop");
      expect(await fresh.status(spec.id)).toEqual({ power: "paused", pid });
      await qmpExecute(driver.layout(spec.id).qmpSocket, "cont");

      await fresh.reboot(spec, "hard", { graceMs }); // system_reset: the same process
      expect(await fresh.status(spec.id)).toEqual({ power: "running", pid });

      const stopStarted = performance.now();
      await fresh.stop(spec.id, { graceMs });
      expect(performance.now() - stopStarted).toBeGreaterThanOrEqual(graceMs);
      expect(await isInstanceProcess(pid as number, driver.layout(spec.id).pidFile)).toBe(false);
      expect(await fresh.status(spec.id)).toEqual({ power: "shutdown" });
      await fresh.stop(spec.id, { graceMs }); // idempotent
      await expect(fresh.vnc(spec.id)).rejects.toMatchObject({ code: "ECONFLICT" });

      // A soft reboot of a stopped instance starts it: a new process.
      await fresh.reboot(spec, "soft", { graceMs });
      const rebooted = await fresh.status(spec.id);
      expect(rebooted.power).toBe("running");
      expect(rebooted.pid).not.toBe(pid);

      await driver.destroy(spec.id);
      expect(await isInstanceProcess(rebooted.pid as number, driver.layout(spec.id).pidFile)).toBe(false);
      expect(await stat(driver.layout(spec.id).dir).catch(() => undefined)).toBeUndefined();
      expect(await driver.list()).not.toContain(spec.id);
      expect(await driver.status(spec.id)).toEqual({ power: "shutdown" });
      await driver.destroy(spec.id); // idempotent
    },
    stepTimeoutMs,
  );

  it("a stale pid file naming a live process that is not our QEMU says shutdown", async () => {
    const id = randomUUID();
    const layout = driver.layout(id);
    await rm(layout.dir, { recursive: true, force: true });
    await mkdir(layout.dir, { recursive: true });
    await writeFile(layout.pidFile, `${process.pid}\n`); // alive, but vitest's worker
    expect(await driver.status(id)).toEqual({ power: "shutdown" });
    expect(await driver.list()).toContain(id);
    await driver.stop(id, { graceMs }); // nothing to stop, and the worker is not signalled
    await driver.destroy(id);
    expect(await driver.list()).not.toContain(id);
  });

  it("a QEMU found starting (pid file, no monitor yet) is waited for: never ready is an error, one that dies is started afresh", async () => {
    // A stand-in for a QEMU interrupted in its start-up: its command line names the pid file
    // (so it is "ours"), but it opens no monitor.
    const spec = { ...specFor("disk", "console=ttyS0"), rootDisk: { socketPath: join(dir, "nobody.sock"), exportName: "disk" } };
    const layout = driver.layout(spec.id);
    await mkdir(layout.dir, { recursive: true });
    const starting = spawn(process.execPath, ["-e", "setTimeout(() => {}, 600000)", "--", "-pidfile", layout.pidFile], { stdio: "ignore" });
    try {
      await writeFile(layout.pidFile, `${starting.pid}\n`);
      const impatient = new QemuDriver({ stateDir, startTimeoutMs: 1500 });
      const never = await impatient.start(spec).catch((caught: unknown) => caught);
      expect(isComputeError(never, "EHYPERVISOR")).toBe(true);
      expect((never as Error).message).toMatch(/monitor did not answer/);

      // It dies while we wait: a new QEMU is launched (and here refuses: no NBD server there).
      const waiting = impatient.start(spec).catch((caught: unknown) => caught);
      setTimeout(() => starting.kill("SIGKILL"), 300);
      const relaunched = await waiting;
      expect(isComputeError(relaunched, "EHYPERVISOR")).toBe(true);
      expect((relaunched as Error).message).toMatch(/nobody\.sock/);
    } finally {
      starting.kill("SIGKILL");
      await driver.destroy(spec.id);
    }
  });

  it("unknown instances: shutdown, an empty console log, no VNC", async () => {
    const id = randomUUID();
    expect(await driver.status(id)).toEqual({ power: "shutdown" });
    expect(await driver.consoleLog(id, 1000)).toBe("");
    await expect(driver.vnc(id)).rejects.toMatchObject({ code: "ECONFLICT" });
  });

  it("QEMU refusing to start (no NBD server on the socket) is an EHYPERVISOR error quoting QEMU", async () => {
    const spec = { ...specFor("disk", "console=ttyS0"), rootDisk: { socketPath: join(dir, "nobody.sock"), exportName: "disk" } };
    const error = await driver.start(spec).catch((caught: unknown) => caught);
    expect(isComputeError(error, "EHYPERVISOR")).toBe(true);
    expect((error as Error).message).toMatch(/nobody\.sock/);
    expect((await driver.status(spec.id)).power).toBe("shutdown");
  });

  it("a missing QEMU binary names the Debian package", async () => {
    const missing = new QemuDriver({ stateDir, binary: "/nonexistent/qemu-system-x86_64" });
    const error = await missing.start(specFor("disk", "console=ttyS0")).catch((caught: unknown) => caught);
    expect(isComputeError(error, "EHYPERVISOR")).toBe(true);
    expect((error as Error).message).toMatch(/apt-get install qemu-system-x86/);
  });

  it("a state directory too long for a unix socket path is refused clearly", async () => {
    const long = new QemuDriver({ stateDir: join(dir, "s".repeat(80)) });
    await expect(long.start(specFor("disk", "console=ttyS0"))).rejects.toThrow(/over the 107 a unix socket path may have: the QMP socket \(state directory/);
  });
});
