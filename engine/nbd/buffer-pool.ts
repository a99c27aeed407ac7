/**
 * Reusable request buffers (WRITE payloads, READ results), shared by every connection of a
 * server.
 *
 * Why: on the machines we measure on, a fresh 1 MiB allocation costs 1–2 ms (first touch
 * of freshly mapped memory), more than writing that MiB to the page cache
 * (../shared/notes/nbd.md). nbdkit reuses per-thread buffers; we reuse per size class.
 *
 *   take(n) ──► class = next power of two ≥ max(n, 4 KiB) ──► free list of that class
 *                                                          └─ empty: allocUnsafeSlow(class)
 *   give(b) ──► back on its class's free list, unless idle bytes would exceed the budget
 *
 * Buffers are tracked by their ArrayBuffer, so `give` accepts the exact-length view that
 * `take` returned. A buffer may only be given back once nothing references it any more: a
 * WRITE payload when Volume.write has settled successfully (the object stores copy or write
 * out what they are given before their promise settles), a READ result when the socket's
 * write callback has run. A failed Volume.read or write may leave sibling block I/O still
 * using the buffer, so failed requests abandon theirs to the garbage collector instead.
 */
import assert from "node:assert/strict";
import { bufferPoolClassMinBytes, bufferPoolIdleBytesMax } from "./limits.ts";
import { requestLengthMaxBytes } from "./protocol.ts";

export interface BufferPoolStats {
  idleBytes: number;
  allocations: number;
  reuses: number;
}

export class BufferPool {
  readonly #idleBytesMax: number;
  /** Free ArrayBuffers by class size. */
  readonly #free = new Map<number, ArrayBuffer[]>();
  /** What is on the free lists, to catch a buffer given back twice. */
  readonly #idle = new WeakSet<ArrayBuffer>();
  #idleBytes = 0;
  #allocations = 0;
  #reuses = 0;

  constructor(idleBytesMax = bufferPoolIdleBytesMax) {
    this.#idleBytesMax = idleBytesMax;
  }

  /** A buffer of exactly `lengthBytes` (contents undefined). */
  take(lengthBytes: number): Buffer {
    assert.ok(Number.isSafeInteger(lengthBytes) && lengthBytes > 0 && lengthBytes <= requestLengthMaxBytes);
    const classBytes = classOf(lengthBytes);
    const backing = this.#free.get(classBytes)?.pop();
    if (backing !== undefined) {
      this.#idle.delete(backing);
      this.#idleBytes -= classBytes;
      this.#reuses++;
      return Buffer.from(backing, 0, lengthBytes);
    }
    this.#allocations++;
    // allocUnsafeSlow: an ArrayBuffer of its own, never a slice of Node's shared pool.
    return Buffer.from(Buffer.allocUnsafeSlow(classBytes).buffer, 0, lengthBytes);
  }

  /** Returns a buffer from take(); nothing may use it afterwards. */
  give(buffer: Buffer): void {
    const backing = buffer.buffer;
    assert.ok(backing instanceof ArrayBuffer && buffer.byteOffset === 0, "not a pooled buffer");
    const classBytes = backing.byteLength;
    assert.equal(classBytes, classOf(classBytes), "not a pooled buffer");
    assert.ok(!this.#idle.has(backing), "buffer given back twice");
    if (this.#idleBytes + classBytes > this.#idleBytesMax) return;
    let list = this.#free.get(classBytes);
    if (list === undefined) this.#free.set(classBytes, (list = []));
    list.push(backing);
    this.#idle.add(backing);
    this.#idleBytes += classBytes;
  }

  get stats(): BufferPoolStats {
    return { idleBytes: this.#idleBytes, allocations: this.#allocations, reuses: this.#reuses };
  }
}

function classOf(lengthBytes: number): number {
  let classBytes = bufferPoolClassMinBytes;
  while (classBytes < lengthBytes) classBytes *= 2;
  return classBytes;
}
