/**
 * HashPool: Pithos+ block hashing (content.ts blockHash) on worker threads, so hashing a
 * 4 MiB block (several ms) never stalls the event loop that serves NBD and HTTP requests.
 *
 *   hashBlock ──small──► inline (the round trip would cost more than the hash)
 *             └─large──► queue ──► idle thread (or a new one, up to `size`) ──► HashedBlock
 *
 * An MD5 session (`md5Session()`: the whole-stream MD5 of an upload, Swift's ETag) hashes
 * its blocks on ONE thread, in the order they were given, and that thread also feeds them
 * to the session's running MD5; `md5Hex()` queues behind the last block and answers the
 * digest. The queue is FIFO, but a task whose session's thread is busy waits for that
 * thread while later tasks of other sessions (or of none) go to idle threads:
 *
 *   queue:  [s1#3] [—#7] [s2#1] [s1#4]     threads: A (s1, busy)  B (idle)
 *   dispatch: s1#3 waits for A; —#7 → B; s2#1 waits for the next idle thread; s1#4 after s1#3
 *
 * A session whose first block is small stays inline for good (its MD5 on the loop: a
 * small upload costs less than a round trip); a thread that dies fails its sessions.
 *
 * The block's memory is moved to the thread and back, not copied, when the block spans a
 * whole ArrayBuffer (what Buffer.alloc and Buffer.allocUnsafeSlow give); a view of part
 * of a larger buffer is copied into one of its own first. Threads start on first use, are
 * unref'd while idle (an idle pool never keeps the process alive, so nobody must close
 * it just to exit) and ref'd while they hold a task (an awaited hash does keep it alive).
 */
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { createHash, type Hash } from "node:crypto";
import { types } from "node:util";
import { isMarkedAsUntransferable, Worker } from "node:worker_threads";
import { EngineError } from "../errors.ts";
import { hashBytes, hashLengthBytes, strippedLength, type HashAlgorithm } from "./content.ts";
// A type import, but it also brings the worker into the build (tsconfig.build.json compiles
// only what cli/okeanos.ts reaches), so dist/ has hash-worker.js next to this file.
import type { BlockRequest, HashReply, HashRequest } from "./hash-worker.ts";

/**
 * At most 4 threads: four threads hash ~4 blocks at once, as many as the file writer keeps
 * in flight (files.ts fileWriteBlocksInFlight); more would take cores from the event loop
 * and the store's own threads (libuv's pool is 4 too) for no gain.
 */
export const hashPoolSizeMax = 4;

/**
 * Blocks shorter than this are hashed inline: below it, the event loop spends about as long
 * posting a block to a thread and taking the answer as it would hashing it itself.
 * Measured with tinybench and eventLoopUtilization on the 2-core build machine (Node 24,
 * one thread, a 64 KiB block moved back and forth): a round trip costs the loop ~40 µs
 * (~100–150 µs of latency); hashing 64 KiB inline takes ~41 µs with sha256 and ~10 µs
 * with blake3. At 4 MiB the loop spends ~140 µs against 2.5 ms (sha256) or 0.56 ms
 * (blake3) inline. So the crossover is ~64 KiB for sha256 (the Pithos-compatible store)
 * and ~256 KiB for blake3; one threshold at the lower keeps every 4 MiB block off the loop.
 */
export const inlineHashMaxBytes = 64 * 1024;

export interface HashedBlock {
  /** H(block without its trailing NUL bytes): the Pithos+ block hash. */
  hash: Buffer;
  /**
   * The block's bytes. When the block was moved to a thread this is a new view of the same
   * memory, and the Uint8Array passed in is detached (empty): use this one.
   */
  data: Buffer;
  /** Length of `data` without its trailing NULs: the bytes to store (0: an all-zero block). */
  strippedBytes: number;
}

export interface HashPoolOptions {
  /** Threads, 1 to hashPoolSizeMax (default: the cores available, within those bounds). */
  size?: number;
  /** Blocks shorter than this are hashed inline (default inlineHashMaxBytes; tests lower it). */
  inlineHashMaxBytes?: number;
}

/** The answers a task's reply is turned into: a hashed block, or an MD5 digest. */
type Answer = { kind: "block"; hashed: HashedBlock } | { kind: "md5"; md5Hex: string };

interface Task {
  request: HashRequest;
  /** The MD5 session whose thread must run this task, if any. */
  session: SessionState | undefined;
  resolve: (answer: Answer) => void;
  reject: (error: Error) => void;
}

interface HashThread {
  worker: Worker;
  task: Task | undefined;
}

interface SessionState {
  id: number;
  /** Bound on its first threaded task; every later task of the session runs there. */
  thread: HashThread | undefined;
  /** The session's thread died: its MD5 state is gone. */
  lost: Error | undefined;
}

