/**
 * The CLI on a rados: store, as real `node bin/okeanos.js` processes against the test
 * cluster (engine/blocker/rados/testing: started when CI=true or OKEANOS_TEST_CEPH=1, else
 * skipped loudly): `store init --store rados:POOL/NS --ceph-conf PATH`, the everyday
 * commands through $OKEANOS_STORE and $CEPH_CONF, `okeanos serve` with NBD, and
 * `volume unlock --force` fencing a live holder in another process — and its refusal on a
 * file store, whose locks need no breaking.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo, type Server } from "node:net";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeRados, testNamespace, type RadosTarget } from "../engine/blocker/rados/testing/target.ts";
import { requireTools, runTool } from "../engine/nbd/testing/require-tool.ts";
import { cliEntry, ok, okJson, runCli, type CliResult } from "./testing/run-cli.ts";

const blockSizeBytes = 64 * 1024;
const haveTools = requireTools("qemu-io");

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-cli-rados-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A CLI on store `uri` that finds the cluster through $CEPH_CONF only (no flags). */
function cliOn(target: RadosTarget, uri: string): (...args: string[]) => Promise<CliResult> {
  return (...args) => runCli(args, { env: { OKEANOS_STORE: uri, CEPH_CONF: target.cephConf } });
}

describeRados("the CLI on a rados store", (target) => {
  it("store init --store rados:POOL/NS --ceph-conf PATH --ceph-id NAME; then every everyday command through the environment", async () => {
    const uri = `rados:${target.pool}/${testNamespace("cli")}`;
    const noEnv = { env: { CEPH_CONF: undefined, CEPH_ID: undefined } };
    const init = await ok(runCli(["store", "init", "--store", uri, "--ceph-conf", target.cephConf, "--ceph-id", "admin", "--block-size", "64K"], noEnv));
    expect(init).toContain(`Initialised store ${uri}`);
    // Without a way to the cluster: Ceph's default ceph.conf is not there.
    const lost = await runCli(["--store", uri, "--ceph-conf", join(dir, "missing.conf"), "volume", "list"], noEnv);
    expect(lost.code).toBe(20); // EIO
    expect(lost.stderr).toMatch(/missing\.conf/);
    const noPool = await runCli(["store", "init", "--store", `rados:no-such-pool-${randomBytes(3).toString("hex")}`, "--ceph-conf", target.cephConf], noEnv);
    expect(noPool.code).toBe(18); // ENO_STORE
    expect(noPool.stderr).toContain("ceph osd pool create");

    const okeanos = cliOn(target, uri);
    const image = randomBytes(5 * blockSizeBytes + 1000);
    image.fill(0, blockSizeBytes, 3 * blockSizeBytes); // two zero blocks: holes in the volume
    const imagePath = join(dir, "image.raw");
    await writeFile(imagePath, image);
    await ok(okeanos("volume", "import", imagePath, "vm1"));
    await ok(okeanos("volume", "snapshot", "vm1", "vm1-snap"));
    await ok(okeanos("volume", "clone", "vm1-snap", "vm2"));
    const exported = join(dir, "vm2.raw");
    await ok(okeanos("volume", "export", "vm2", exported));
    expect((await readFile(exported)).subarray(0, image.length).equals(image)).toBe(true);
    const names = (await okJson<Array<{ name: string }>>(okeanos("--json", "volume", "list"))).map((entry) => entry.name).sort();
    expect(names).toEqual(["vm1", "vm1-snap", "vm2"]);
    const hashed = await okJson<{ header: { contentHash: string } }>(okeanos("--json", "volume", "hash", "vm1-snap"));
    expect(hashed.header.contentHash).toMatch(/^[0-9a-f]{64}$/);
    expect((await okJson<{ volumes: number; snapshots: number }>(okeanos("--json", "store", "stats"))).volumes).toBe(2);
    await ok(okeanos("volume", "delete", "vm2"));
    await ok(okeanos("gc", "--grace", "0"));
    await ok(okeanos("volume", "export", "vm1", exported));
    expect((await readFile(exported)).subarray(0, image.length).equals(image)).toBe(true);
  }, 240_000); // 17 CLI processes: ~2.5 s each to start on a loaded 2-core box

  it.skipIf(!haveTools)("okeanos serve: HTTP and NBD over a rados store; SIGTERM flushes and exits 0", async () => {
    const uri = `rados:${target.pool}/${testNamespace("serve")}`;
    const okeanos = cliOn(target, uri);
    await ok(okeanos("store", "init", "--block-size", "64K"));
    await ok(okeanos("volume", "create", "vm1", "--size", "4M"));
    const socket = join(dir, "serve-nbd.sock");
    const args = [cliEntry, "--store", uri, "--ceph-conf", target.cephConf, "--json", "serve", "--port", "0", "--nbd-socket", socket, "--log-level", "warn"];
    const child = spawn(process.execPath, args, {
      env: { ...process.env, OKEANOS_DATABASE: `sqlite:${join(dir, "serve.db")}`, CEPH_CONF: undefined },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(child, "exit");
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
          if (stdout.includes("}")) resolve();
        });
        child.once("exit", (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
      });
      const nbd = `nbd+unix:///vm1?socket=${socket}`;
      const io = await runTool("qemu-io", ["-f", "raw", nbd, "-c", "write -P 0x5c 100000 1M", "-c", "read -P 0x5c 100000 1M"]);
      expect(io.code, io.stderr + io.stdout).toBe(0);
      expect(io.stdout).not.toMatch(/fail/i);
    } finally {
      child.kill("SIGTERM");
    }
    const [code] = await exited;
    expect(code, stderr).toBe(0);
    const exported = join(dir, "served.raw");
    await ok(okeanos("volume", "export", "vm1", exported));
    expect((await readFile(exported)).subarray(100000, 100000 + 1024 * 1024).every((byte) => byte === 0x5c)).toBe(true);
  }, 60_000);

  it("volume unlock --force breaks a live holder's lock and fences it; without --force it names the holder and refuses", async () => {
    const namespace = testNamespace("unlock");
    const uri = `rados:${target.pool}/${namespace}`;
    const okeanos = cliOn(target, uri);
    await ok(okeanos("store", "init", "--block-size", "64K"));
    await ok(okeanos("volume", "create", "v", "--size", "1M"));
    expect((await ok(okeanos("volume", "unlock", "v"))).trim()).toBe("v is not locked");

    // The holder: a writer in another process with the engine's own 30 s lease.
    const holder = spawn(process.execPath, [join(import.meta.dirname, "..", "engine", "blocker", "rados", "testing", "volume-child.ts"), target.pool, namespace, "v", "30000"], {
      env: { ...process.env, CEPH_CONF: target.cephConf },
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines = createInterface({ input: holder.stdout })[Symbol.asyncIterator]();
    const next = async (): Promise<string> => (await lines.next()).value as string;
    try {
      expect(await next()).toBe(`ready ${holder.pid}`);
      holder.stdin.write(`write 0 100 ${0xa1}\nflush\n`);
      expect([await next(), await next()]).toEqual(["ok", "ok"]);

      expect(await ok(okeanos("volume", "info", "v"))).toMatch(new RegExp(`locked by: +volume-child \\(pid ${holder.pid} on `));
      const refused = await okeanos("volume", "unlock", "v");
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(`volume-child (pid ${holder.pid} on`);
      expect(refused.stderr).toContain("--force");

      const unlocked = await okeanos("volume", "unlock", "v", "--force");
      expect(unlocked.code, unlocked.stderr).toBe(0);
      expect(unlocked.stderr).toMatch(/warning: breaking the lock on v held by volume-child/);
      expect(unlocked.stdout).toContain("Unlocked v");
      expect((await okJson<{ lockHolder?: unknown }>(okeanos("--json", "volume", "info", "v"))).lockHolder).toBeUndefined();

      // The holder is still running, but fenced: its next write fails (blocklisted, or its
      // volume saw a lease renewal fail first and refuses writes itself).
      holder.stdin.write(`write 0 100 ${0xdd}\n`);
      expect(await next()).toMatch(/^error (EIO .*blocklisted|EVOLUME_LOCKED lost the lock)/);
      // …and the volume is free at once, not after the 30 s lease: resize takes its lock.
      await ok(okeanos("volume", "resize", "v", "--size", "2M"));
    } finally {
      holder.kill("SIGKILL");
    }
  }, 60_000);
});

describeRados("the CLI's early connection to a cluster that does not answer", () => {
  let silent: Server;
  beforeAll(async () => {
    // Accepts connections and says nothing: librados waits for the monitor's banner.
    silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  });
  afterAll(() => {
    silent.close();
  });

  it("does not hold a command that fails before opening the store (a usage error) until the 30 s mount timeout", async () => {
    const conf = join(dir, "silent.conf");
    await writeFile(conf, `[global]\nmon_host = v1:127.0.0.1:${(silent.address() as AddressInfo).port}\n`);
    // The store connects early (cli/early-store.ts); the command is then refused by commander.
    const refused = await runCli(["--store", "rados:nowhere", "--ceph-conf", conf, "volume", "frobnicate"], { timeoutMs: 20_000 });
    expect(refused.code).toBe(2); // usage
    expect(refused.stderr).toMatch(/unknown command/);
  }, 30_000);
});

describe("volume unlock on a file store", () => {
  it("refuses, explaining that flock locks end with their process", async () => {
    const store = `file:${join(dir, "file-store")}`;
    await ok(runCli(["--store", store, "store", "init"]));
    await ok(runCli(["--store", store, "volume", "create", "v", "--size", "1M"]));
    const refused = await runCli(["--store", store, "volume", "unlock", "v", "--force"]);
    expect(refused.code).toBe(15); // EINVALID
    expect(refused.stderr).toContain("flock(2) locks, which the kernel drops when their holder exits; v is not locked");
  });
});
