/**
 * `okeanos serve` as a real process: the HTTP APIs and the NBD server together, stopped by
 * SIGTERM. nbdinfo (libnbd-bin) reads the export; without it the test is skipped, except under
 * CI=true where it fails (engine/nbd/testing/require-tool.ts).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireTools, runTool } from "../engine/nbd/testing/require-tool.ts";
import { ok, runCli } from "./testing/run-cli.ts";
import { startServe } from "./testing/serve-process.ts";

const haveNbdinfo = requireTools("nbdinfo", "qemu-io");

describe.skipIf(!haveNbdinfo)("okeanos serve with NBD", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-serve-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("serves HTTP and every volume over an NBD unix socket; SIGTERM exits 0", async () => {
    const store = `file:${join(dir, "store")}`;
    const env = { OKEANOS_DATABASE: `sqlite:${join(dir, "okeanos.db")}` };
    await ok(runCli(["--store", store, "store", "init"], { env }));
    await ok(runCli(["--store", store, "volume", "create", "vm1", "--size", "1M"], { env }));
    const socket = join(dir, "nbd.sock");
    const served = await startServe(["--port", "0", "--nbd-socket", socket, "--log-level", "warn"], { env, globalArgs: ["--store", store] });
    try {
      const { banner } = served;
      expect(banner.nbd).toEqual([`nbd+unix:///NAME?socket=${socket}`]);
      const health = await fetch(`${banner.baseUrl}/healthz`);
      expect(health.status).toBe(200);
      const info = await runTool("nbdinfo", ["--json", `nbd+unix:///vm1?socket=${socket}`]);
      expect(info.code, info.stderr).toBe(0);
      const exports = (JSON.parse(info.stdout) as { exports: Array<{ "export-name": string; "export-size": number }> }).exports;
      expect(exports[0]).toMatchObject({ "export-name": "vm1", "export-size": 1024 * 1024 });
      // Per-volume I/O in /metrics, across a client's connect and disconnect.
      const io = await runTool("qemu-io", ["-f", "raw", "-c", "write -P 0x55 0 64k", "-c", "read -P 0x55 0 4k", "-c", "flush", `nbd+unix:///vm1?socket=${socket}`]);
      expect(io.code, io.stderr).toBe(0);
      const metrics = await (await fetch(`${banner.baseUrl}/metrics`)).text();
      expect(metrics).toMatch(/^okeanos_volume_write_bytes_total\{volume="vm1"\} 65536$/m);
      expect(metrics).toMatch(/^okeanos_volume_read_bytes_total\{volume="vm1"\} 4096$/m);
      expect(metrics).toMatch(/^okeanos_volume_flushes_total\{volume="vm1"\} [1-9]\d*$/m);
    } finally {
      expect(await served.stop(), served.output().stderr).toBe(0);
    }
  }, 60_000);
});

const haveSwift = requireTools("swift");

describe.skipIf(!haveSwift)("okeanos serve in an empty directory", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-serve-empty-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("creates the store and a first user whose printed password works with the swift CLI", async () => {
    // No --store, no --database: the embedded defaults under the working directory.
    const served = await startServe(["--port", "0", "--no-nbd", "--log-level", "warn"], { cwd: dir });
    try {
      const { banner } = served;
      expect(served.output().stderr).toMatch(/created a new store/);
      const user = banner.firstUser!;
      expect(user.name).toBe("admin");
      const swift = (...args: string[]) =>
        runTool("swift", ["-A", `${banner.baseUrl}/auth/v1.0`, "-U", user.name, "-K", user.password, ...args], { cwd: dir, env: { PATH: `/usr/bin:${process.env["PATH"] ?? ""}` } });
      await writeFile(join(dir, "note.txt"), "stored in okeanos\n");
      const upload = await swift("upload", "notes", "note.txt");
      expect(upload.code, upload.stderr).toBe(0);
      const download = await swift("download", "notes", "note.txt", "-o", "-");
      expect(download.stdout).toBe("stored in okeanos\n");
      expect((await swift("stat")).stdout).toMatch(/Objects: 1/);
      const wrong = await swift("-K", "wrong", "stat");
      expect(wrong.code).not.toBe(0);
    } finally {
      expect(await served.stop(), served.output().stderr).toBe(0);
    }
  }, 60_000);
});

describe("okeanos serve configuration", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-serve-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("takes settings from a JSON file, environment variables over it, flags over both", async () => {
    const config = join(dir, "serve.json");
    const store = `file:${join(dir, "from-file-store")}`;
    await writeFile(config, JSON.stringify({ port: 0, store, database: `sqlite:${join(dir, "from-file.db")}`, nbd: false, logLevel: "debug", bind: "0.0.0.0" }));
    const served = await startServe(["--config", config, "--log-level", "warn"], { cwd: dir, env: { OKEANOS_BIND: "127.0.0.1" } });
    try {
      const { banner } = served;
      expect(banner.store).toBe(store); // from the file
      expect(banner.database).toContain("from-file.db"); // from the file
      expect(banner.nbd).toEqual([]); // nbd: false in the file
      expect(banner.bind).toBe("127.0.0.1"); // the environment over the file's 0.0.0.0
      // --log-level warn (flag) over the file's debug: no per-request debug lines.
      expect(served.output().stdout.split("\n").filter((line) => line.includes('"level":20'))).toEqual([]);
    } finally {
      expect(await served.stop(), served.output().stderr).toBe(0);
    }
  }, 60_000);

  it("refuses an unknown setting or a wrong type, naming it", async () => {
    const config = join(dir, "bad.json");
    await writeFile(config, JSON.stringify({ prot: 8080 }));
    const unknown = await runCli(["serve", "--config", config], { cwd: dir });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown setting "prot"/);
    await writeFile(config, JSON.stringify({ port: "eighty" }));
    const wrongType = await runCli(["serve", "--config", config], { cwd: dir });
    expect(wrongType.code).toBe(2);
    expect(wrongType.stderr).toMatch(/"port" must be a port number/);
  });
});
