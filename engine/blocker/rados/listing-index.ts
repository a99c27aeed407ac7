/**
 * Per-store listing indexes in omap, so that list(prefix) never scans the pool.
 *
 *   +index                        omap: "<segment>." → ""        every segment ever used
 *   +index.<segment>.<shard>      omap: object name → time added (ms since the epoch, decimal)
 *
 * A name's segment is the part before its first dot ("b" for b.3f…, "okeanos" for
 * okeanos.store), as in the file backend; its shard is FNV-1a(name) mod `indexShardCount`.
 * These objects live beside the store's objects (same pool and namespace); object names
 * never contain "+", so they cannot collide.
 *
 * The rule that keeps the index right across crashes — callers follow it:
 * - add(name) completes *before* the object is created; remove the object, *then* drop(name).
 * - So every existing object is listed. A listed name may have no object: removed
 *   concurrently, or left by a crash between add and create or between remove and drop.
 *   list() returns such names; every caller already treats a listed name that no longer
 *   exists as removed while it listed (stat → undefined, read → ENOT_FOUND). The value (time
 *   added) lets a future repair drop stale entries older than any creation in progress.
 * - Two processes creating and removing the same name at once can leave an object unlisted
 *   (add, remove, drop, create). The engine never does that: gc removes only names no
 *   writer can recreate (content blocks only while no map is locked).
 *
 * Updates of one shard object are coalesced: at most one omap write per shard is in flight,
 * and the adds (or drops) issued meanwhile go out together in the next one, in issue order:
 *
 *   shard +index.b.7:  [in flight: set b.1]  ←  queued: [set b.4 b.9 b.12] [rm b.3] [set b.5]
 *
 * A lone update still costs one op at once; under load (32 creates in flight over 16
 * shards) the index costs a fraction of an op per create. RADOS applies the writes of one
 * object one at a time anyway, so holding the next back loses no parallelism at the OSD.
 */
import type { InFlightLimiter } from "./in-flight.ts";
import { isRadosError, type OmapPage, type RadosPool } from "./native.ts";

/**
 * Shards per segment. RADOS warns about omap objects over 200 000 keys
 * (osd_deep_scrub_large_omap_object_key_threshold); 16 shards hold 3.2 M names of one kind
 * — 12 TiB of 4 MiB blocks — before that, while listing a small kind costs 16 small reads.
 */
export const indexShardCount = 16;

/** Keys per omap read: the OSD returns at most osd_max_omap_entries_per_request (1024) anyway. */
const listPageKeysMax = 1024;

const rootIndexObject = "+index";
const enoent = 2;

export function segmentOf(name: string): string {
  const dot = name.indexOf(".");
  return dot === -1 ? name : name.slice(0, dot);
}

/** FNV-1a (32-bit): cheap, and spreads `b.<hex>` and counters alike. */
export function shardOf(name: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < name.length; index++) hash = Math.imul(hash ^ name.charCodeAt(index), 0x01000193);
  return (hash >>> 0) % indexShardCount;
}

export function shardObject(segment: string, shard: number): string {
  return `${rootIndexObject}.${segment}.${shard}`;
}

/**
 * Names per coalesced omap write: a shard's queue drains in writes of at most this many keys
 * (osd_max_omap_entries_per_request is 1024 for reads; writes have no such limit, but a
 * bounded op keeps one slow write from holding many callers).
 */
const batchKeysMax = 256;

/** Updates of one kind waiting for their shard's next write. */
interface Batch {
  kind: "set" | "rm";
  names: string[];
  settled: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/** A shard object's queue: batches in issue order; `draining` while a write is in flight. */
interface ShardQueue {
  batches: Batch[];
  draining: boolean;
}

export class ListingIndex {
  readonly #pool: RadosPool;
  readonly #limiter: InFlightLimiter;
  /** Segments known to be in the root index: its entries are never removed, so this never goes stale. */
  readonly #knownSegments = new Set<string>();
  /** Shard objects with updates queued or in flight. */
  readonly #queues = new Map<string, ShardQueue>();