/** Hashes the blocks of one stream, in order, and the MD5 of all their bytes (HashPool.md5Session). */
export interface Md5Session {
  /** As HashPool.hashBlock; call in stream order, each block whole (its NULs too). */
  hashBlock(algorithm: HashAlgorithm, block: Uint8Array): Promise<HashedBlock>;
  /** The MD5 (hex) of every block given, in order; call once, after the last hashBlock. */
  md5Hex(): Promise<string>;
}

/** The worker runs as TypeScript from a checkout, as the compiled .js from dist/. */
const workerUrl = new URL(import.meta.url.endsWith(".ts") ? "./hash-worker.ts" : "./hash-worker.js", import.meta.url);

export function hashPoolDefaultSize(): number {
  return Math.min(hashPoolSizeMax, Math.max(1, availableParallelism()));
}

export class HashPool {
  readonly size: number;
  readonly inlineHashMaxBytes: number;
  readonly #threads: HashThread[] = [];
  readonly #queue: Task[] = [];
  #nextId = 0;
  #nextSessionId = 0;
  #closed = false;

  constructor(options: HashPoolOptions = {}) {
    const size = options.size ?? hashPoolDefaultSize();
    assert.ok(Number.isSafeInteger(size) && size >= 1 && size <= hashPoolSizeMax, `hash pool size ${size} outside 1..${hashPoolSizeMax}`);
    this.size = size;
    this.inlineHashMaxBytes = options.inlineHashMaxBytes ?? inlineHashMaxBytes;
    assert.ok(Number.isSafeInteger(this.inlineHashMaxBytes) && this.inlineHashMaxBytes >= 0);
  }

  /** Threads started so far (for tests: the pool starts them lazily). */
  get threadCount(): number {
    return this.#threads.length;
  }

  /** Hashes `block` by the Pithos+ rule. Large blocks are moved to a thread: see HashedBlock.data. */
  async hashBlock(algorithm: HashAlgorithm, block: Uint8Array): Promise<HashedBlock> {
    if (this.#closed) throw new EngineError("ECLOSED", "the hash pool is closed");
    if (block.length < this.inlineHashMaxBytes) return hashInline(algorithm, block);
    return this.#hashOnThread(algorithm, block, undefined);
  }

  /**
   * A stream's blocks hashed in order on one thread, which also keeps the stream's MD5:
   * the MD5 of a large upload never runs on the event loop.
   */
  md5Session(): Md5Session {
    const state: SessionState = { id: this.#nextSessionId++, thread: undefined, lost: undefined };
    let inlineMd5: Hash | undefined;
    let started = false;
    return {
      hashBlock: async (algorithm, block) => {
        if (this.#closed) throw new EngineError("ECLOSED", "the hash pool is closed");
        if (!started) {
          started = true;
          if (block.length < this.inlineHashMaxBytes) inlineMd5 = createHash("md5");
        }
        if (inlineMd5 === undefined) return this.#hashOnThread(algorithm, block, state);
        inlineMd5.update(block);
        return hashInline(algorithm, block);
      },
      md5Hex: async () => {
        if (inlineMd5 !== undefined || !started) return (inlineMd5 ?? createHash("md5")).digest("hex");
        if (this.#closed) throw new EngineError("ECLOSED", "the hash pool is closed");
        const answer = await this.#enqueue({ kind: "md5-end", id: this.#nextId++, md5Session: state.id }, state);
        assert.ok(answer.kind === "md5");
        return answer.md5Hex;
      },
    };
  }

  /** Stops the threads; queued and running hashes fail with ECLOSED. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new EngineError("ECLOSED", "the hash pool was closed");
    for (const task of this.#queue.splice(0)) task.reject(closed);
    const threads = this.#threads.splice(0);
    for (const thread of threads) thread.task?.reject(closed);
    await Promise.all(threads.map((thread) => thread.worker.terminate()));
  }

  async #hashOnThread(algorithm: HashAlgorithm, block: Uint8Array, session: SessionState | undefined): Promise<HashedBlock> {
    const request: BlockRequest = { kind: "block", id: this.#nextId++, algorithm, md5Session: session?.id, ...transferable(block) };
    const answer = await this.#enqueue(request, session);
    assert.ok(answer.kind === "block");
    return answer.hashed;
  }

  /** Queues a task (synchronously: tasks of a session keep the order of the calls). */
  #enqueue(request: HashRequest, session: SessionState | undefined): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      if (session?.lost !== undefined) {
        reject(session.lost);
        return;
      }
      this.#queue.push({ request, session, resolve, reject });
      this.#dispatch();
    });
  }

