/**
 * The runner of the engine's model-based property test (engine-model.ts), for any backend:
 * fast-check generates sequences of up to 150 commands; each sequence runs on a fresh store
 * (a Place) against a fresh reference model, then everything is compared.
 * engine/engine.model.test.ts runs it on the memory and file backends,
 * engine/blocker/rados/model-rados.test.ts on rados.
 */
import fc from "fast-check";
import type { ObjectStore } from "../blocker/object-store.ts";
import { Engine } from "../engine.ts";
import { commandsRun, engineCommands, modelBlockSizeBytes, modelRunParameters, verifyEverything, type Model, type Real } from "./engine-model.ts";

/** Sequences of up to 150 commands; with 30 runs a backend sees several thousand operations. */
const commandsMax = 150;

/** Where one sequence runs. */
export interface Place {
  /** Opens the store; called again on every restart. */
  open(): Promise<ObjectStore>;
  /** Closes an engine before a restart (memory stores stay open: they are the data). */
  closeForRestart(engine: Engine): Promise<void>;
  cleanup(): Promise<void>;
}

/** Runs `runs` sequences (MODEL_SEED / MODEL_PATH / MODEL_RUNS apply); returns the commands run. */
export async function runModel(makePlace: () => Promise<Place>, runs: number): Promise<number> {
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
