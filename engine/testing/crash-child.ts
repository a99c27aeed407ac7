/**
 * The victim of the crash test (crash-run.ts): performs the crash-ops stream on volume `v`
 * of a store until it is killed. Protocol on stdout (synchronous for pipes on Linux, so a
 * line is out before the next operation starts):
 *   `start N` before operation N, `done N` after it completes (for a flush or snapshot,
 *   after it is durable).
 * Usage: node crash-child.ts STORE SEED   (STORE: a store URI or a directory; a rados:
 * store connects through $CEPH_CONF)
 */
import { writeSync } from "node:fs";
import { openObjectStore } from "../blocker/open-store.ts";
import { Engine } from "../engine.ts";
import { crashOps } from "./crash-ops.ts";

const [store, seedText] = process.argv.slice(2);
if (store === undefined || seedText === undefined) throw new Error("usage: crash-child.ts STORE SEED");
const seed = Number(seedText);
const engine = await Engine.open(await openObjectStore(store));
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
