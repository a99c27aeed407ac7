/**
 * A writer in another process, for the lease takeover and fencing test (takeover.test.ts):
 * opens volume VOLUME of a rados store for writing (its lock's lease LEASE_MS), then obeys
 * one command per line on stdin and answers one line per command on stdout:
 *
 *   write OFFSET LENGTH BYTE   → ok | error CODE MESSAGE   (LENGTH bytes of value BYTE)
 *   flush                      → ok | error CODE MESSAGE
 *
 * The first line out is `ready PID` once the volume is open (lock held), or `error CODE
 * MESSAGE` if opening failed (then it exits 1). It never exits on its own otherwise: the
 * test kills it (SIGKILL), or stops and continues it (SIGSTOP, SIGCONT).
 * Usage: CEPH_CONF=… node volume-child.ts POOL NAMESPACE VOLUME LEASE_MS
 */
import { writeSync } from "node:fs";
import { createInterface } from "node:readline";
import { Engine } from "../../../engine.ts";
import { RadosObjectStore } from "../rados.ts";

const [pool, namespace, volumeName, leaseText] = process.argv.slice(2);
if (pool === undefined || namespace === undefined || volumeName === undefined || leaseText === undefined) {
  throw new Error("usage: volume-child.ts POOL NAMESPACE VOLUME LEASE_MS");
}
const say = (line: string): void => void writeSync(1, `${line.replaceAll("\n", " ")}\n`);
const failure = (error: unknown): string => {
  const { code, message } = error as { code?: string; message?: string };
  return `error ${code ?? "EUNKNOWN"} ${message ?? String(error)}`;
};

const engine = await Engine.open(await RadosObjectStore.open({ pool, namespace, lockLeaseMs: Number(leaseText) }));
let volume: Awaited<ReturnType<Engine["openVolume"]>>;
try {
  volume = await engine.openVolume(volumeName, { owner: "volume-child" });
} catch (error) {
  say(failure(error));
  process.exit(1);
}
say(`ready ${process.pid}`);

for await (const line of createInterface({ input: process.stdin })) {
  const [command, ...args] = line.trim().split(" ");
  try {
    if (command === "write") {
      const [offsetBytes, lengthBytes, byte] = args.map(Number) as [number, number, number];
      await volume.write(offsetBytes, Buffer.alloc(lengthBytes, byte));
    } else if (command === "flush") {
      await volume.flush();
    } else {
      throw new Error(`unknown command ${JSON.stringify(line)}`);
    }
    say("ok");
  } catch (error) {
    say(failure(error));
  }
}
