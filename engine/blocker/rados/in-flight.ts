/**
 * A FIFO gate on operations in flight: at most `opsMax` at once, and at most `bytesMax`
 * bytes among them (one operation larger than that still runs, alone).
 *
 * librados has the same two limits (objecter_inflight_ops, objecter_inflight_op_bytes),
 * but when they are exceeded it blocks the *submitting* thread — ours is the event loop:
 * 32 × 4 MiB writes stalled it for up to 1.9 s (../shared/notes/ceph.md §2). Staying
 * under them here means librados never blocks us. FIFO admission keeps operations on one
 * object in the order they were issued, which RADOS then preserves.
 */
interface Waiting {
  bytes: number;
  start(): void;
}

export class InFlightLimiter {
  readonly opsMax: number;
  readonly bytesMax: number;
  #ops = 0;
  #bytes = 0;
  readonly #queue: Waiting[] = [];
  #queueHead = 0;

  constructor(opsMax: number, bytesMax: number) {
    if (!Number.isSafeInteger(opsMax) || opsMax < 1) throw new RangeError(`opsMax ${opsMax}`);
    if (!Number.isSafeInteger(bytesMax) || bytesMax < 1) throw new RangeError(`bytesMax ${bytesMax}`);
    this.opsMax = opsMax;
    this.bytesMax = bytesMax;
  }

  get opsInFlight(): number {
    return this.#ops;
  }

  get bytesInFlight(): number {
    return this.#bytes;
  }

  /** Runs `action` once admitted; `action` is called synchronously if it can start now. */
  run<T>(bytes: number, action: () => Promise<T>): Promise<T> {
    if (this.#queueHead === this.#queue.length && this.#admits(bytes)) return this.#start(bytes, action);
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ bytes, start: () => void this.#start(bytes, action).then(resolve, reject) });
    });
  }

  #admits(bytes: number): boolean {
    return this.#ops < this.opsMax && (this.#ops === 0 || this.#bytes + bytes <= this.bytesMax);
  }

  #start<T>(bytes: number, action: () => Promise<T>): Promise<T> {
    this.#ops++;
    this.#bytes += bytes;
    let running: Promise<T>;
    try {
      running = action();
    } catch (error) {
      running = Promise.reject(error);
    }
    return running.finally(() => {
      this.#ops--;
      this.#bytes -= bytes;
      this.#drain();
    });
  }

  #drain(): void {
    while (this.#queueHead < this.#queue.length) {
      const next = this.#queue[this.#queueHead] as Waiting;
      if (!this.#admits(next.bytes)) break;
      this.#queueHead++;
      next.start();
    }
    if (this.#queueHead === this.#queue.length) {
      this.#queue.length = 0;
      this.#queueHead = 0;
    }
  }
}
