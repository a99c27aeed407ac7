/**
 * ListingIndex's coalescing, on a fake pool (no cluster): one omap write per shard in flight,
 * the updates issued meanwhile sent together in issue order, a failure failing only the
 * callers whose updates were in that write.
 */
import { describe, expect, it } from "vitest";
import { InFlightLimiter } from "./in-flight.ts";
import { indexShardCount, ListingIndex, shardObject, shardOf } from "./listing-index.ts";
import type { RadosPool, WriteStep } from "./native.ts";

interface SentWrite {
  object: string;
  steps: readonly WriteStep[];
  finish(error?: Error): void;
}

/** A pool whose writes complete only when the test says so. */
function fakePool(): { pool: RadosPool; sent: SentWrite[] } {
  const sent: SentWrite[] = [];
  const pool = {
    writeOp: (object: string, steps: readonly WriteStep[]) =>
      new Promise<void>((resolve, reject) => sent.push({ object, steps, finish: (error) => (error === undefined ? resolve() : reject(error)) })),
  } as unknown as RadosPool;
  return { pool, sent };
}

/** Names of segment `b` that fall in one shard. */
function sameShard(count: number): string[] {
  const names: string[] = [];
  for (let index = 0; names.length < count; index++) if (shardOf(`b.${index}`) === 3) names.push(`b.${index}`);
  return names;
}

const describeStep = (step: WriteStep): string => `${step[0]} ${(step[1] as string[]).join(",")}`;
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("listing index: coalesced updates", () => {
  it("sends a lone update at once, and the updates issued while it is in flight together, in order", async () => {
    const { pool, sent } = fakePool();
    const index = new ListingIndex(pool, new InFlightLimiter(128, 1 << 30));
    const [a, b, c, d] = sameShard(4) as [string, string, string, string];
    const object = shardObject("b", 3);

    const first = index.add(a);
    await settle();
    // The root index ("b." ever used) goes first, once.
    expect(sent.map((write) => write.object)).toEqual(["+index"]);
    sent.shift()!.finish();
    await settle();
    expect(sent.map((write) => [write.object, describeStep(write.steps[0]!)])).toEqual([[object, `omapSet ${a}`]]);

    const later = [index.add(b), index.add(c), index.drop(a), index.add(d), index.add(a)];
    await settle();
    expect(sent).toHaveLength(1); // one write per shard in flight
    sent.shift()!.finish();
    await first;
    for (const expected of [`omapSet ${b},${c}`, `omapRm ${a}`, `omapSet ${d},${a}`]) {
      await settle();
      expect(sent.map((write) => describeStep(write.steps[0]!))).toEqual([expected]);
      sent.shift()!.finish();
    }
    await Promise.all(later);
  });

  it("a failed write fails its own callers only", async () => {
    const { pool, sent } = fakePool();
    const index = new ListingIndex(pool, new InFlightLimiter(128, 1 << 30));
    const [a, b, c] = sameShard(3) as [string, string, string];
    const first = index.add(a);
    await settle();
    sent.shift()!.finish(); // +index
    await settle();
    const second = index.add(b);
    const third = index.drop(c);
    sent.shift()!.finish(new Error("EIO"));
    await expect(first).rejects.toThrow("EIO");
    await settle();
    sent.shift()!.finish();
    await settle();
    sent.shift()!.finish();
    await expect(Promise.all([second, third])).resolves.toBeDefined();
  });

  it("shards of one segment do not wait on each other", async () => {
    const { pool, sent } = fakePool();
    const index = new ListingIndex(pool, new InFlightLimiter(128, 1 << 30));
    void index.add("b.root");
    await settle();
    sent.shift()!.finish();
    await settle();
    sent.shift()!.finish();
    const names = Array.from({ length: 200 }, (_, number) => `b.x${number}`);
    const adds = names.map((name) => index.add(name));
    await settle();
    expect(new Set(sent.map((write) => write.object)).size).toBe(indexShardCount);
    expect(sent).toHaveLength(indexShardCount);
    while (sent.length > 0) {
      sent.shift()!.finish();
      await settle();
    }
    await Promise.all(adds);
  });
});
