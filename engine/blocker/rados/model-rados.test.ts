/**
 * The engine's model-based property test (engine/testing/engine-model.ts) on the rados
 * backend: random sequences of volume, snapshot, clone, hash, resize, gc and restart
 * commands against a reference model. Each run gets its own store (RADOS namespace); a
 * restart is a new connection and a new Engine on the same namespace.
 * The runner mirrors engine/engine.model.test.ts's; MODEL_SEED / MODEL_PATH / MODEL_RUNS apply.
 */
import fc from "fast-check";
import { expect, it } from "vitest";
import { Engine } from "../../engine.ts";
import { commandsRun, engineCommands, modelBlockSizeBytes, modelRunParameters, verifyEverything, type Model, type Real } from "../../testing/engine-model.ts";
import { RadosObjectStore } from "./rados.ts";
import { describeRados, testNamespace } from "./testing/target.ts";

/** As on the other backends: up to 150 commands per sequence. */
const commandsMax = 150;
/**
 * Runs: each RADOS op is a network round trip (~0.3–1 ms on the dev cluster) where the
 * file backend makes a syscall. 20 runs (the file backend does 30) reach ~700 commands in
 * ~15 s on two cores; MODEL_RUNS=30 gave 1063 commands in 25 s.
 */
const runs = 20;

describeRados("engine against a reference model", (target) => {
  it("rados backend", async () => {
    const before = commandsRun.count;
    await fc.assert(
      fc.asyncProperty(fc.commands(engineCommands, { maxCommands: commandsMax, size: "max" }), async (commands) => {
        const namespace = testNamespace("model");
        const open = () => RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf });
        const real: Real = {
          engine: await Engine.init(await open(), { blockSizeBytes: modelBlockSizeBytes }),
          open: new Map(),
          restart: async () => {
            await real.engine.close();
            return Engine.open(await open());
          },
        };
        const model: Model = { maps: new Map() };
        try {
          await fc.asyncModelRun(() => ({ model, real }), commands);
          await verifyEverything(model, real);
        } finally {
          for (const volume of real.open.values()) await volume.close().catch(() => undefined);
          await real.engine.close();
        }
      }),
      modelRunParameters(runs),
    );
    if (process.env["MODEL_SEED"] === undefined) expect(commandsRun.count - before).toBeGreaterThan(300);
  }, 300_000);
});
