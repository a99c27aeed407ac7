/**
 * Crash test on the file backend: a child process writes, zeroes, flushes and snapshots a
 * volume and is killed with SIGKILL at a random moment; after each kill every flushed byte,
 * every acknowledged snapshot and every map entry's object must be there, and gc must free
 * only garbage. The runner and its checks: testing/crash-run.ts.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { FileObjectStore } from "./blocker/file.ts";
import { runCrashRounds } from "./testing/crash-run.ts";

const rounds = Number(process.env["CRASH_ROUNDS"] ?? 8);

describe("crash safety (SIGKILL)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-crash-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(`keeps every flushed byte across ${rounds} kills, and gc afterwards frees only garbage`, async () => {
    await runCrashRounds({ open: () => FileObjectStore.open(dir), childStore: `file:${dir}` }, rounds);
  });
});
