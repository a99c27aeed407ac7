/**
 * The published package works: `npm pack` this checkout, install the tarball into a fresh
 * prefix as a user would, and run the installed `okeanos` bin. Node will not strip types
 * under node_modules, so this proves the prepack build (dist/) and the bin launcher.
 */
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand, type CliResult } from "./testing/run-cli.ts";

const repoDir = join(import.meta.dirname, "..");
/** npm pack runs tsc (prepack) and the install may fetch what the cache lacks: minutes under load. */
const packTimeoutMs = 300_000;

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-pack-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function npm(args: string[], cwd: string): Promise<string> {
  const result = await runCommand("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd });
  if (result.code !== 0) throw new Error(`npm ${args.join(" ")} exited ${result.code}:\n${result.stderr}`);
  return result.stdout;
}

describe("the npm tarball", () => {
  it(
    "installs and runs its okeanos bin",
    async () => {
      const packDir = join(dir, "pack");
      const prefix = join(dir, "prefix");
      await mkdir(packDir);
      await npm(["pack", "--pack-destination", packDir], repoDir);
      const [tarball] = (await readdir(packDir)).filter((name) => name.endsWith(".tgz"));
      expect(tarball).toBeDefined();
      // An absolute path: `pack/okeanos.tgz` would be read as a GitHub shorthand.
      await npm(["install", "--prefix", prefix, "--prefer-offline", join(packDir, tarball as string)], dir);

      const bin = join(prefix, "node_modules", ".bin", "okeanos");
      const okeanos = (...args: string[]): Promise<CliResult> => runCommand(bin, args, { cwd: prefix });
      const help = await okeanos("--help");
      expect(help.stderr).toBe("");
      expect(help).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Usage: okeanos \[options\] \[command\]/) as unknown });
      expect(await okeanos("store", "init")).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Initialised store file:.*\/data\n/) as unknown });
      expect(await okeanos("volume", "create", "vm1", "--size", "10G")).toMatchObject({ code: 0, stderr: "" });
      const list = await okeanos("volume", "list");
      expect(list).toMatchObject({ code: 0, stdout: expect.stringMatching(/^NAME .*\nvm1 +volume +10 GiB /) as unknown });
      // The installed bin runs the JavaScript that prepack compiled; with OKEANOS_DEBUG=1
      // its stacks point back into the shipped .ts sources through the source maps.
      expect(await readdir(join(prefix, "node_modules", "okeanos", "dist", "cli"))).toContain("okeanos.js");
      const failure = await runCommand(bin, ["volume", "info", "nope"], { cwd: prefix, env: { OKEANOS_DEBUG: "1" } });
      expect(failure.code).toBe(10);
      expect(failure.stderr).toMatch(/^okeanos: no volume, snapshot or image named nope\n[\s\S]*node_modules\/okeanos\/engine\/mapper\/map-store\.ts:\d+/);
    },
    packTimeoutMs,
  );
});
