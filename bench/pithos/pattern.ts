/**
 * The bytes of the large-object transfers: a deterministic stream that the client uploads,
 * the ceiling server serves, and the downloads are checked against, without ever holding
 * the whole object in memory.
 *
 *   chunk n (1 MiB) = ring[n % ringChunks] with bytes 0..7 = salt·2^32 + n (little endian)
 *
 * The ring is `ringChunks` chunks of seeded pseudo-random bytes, so the data is not zeros
 * (the store keeps no zero block: zeros would flatter it), and the stamp makes every chunk,
 * hence every 4 MiB block, distinct (no block is deduplicated, within an object or across
 * rounds when the salt differs). Each chunk is stamped into a ring slot just before it is
 * written and the slot is reused only after the socket has taken it (the write callback),
 * so producing a chunk costs 8 bytes of writing, not a 1 MiB copy.
 */
import type { Writable } from "node:stream";
import { MiB, seededRandom } from "../common.ts";

export const patternChunkBytes = 1 * MiB;
/** Slots in the ring: 8 MiB of chunks, more than a socket queues before backpressure. */
const ringChunks = 8;
const stampBytes = 8;

/** The ring's bytes: the same in every process for a given seed (client, ceiling server). */
function ringBytes(seed: number): Buffer[] {
  const random = seededRandom(seed);
  return Array.from({ length: ringChunks }, () => {
    const chunk = Buffer.allocUnsafeSlow(patternChunkBytes);
    for (let offset = 0; offset < patternChunkBytes; offset += 4) chunk.writeUInt32LE(Math.floor(random() * 2 ** 32), offset);
    return chunk;
  });
}

const ringSeed = 0x9e3779b9;
let sharedRing: Buffer[] | undefined;

/** Builds the ring now (about 2 M PRNG calls), so that no timed transfer pays for it. */
export function preparePattern(): void {
  sharedRing ??= ringBytes(ringSeed);
}

function stamp(chunk: Buffer, salt: number, index: number): void {
  chunk.writeUInt32LE(index, 0);
  chunk.writeUInt32LE(salt, 4);
}

/**
 * Writes `totalBytes` of the pattern (salted) to `sink`, honouring backpressure; resolves when
 * the last chunk has been handed to the sink. Does not end the sink.
 */
export async function writePattern(sink: Writable, totalBytes: number, salt: number): Promise<void> {
  const ring = (sharedRing ??= ringBytes(ringSeed)).map((chunk) => Buffer.from(chunk)); // own slots: concurrent writers must not share
  const taken: Array<Promise<void> | undefined> = new Array(ringChunks);
  for (let index = 0, offset = 0; offset < totalBytes; index++, offset += patternChunkBytes) {
    const slot = index % ringChunks;
    await taken[slot];
    const chunk = ring[slot] as Buffer;
    stamp(chunk, salt, index);
    const lengthBytes = Math.min(patternChunkBytes, totalBytes - offset);
    const view = lengthBytes === patternChunkBytes ? chunk : chunk.subarray(0, lengthBytes);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    taken[slot] = promise;
    const more = sink.write(view, (error) => (error ? reject(error) : resolve()));
    promise.catch(() => undefined); // awaited when the slot comes round, or at the end
    if (!more && !sink.destroyed) await waitDrain(sink);
  }
  await Promise.all(taken.filter((write): write is Promise<void> => write !== undefined));
}

function waitDrain(sink: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      sink.off("error", onError);
      resolve();
    };
    const onError = (error: Error): void => {
      sink.off("drain", onDrain);
      reject(error);
    };
    sink.once("drain", onDrain);
    sink.once("error", onError);
  });
}

/**
 * Checks received bytes against the pattern as they arrive: a memcmp against the ring per
 * received piece plus the 8-byte stamps, cheap next to the transfer. A download must return
 * the bytes uploaded.
 */
export class PatternChecker {
  readonly #salt: number;
  readonly #stamp = Buffer.alloc(stampBytes);
  receivedBytes = 0;

  constructor(salt: number) {
    this.#salt = salt;
  }

  /** Throws at the first piece that differs. */
  update(data: Buffer): void {
    const ring = (sharedRing ??= ringBytes(ringSeed));
    for (let done = 0; done < data.length; ) {
      const index = Math.floor(this.receivedBytes / patternChunkBytes);
      const inChunk = this.receivedBytes - index * patternChunkBytes;
      const lengthBytes = Math.min(patternChunkBytes - inChunk, data.length - done);
      const end = inChunk + lengthBytes;
      let same = true;
      if (inChunk < stampBytes) {
        stamp(this.#stamp, this.#salt, index);
        const stampEnd = Math.min(stampBytes, end);
        same = this.#stamp.compare(data, done, done + stampEnd - inChunk, inChunk, stampEnd) === 0;
      }
      const from = Math.max(inChunk, stampBytes);
      if (same && from < end) same = (ring[index % ringChunks] as Buffer).compare(data, done + from - inChunk, done + lengthBytes, from, end) === 0;
      if (!same) throw new Error(`downloaded bytes differ from the uploaded pattern within bytes ${this.receivedBytes}…${this.receivedBytes + lengthBytes}`);
      done += lengthBytes;
      this.receivedBytes += lengthBytes;
    }
  }
}