  constructor(pool: RadosPool, limiter: InFlightLimiter) {
    this.#pool = pool;
    this.#limiter = limiter;
  }

  /** Records `name`: call before creating its object. Idempotent. */
  async add(name: string): Promise<void> {
    const segment = segmentOf(name);
    if (!this.#knownSegments.has(segment)) {
      await this.#write(rootIndexObject, [["omapSet", [`${segment}.`], [Buffer.alloc(0)]]]);
      this.#knownSegments.add(segment);
    }
    await this.#enqueue(shardObject(segment, shardOf(name)), "set", name);
  }

  /** Forgets `name`: call after removing its object. Idempotent. */
  async drop(name: string): Promise<void> {
    await this.#enqueue(shardObject(segmentOf(name), shardOf(name)), "rm", name);
  }

  /** Queues an update of `object`: it joins the last batch if that is of its kind, not yet sent and not full. */
  #enqueue(object: string, kind: Batch["kind"], name: string): Promise<void> {
    let queue = this.#queues.get(object);
    if (queue === undefined) this.#queues.set(object, (queue = { batches: [], draining: false }));
    let batch = queue.batches.at(-1);
    if (batch === undefined || batch.kind !== kind || batch.names.length >= batchKeysMax) {
      let resolve!: () => void;
      let reject!: (error: unknown) => void;
      const settled = new Promise<void>((onResolve, onReject) => ((resolve = onResolve), (reject = onReject)));
      batch = { kind, names: [], settled, resolve, reject };
      queue.batches.push(batch);
    }
    batch.names.push(name);
    if (!queue.draining) void this.#drain(object, queue);
    return batch.settled;
  }

  /** Sends `object`'s batches one write at a time until its queue is empty. */
  async #drain(object: string, queue: ShardQueue): Promise<void> {
    queue.draining = true;
    for (let batch = queue.batches.shift(); batch !== undefined; batch = queue.batches.shift()) {
      const names = batch.names;
      try {
        if (batch.kind === "set") {
          const added = Buffer.from(String(Date.now()));
          await this.#write(object, [["omapSet", names, names.map(() => added)]]);
        } else {
          await this.#write(object, [["omapRm", names]]);
        }
        batch.resolve();
      } catch (error) {
        batch.reject(error);
      }
    }
    queue.draining = false;
    this.#queues.delete(object);
  }

  /** Every indexed name starting with `prefix` (see the header for names without objects). */
  async *list(prefix: string): AsyncIterable<string> {
    // A prefix with a dot names its segment; one without may span several (b → b, bb, bbb).
    let segments = [segmentOf(prefix)];
    if (!prefix.includes(".")) {
      segments = [];
      for await (const key of this.#keys(rootIndexObject, prefix)) segments.push(key.slice(0, -1));
    }
    for (const segment of segments) {
      for (let shard = 0; shard < indexShardCount; shard++) yield* this.#keys(shardObject(segment, shard), prefix);
    }
  }

  /** The keys of `object` starting with `prefix`, a page at a time; none if the object is absent. */
  async *#keys(object: string, prefix: string): AsyncIterable<string> {
    let after = "";
    for (;;) {
      let page: OmapPage;
      try {
        const [result] = await this.#limiter.run(0, () => this.#pool.readOp(object, [["omapGetVals", after, prefix, listPageKeysMax]]));
        page = result as OmapPage;
      } catch (error) {
        if (isRadosError(error, enoent)) return;
        throw error;
      }
      yield* page.keys;
      const last = page.keys.at(-1);
      if (!page.more || last === undefined) return;
      after = last;
    }
  }

  #write(object: string, steps: Parameters<RadosPool["writeOp"]>[1]): Promise<void> {
    return this.#limiter.run(0, () => this.#pool.writeOp(object, steps));
  }
}
