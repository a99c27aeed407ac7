/**
 * The victim of the rados crash test: engine/testing/crash-child.ts on a rados store.
 * Performs the crash-ops stream on volume `v` until it is killed; the same stdout protocol
 * (`ready`, `start N`, `done N`).
 * Usage: CEPH_CONF=… node crash-child.ts POOL NAMESPACE SEED
 */
import { writeSync } from "node:fs";
import { Engine } from "../../../engine.ts";
import { crashOps } from "../../../testing/crash-ops.ts";
import { RadosObjectStore } from "../rados.ts";

const [pool, namespace, seedText] = process.argv.slice(2);
if (pool === undefined || namespace === undefined || seedText === undefined) throw new Error("usage: crash-child.ts POOL NAMESPACE SEED");
const seed = Number(seedText);
const engine = await Engine.open(await RadosObjectStore.open({ pool, namespace }));
const volume = await engine.openVolume("v", { owner: "crash-child" });
const say = (line: string) => writeSync(1, `${line}\n`);
say("ready");
const ops = crashOps(seed);
for (let n = 1; ; n++) {
  const op = ops.next().value;
  say(`start ${n}`);
  if (op.kind === "write") await volume.write(op.offsetBytes, op.data);
  else if (op.kind === "zero") await volume.writeZeroes(op.offsetBytes, op.lengthBytes);
  else if (op.kind === "flush") await volume.flush();
  else await volume.snapshot(op.name);
  say(`done ${n}`);
}
