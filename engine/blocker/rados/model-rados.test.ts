/**
 * The engine's model-based property test (engine/testing/model-run.ts) on the rados
 * backend: random sequences of volume, snapshot, clone, hash, resize, gc and restart
 * commands against a reference model. Each run gets its own store (RADOS namespace); a
 * restart is a new connection and a new Engine on the same namespace.
 * MODEL_SEED / MODEL_PATH / MODEL_RUNS apply.
 */
import { expect, it } from "vitest";
import { runModel } from "../../testing/model-run.ts";
import { RadosObjectStore } from "./rados.ts";
import { describeRados, testNamespace } from "./testing/target.ts";

/**
 * Runs: each RADOS op is a network round trip (~0.3–1 ms on the dev cluster) where the
 * file backend makes a syscall. 20 runs (the file backend does 30) reach ~700 commands in
 * ~15 s on two cores; MODEL_RUNS=30 gave 1063 commands in 25 s.
 */
const runs = 20;

describeRados("engine against a reference model", (target) => {
  it("rados backend", async () => {
    const ran = await runModel(async () => {
      const namespace = testNamespace("model");
      return {
        open: () => RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf }),
        closeForRestart: (engine) => engine.close(),
        cleanup: async () => undefined,
      };
    }, runs);
    if (process.env["MODEL_SEED"] === undefined) expect(ran).toBeGreaterThan(300);
  }, 300_000);
});
