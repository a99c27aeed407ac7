/**
 * Two processes on one pool (issue 4, "Done when"): a writer in a child process (A) holds a
 * volume's lock; this process (B) is refused, with the holder named. When A dies (SIGKILL)
 * its lease runs out and B takes over with every byte A flushed. When A only hangs
 * (SIGSTOP) past its lease, B takes over and fences it (blocklist): once A wakes up
 * (SIGCONT) every write it tries fails, and B's data stays as B wrote it.
 *
 * Leases are 3 s here (RadosStoreOptions.lockLeaseMs) instead of the engine's 30 s.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, expect, it } from "vitest";
import { Engine } from "../../engine.ts";
import { isEngineError } from "../../errors.ts";
import type { Volume } from "../../volume.ts";
import { RadosObjectStore } from "./rados.ts";
import { describeRados, testNamespace, type RadosTarget } from "./testing/target.ts";

const leaseMs = 3000;
const blockSizeBytes = 64 * 1024;
const volumeBytes = 4 * 1024 * 1024;
const childScript = join(import.meta.dirname, "testing", "volume-child.ts");

/** The writer in another process: one command line in, one answer line out (testing/volume-child.ts). */
class Writer {
  readonly child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;
  #stderr = "";

  constructor(target: RadosTarget, namespace: string) {
    this.child = spawn(process.execPath, [childScript, target.pool, namespace, "v", String(leaseMs)], { env: { ...process.env, CEPH_CONF: target.cephConf } });
    this.child.stderr.on("data", (chunk: Buffer) => (this.#stderr += chunk.toString()));
    this.#lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  get pid(): number {
    return this.child.pid as number;
  }

  async next(): Promise<string> {
    const line = await this.#lines.next();
    if (line.done === true) throw new Error(`the writer exited: ${this.#stderr}`);
    return line.value;
  }

  async send(command: string): Promise<string> {
    this.child.stdin.write(`${command}\n`);
    return this.next();
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}

const writers: Writer[] = [];
afterEach(() => {
  for (const writer of writers.splice(0)) writer.kill();
});

async function startWriter(target: RadosTarget, namespace: string): Promise<Writer> {
  const writer = new Writer(target, namespace);
  writers.push(writer);
  expect(await writer.next()).toBe(`ready ${writer.pid}`);
  return writer;
}

async function openStore(target: RadosTarget, namespace: string): Promise<Engine> {
  return Engine.open(await RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf, lockLeaseMs: leaseMs }));
}

/** A fresh store with an empty volume `v`. */
async function freshVolume(target: RadosTarget): Promise<string> {
  const namespace = testNamespace("takeover");
  const engine = await Engine.init(await RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf }), { blockSizeBytes });
  await engine.createVolume("v", volumeBytes);
  await engine.close();
  return namespace;
}

/** Opens `v` for writing as soon as the lock is free; every refusal meanwhile must name `holderPid`. */
async function takeOver(engine: Engine, holderPid: number, timeoutMs: number): Promise<Volume> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await engine.openVolume("v", { owner: "taker" });
    } catch (error) {
      expect(isEngineError(error, "EVOLUME_LOCKED"), String(error)).toBe(true);
      expect((error as { details: { holder: { pid: number } } }).details.holder.pid).toBe(holderPid);
      if (Date.now() > deadline) throw new Error(`no takeover within ${timeoutMs} ms`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

const expectBytes = (data: Buffer, byte: number) => expect(data.every((value) => value === byte), `every byte ${byte}`).toBe(true);

describeRados("two processes, one volume: lease takeover and fencing", (target) => {
  it("the second writer is refused with the holder named; after SIGKILL it takes over once the lease ran out, with every flushed write", async () => {
    const namespace = await freshVolume(target);
    const a = await startWriter(target, namespace);
    expect(await a.send(`write 0 ${blockSizeBytes} ${0xa1}`)).toBe("ok");
    expect(await a.send(`write 200000 1000 ${0xa2}`)).toBe("ok"); // unaligned, inside block 3
    expect(await a.send("flush")).toBe("ok");

    const b = await openStore(target, namespace);
    try {
      const refused: unknown = await b.openVolume("v", { owner: "taker" }).catch((error: unknown) => error);
      expect(isEngineError(refused, "EVOLUME_LOCKED"), String(refused)).toBe(true);
      expect(String(refused)).toContain(`volume-child (pid ${a.pid} on `);
      expect((refused as { details: { holder: unknown } }).details.holder).toMatchObject({ owner: "volume-child", pid: a.pid });

      a.kill();
      const killedAt = Date.now();
      const volume = await takeOver(b, a.pid, 4 * leaseMs);
      const waitedMs = Date.now() - killedAt;
      // Not before the lease ran out (less what A's last renewal was old), not much after.
      expect(waitedMs).toBeGreaterThan(leaseMs / 3);
      expect(waitedMs).toBeLessThan(3 * leaseMs);
      expectBytes(await volume.read(0, blockSizeBytes), 0xa1);
      expectBytes(await volume.read(200000, 1000), 0xa2);
      expectBytes(await volume.read(blockSizeBytes, 200000 - blockSizeBytes), 0);
      await volume.write(0, Buffer.alloc(10, 0xb1));
      await volume.close();
      expect((await b.info("v")).lockHolder).toBeUndefined();
    } finally {
      await b.close();
    }
  }, 60_000);

  it("a writer that hung past its lease is fenced: after SIGCONT none of its writes land, and the new writer's data is intact", async () => {
    const namespace = await freshVolume(target);
    const a = await startWriter(target, namespace);
    expect(await a.send(`write 0 ${2 * blockSizeBytes} ${0xa1}`)).toBe("ok");
    expect(await a.send("flush")).toBe("ok");

    a.child.kill("SIGSTOP");
    const b = await openStore(target, namespace);
    try {
      const volume = await takeOver(b, a.pid, 4 * leaseMs);
      expectBytes(await volume.read(0, 2 * blockSizeBytes), 0xa1);
      await volume.write(0, Buffer.alloc(blockSizeBytes, 0xb1));
      await volume.flush();

      a.child.kill("SIGCONT");
      // In place (a block A wrote in its epoch), then a new block, then a flush of the map.
      const inPlace = await a.send(`write 0 ${blockSizeBytes} ${0xdd}`);
      const newBlock = await a.send(`write ${4 * blockSizeBytes} 100 ${0xdd}`);
      const flushed = await a.send("flush");
      for (const answer of [inPlace, newBlock, flushed]) expect(answer).toMatch(/^error (EIO|EVOLUME_LOCKED) /);
      expect(`${inPlace} ${newBlock} ${flushed}`).toMatch(/blocklisted|lost the lock/);

      expectBytes(await volume.read(0, blockSizeBytes), 0xb1);
      expectBytes(await volume.read(blockSizeBytes, blockSizeBytes), 0xa1);
      expectBytes(await volume.read(4 * blockSizeBytes, 100), 0);
      await volume.close();
    } finally {
      await b.close();
    }
    // And as a third client sees it, from scratch.
    const c = await openStore(target, namespace);
    try {
      const volume = await c.openVolume("v", { readOnly: true });
      expectBytes(await volume.read(0, blockSizeBytes), 0xb1);
      expectBytes(await volume.read(4 * blockSizeBytes, blockSizeBytes), 0);
      await volume.close();
    } finally {
      await c.close();
    }
  }, 60_000);
});
