import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryObjectStore } from "./blocker/memory.ts";
import { FileObjectStore } from "./blocker/file.ts";
import { runModel } from "./testing/model-run.ts";

describe("engine against a reference model", () => {
  it("memory backend", async () => {
    // One memory store per run, kept across restarts: a restart is a new Engine on it.
    const ran = await runModel(async () => {
      const store = new MemoryObjectStore();
      return { open: async () => store, closeForRestart: async () => undefined, cleanup: () => store.close() };
    }, 40);
    if (process.env["MODEL_SEED"] === undefined) expect(ran).toBeGreaterThan(1000);
  });

  it("file backend", async () => {
    const ran = await runModel(async () => {
      const dir = await mkdtemp(join(tmpdir(), "okeanos-model-"));
      return {
        open: () => FileObjectStore.open(dir),
        closeForRestart: (engine) => engine.close(),
        cleanup: () => rm(dir, { recursive: true, force: true }),
      };
    }, 30);
    if (process.env["MODEL_SEED"] === undefined) expect(ran).toBeGreaterThan(300);
  });
});
