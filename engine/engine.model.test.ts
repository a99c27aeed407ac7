import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryObjectStore } from "./blocker/memory.ts";
import { FileObjectStore } from "./blocker/file.ts";
import type { ObjectStore } from "./blocker/object-store.ts";
import { Engine } from "./engine.ts";
import { commandsRun, engineCommands, modelBlockSizeBytes, modelRunParameters, verifyEverything, type Model, type Real } from "./testing/engine-model.ts";

/** Sequences of up to 150 commands; with 30 runs a backend sees several thousand operations. */
const commandsMax = 150;

interface Place {
  /** Opens the store; called again on every restart. */
  open(): Promise<ObjectStore>;
  /** Closes an engine before a restart (memory stores stay open: they are the data). */
  closeForRestart(engine: Engine): Promise<void>;
  cleanup(): Promise<void>;
}

async function runModel(makePlace: () => Promise<Place>, runs: number): Promise<number> {
  const before = commandsRun.count;
  await fc.assert(
    fc.asyncProperty(fc.commands(engineCommands, { maxCommands: commandsMax, size: "max" }), async (commands) => {
      const place = await makePlace();
      const real: Real = {
        engine: await Engine.init(await place.open(), { blockSizeBytes: modelBlockSizeBytes }),
        open: new Map(),
        restart: async () => {
          await place.closeForRestart(real.engine);
          return Engine.open(await place.open());
        },
      };
      const model: Model = { maps: new Map() };
      try {
        await fc.asyncModelRun(() => ({ model, real }), commands);
        await verifyEverything(model, real);
      } finally {
        for (const volume of real.open.values()) await volume.close().catch(() => undefined);
        await real.engine.close();
        await place.cleanup();
      }
    }),
    modelRunParameters(runs),
  );
  return commandsRun.count - before;
}

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
