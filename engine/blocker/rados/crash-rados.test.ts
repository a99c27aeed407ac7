/**
 * engine/crash.test.ts on the rados backend (runner: engine/testing/crash-run.ts): a child
 * process writes, zeroes, flushes and snapshots a volume and is killed with SIGKILL at a
 * random moment; after each kill every flushed byte, every acknowledged snapshot and every
 * map entry's object must be there, and gc with no grace period must remove only garbage.
 *
 * One difference from the file backend: a killed holder's volume lock is a lease (30 s),
 * not an flock the kernel drops. Each round therefore breaks the dead child's lock, as an
 * operator would (`volume unlock --force`), which also fences (blocklists) that client.
 */
import { it } from "vitest";
import { runCrashRounds } from "../../testing/crash-run.ts";
import { RadosObjectStore } from "./rados.ts";
import { describeRados, testNamespace } from "./testing/target.ts";

/** Fewer rounds than the file backend's 8: each starts a Node child and a RADOS connection. */
const rounds = Number(process.env["CRASH_ROUNDS"] ?? 5);

describeRados("crash safety (SIGKILL)", (target) => {
  it(`keeps every flushed byte across ${rounds} kills on rados, and gc afterwards frees only garbage`, async () => {
    const namespace = testNamespace("crash");
    await runCrashRounds(
      {
        open: () => RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf }),
        childStore: `rados:${target.pool}/${namespace}`,
        childEnv: { CEPH_CONF: target.cephConf },
        afterKill: async (engine) => {
          const { header } = await engine.maps.loadMap("v");
          await engine.objects.breakLock?.(engine.maps.lockObject(header.mapId));
        },
      },
      rounds,
    );
  }, 300_000);
});