  /** Gives every queued task that can run now a thread: FIFO, a session's tasks only to its own thread. */
  #dispatch(): void {
    // A session with a task left waiting in this scan keeps its later tasks waiting too (order).
    const waiting = new Set<SessionState>();
    for (let index = 0; index < this.#queue.length; ) {
      const task = this.#queue[index] as Task;
      const thread = task.session !== undefined && waiting.has(task.session) ? undefined : this.#threadFor(task);
      if (thread === undefined) {
        if (task.session !== undefined) waiting.add(task.session);
        index++;
        continue;
      }
      this.#queue.splice(index, 1);
      if (task.session !== undefined) task.session.thread = thread;
      thread.task = task;
      thread.worker.ref();
      thread.worker.postMessage(task.request, task.request.kind === "block" ? [task.request.buffer] : []);
    }
  }

  /** The thread `task` may run on now, if one is free (starting one if the pool may grow). */
  #threadFor(task: Task): HashThread | undefined {
    const bound = task.session?.thread;
    if (bound !== undefined) return bound.task === undefined ? bound : undefined;
    // Idle threads that no waiting session will want first are as good as any: take the first idle.
    return this.#threads.find((candidate) => candidate.task === undefined) ?? this.#spawn();
  }

  #spawn(): HashThread | undefined {
    if (this.#threads.length >= this.size) return undefined;
    const thread: HashThread = { worker: new Worker(workerUrl), task: undefined };
    thread.worker.unref();
    thread.worker.on("message", (reply: HashReply) => this.#answer(thread, reply));
    thread.worker.on("error", (error: Error) => this.#lose(thread, error));
    thread.worker.on("exit", (code: number) => this.#lose(thread, new Error(`hash thread exited with code ${code}`)));
    this.#threads.push(thread);
    return thread;
  }

  #answer(thread: HashThread, reply: HashReply): void {
    if (!this.#threads.includes(thread)) return; // closed meanwhile: its task was rejected
    const task = thread.task;
    assert.ok(task !== undefined && task.request.id === reply.id, "a hash thread answered a request it was not given");
    thread.task = undefined;
    thread.worker.unref();
    if (!reply.ok) {
      // Hashing itself cannot fail on valid input: a failure is a bug, reported as such.
      task.reject(new Error(`hash thread failed: ${reply.message}`));
    } else if ("md5Hex" in reply) {
      assert.equal(task.request.kind, "md5-end");
      task.resolve({ kind: "md5", md5Hex: reply.md5Hex });
    } else {
      assert.ok(task.request.kind === "block");
      assert.equal(reply.hash.length, hashLengthBytes);
      const { byteOffset, byteLength } = task.request;
      const hash = Buffer.from(reply.hash.buffer, reply.hash.byteOffset, reply.hash.byteLength);
      task.resolve({ kind: "block", hashed: { hash, data: Buffer.from(reply.buffer, byteOffset, byteLength), strippedBytes: reply.strippedBytes } });
    }
    this.#dispatch();
  }

  /** A thread died (it threw outside a task, or was killed): fail its task and its sessions, let a new one take over. */
  #lose(thread: HashThread, error: Error): void {
    const index = this.#threads.indexOf(thread);
    if (index === -1) return; // closed, or already lost ('error' is followed by 'exit')
    this.#threads.splice(index, 1);
    thread.task?.reject(error);
    if (thread.task?.session !== undefined) thread.task.session.lost = error;
    thread.task = undefined;
    for (let next = 0; next < this.#queue.length; ) {
      const task = this.#queue[next] as Task;
      if (task.session?.thread === thread) {
        task.session.lost = error;
        this.#queue.splice(next, 1);
        task.reject(error);
      } else {
        next++;
      }
    }
    void thread.worker.terminate();
    this.#dispatch();
  }
}

function hashInline(algorithm: HashAlgorithm, block: Uint8Array): HashedBlock {
  const strippedBytes = strippedLength(block);
  const data = Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength);
  return { hash: hashBytes(algorithm, data.subarray(0, strippedBytes)), data, strippedBytes };
}

/** The block as a whole ArrayBuffer that may be transferred: its own if it is one, else a copy. */
function transferable(block: Uint8Array): Pick<BlockRequest, "buffer" | "byteOffset" | "byteLength"> {
  const buffer = block.buffer;
  const whole = types.isArrayBuffer(buffer) && block.byteOffset === 0 && block.byteLength === buffer.byteLength && !isMarkedAsUntransferable(buffer);
  if (whole) return { buffer, byteOffset: 0, byteLength: block.byteLength };
  const copy = new ArrayBuffer(block.byteLength);
  new Uint8Array(copy).set(block);
  return { buffer: copy, byteOffset: 0, byteLength: block.byteLength };
}
