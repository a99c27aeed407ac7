/**
 * `okeanos serve` as a real process: the HTTP APIs and the NBD server together, stopped by
 * SIGTERM. nbdinfo (libnbd-bin) reads the export; without it the test is skipped, except under
 * CI=true where it fails (engine/nbd/testing/require-tool.ts).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireTools, runTool } from "../engine/nbd/testing/require-tool.ts";
import { cliEntry, ok, runCli } from "./testing/run-cli.ts";

const haveNbdinfo = requireTools("nbdinfo");

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
    const child = spawn(process.execPath, [cliEntry, "--store", store, "--json", "serve", "--port", "0", "--nbd-socket", socket, "--log-level", "warn"], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(child, "exit");
    try {
      const banner = await new Promise<{ baseUrl: string; nbd: string[] }>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
          try {
            resolve(JSON.parse(stdout) as { baseUrl: string; nbd: string[] });
          } catch {
            // not all of it yet
          }
        });
        child.once("exit", (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
      });
      expect(banner.nbd).toEqual([`nbd+unix:///NAME?socket=${socket}`]);
      const health = await fetch(`${banner.baseUrl}/healthz`);
      expect(health.status).toBe(200);
      const info = await runTool("nbdinfo", ["--json", `nbd+unix:///vm1?socket=${socket}`]);
      expect(info.code, info.stderr).toBe(0);
      const exports = (JSON.parse(info.stdout) as { exports: Array<{ "export-name": string; "export-size": number }> }).exports;
      expect(exports[0]).toMatchObject({ "export-name": "vm1", "export-size": 1024 * 1024 });
    } finally {
      child.kill("SIGTERM");
    }
    const [code] = await exited;
    expect(code, stderr).toBe(0);
  }, 60_000);
});
