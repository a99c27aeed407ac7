/**
 * Small file reads and writes done synchronously, on the event loop's own thread, when they
 * are page-cache copies: the file backend's fast path (file.ts decides when).
 *
 * Why: a 4 KiB pread that hits the page cache takes ~3 µs and a pwrite 5–25 µs (page-cache
 * lookups over a large working set), but a trip through libuv's thread pool adds 30–50 µs
 * of wake-ups on a loaded 2-vCPU machine. The
 * NBD server spent 35–63% of its main thread's busy time in that hop on 4 KiB requests,
 * and it was most of the QD1 latency gap to qemu-nbd and nbdkit (bench/RESULTS.md, "nbd").
 * Results and durability are the same either way: the same pread/pwrite on the same
 * descriptor, the same page cache, and the store's barrier fdatasyncs every object written
 * since the last one, however the bytes got there.
 *
 * Writes up to 1 MiB too: a 1 MiB write into the page cache is a 150–300 µs copy either way,
 * and on a machine with few cores the pool's hops (a futex wake-up, a thread switch and a
 * completion wake-up per call, and four calls per MiB: file-io.ts writePieceBytesMax) cost
 * more than the loop waiting: over NBD, 1 MiB sequential writes 1.3× (1.1–1.3) with 357
 * against 515 µs of server CPU per request (bench/RESULTS.md, nbd "Run 10"). Reads of 1 MiB
 * measured the same either way (1.0×), so reads stay small.
 *
 * The risk: while a sync call blocks, every connection of the process waits. So:
 *   - reads only ≤ syncReadBytesMax (a 64 KiB copy is ~15 µs), writes ≤ syncWriteBytesMax
 *     (~0.3 ms for 1 MiB, in pieces as the pool would write them);
 *   - writes only when page-aligned: a whole-page write never reads the page from disk
 *     first, a partial one may;
 *   - reads of pages this process read or wrote recently (recent-pages.ts), which the
 *     page cache almost certainly still holds; first reads of other pages only while a
 *     stricter guard (coldReadGuard) sees them hit the cache, else they go to the pool;
 *   - a guard per direction (SyncIoGuard) measures every sync call and sends that
 *     direction back to the thread pool for a while when slow calls take more than their
 *     budget of the event loop's time (dirty-page throttling, a thrashing page cache).
 */
import { openSync, readSync, writeSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { writePieceBytesMax } from "./file-io.ts";

/** The largest read done synchronously. */
export const syncReadBytesMax = 64 * 1024;
/** The largest write done synchronously. */
export const syncWriteBytesMax = 1024 * 1024;
/**
 * What a page-cache copy may take per byte before the rest of the call counts against the
 * guard (slow, or a miss): 0.5 ms per MiB (2 GB/s), a few µs for a small write.
 */
export const copyAllowanceMsPerByte = 0.5 / (1024 * 1024);
/** Page size assumed for alignment (x86-64 and most arm64 kernels). */
export const pageBytes = 4096;

export interface SyncIoGuardOptions {
  /** Counting window. */
  windowMs: number;
  /** A call slower than this waited for the disk, or was paused by the kernel. */
  slowMs: number;
  /** Time in slow calls allowed per window. */
  slowBudgetMs: number;
  /** A call slower than this was not a page-cache copy (an SSD read takes 0.1–0.3 ms). */
  missMs: number;
  /** Share of a window's calls allowed to be misses, once there are missCountMin of them. */
  missShareMax: number;
  missCountMin: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  /**
   * This thread's total time runnable but not running (preempted), ms; NaN if unknown.
   * Default: /proc/thread-self/schedstat.
   */
  runQueueWaitMs?: () => number;
}

/**
 * The same bounds for both directions. What they must tell apart, measured on a 2-vCPU
 * machine at load 5–6: the main thread preempted in the middle of a call, which says
 * nothing about the disk (0.7% of 4 KiB writes took over 0.2 ms, 0.2% over 1 ms; with the
 * loop saturated, 20+ writes a second took 4–12 ms, time slices of other processes), from
 * what does say something:
 *   - dirty-page throttling (balance_dirty_pages) pauses a writer for 10–200 ms at a time,
 *     again and again: caught by the time budget, 10% of the loop;
 *   - a page cache that no longer holds what recent-pages.ts bets on (a host short of
 *     memory) makes many reads take 0.1–10 ms: caught by the miss share, 5% of calls
 *     (preemption alone stays well under it).
 * Time spent preempted is taken out of the slow time before it is held against the budget:
 * the thread's run-queue wait over the window (schedstat), which over-counts (preemptions
 * outside the calls too), so the guard errs toward keeping the fast path on an overloaded
 * machine, where the pool's hop would cost as much anyway.
 * Either way the direction goes back to the thread pool for the backoff. A slow disk then
 * costs the loop at most the budget plus one call per backoff period: about 30% of the
 * first second with 200 ms pauses, under 1% once the backoff has doubled up to 32 s.
 */
export const syncIoGuardOptions: SyncIoGuardOptions = {
  windowMs: 1000,
  slowMs: 1,
  slowBudgetMs: 100,
  missMs: 0.25,
  missShareMax: 0.05,
  missCountMin: 16,
  backoffMinMs: 1000,
  backoffMaxMs: 32_000,
};

/** What a guard has seen (for tests and diagnostics). */
export interface SyncIoStats {
  calls: number;
  misses: number;
  backoffs: number;
}

/**
 * Whether sync calls of one direction may run now, from how slow they have been:
 *
 *   each call ──► window: calls++, misses++ (> missMs), slowTime += elapsed (> slowMs)
 *   slowTime > slowBudgetMs, or misses > missShareMax × calls (and ≥ missCountMin) ──► back off
 *   backoff: backoffMinMs, doubled (≤ backoffMaxMs) when it happens again within one
 *   backoff period of resuming, back to backoffMinMs otherwise
 */
export class SyncIoGuard {
  readonly stats: SyncIoStats = { calls: 0, misses: 0, backoffs: 0 };
  readonly #options: SyncIoGuardOptions;
  readonly #runQueueWaitMs: () => number;
  #windowStartMs = Number.NEGATIVE_INFINITY;
  #windowCalls = 0;
  #windowMisses = 0;
  #windowSlowMs = 0;
  /** runQueueWaitMs() when the window started (read once per window, and on a slow call). */
  #windowRunQueueWaitMs = Number.NaN;
  #resumeAtMs = Number.NEGATIVE_INFINITY;
  #backoffMs: number;

  constructor(options: SyncIoGuardOptions = syncIoGuardOptions) {
    this.#options = options;
    this.#backoffMs = options.backoffMinMs;
    this.#runQueueWaitMs = options.runQueueWaitMs ?? threadRunQueueWaitMs;
  }

  allowed(nowMs: number): boolean {
    return nowMs >= this.#resumeAtMs;
  }

  /** Records one sync call that took `elapsedMs`, ending at `endedMs`. */
  record(elapsedMs: number, endedMs: number): void {
    const options = this.#options;
    this.stats.calls++;
    if (endedMs - this.#windowStartMs > options.windowMs) {
      this.#windowStartMs = endedMs - elapsedMs;
      this.#windowCalls = 0;
      this.#windowMisses = 0;
      this.#windowSlowMs = 0;
      this.#windowRunQueueWaitMs = this.#runQueueWaitMs();
    }
    this.#windowCalls++;
    if (elapsedMs <= options.missMs) return;
    this.stats.misses++;
    this.#windowMisses++;
    if (elapsedMs > options.slowMs) this.#windowSlowMs += elapsedMs;
    const missing = this.#windowMisses >= options.missCountMin && this.#windowMisses > options.missShareMax * this.#windowCalls;
    if (this.#windowSlowMs <= options.slowBudgetMs && !missing) return;
    if (!missing) {
      const preemptedMs = this.#runQueueWaitMs() - this.#windowRunQueueWaitMs;
      if (this.#windowSlowMs - (Number.isFinite(preemptedMs) ? preemptedMs : 0) <= options.slowBudgetMs) return;
    }
    const again = endedMs - this.#resumeAtMs <= this.#backoffMs;
    this.#backoffMs = again ? Math.min(2 * this.#backoffMs, options.backoffMaxMs) : options.backoffMinMs;
    this.#resumeAtMs = endedMs + this.#backoffMs;
    this.#windowStartMs = Number.NEGATIVE_INFINITY;
    this.stats.backoffs++;
  }
}

let schedstatFd: number | undefined;
const schedstatScratch = Buffer.alloc(128);

/**
 * The calling thread's run-queue wait (the second field of /proc/thread-self/schedstat, in
 * ns), ms; NaN without schedstat (not Linux, or a kernel without CONFIG_SCHED_INFO). The
 * descriptor is opened by, and names, the first thread to ask: each worker thread loads its
 * own copy of this module.
 */
function threadRunQueueWaitMs(): number {
  try {
    schedstatFd ??= openSync("/proc/thread-self/schedstat", "r");
    const bytesRead = readSync(schedstatFd, schedstatScratch, 0, schedstatScratch.length, 0);
    return Number(schedstatScratch.toString("latin1", 0, bytesRead).split(" ")[1]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

/**
 * Reads of pages this process has not touched lately are a guess about the page cache, not
 * a bet on it: the first reads after a restart (a server restarted under its VMs, a clone
 * read through its parent's blocks, a volume written by another process), which are far
 * more often cached than not on a host that just served them. They get their own guard,
 * quicker to give up: a miss is anything over 60 µs (a 64 KiB page-cache copy takes ~15;
 * an NVMe read 70–100, which must not pass for a hit, or a cold cache would serialise
 * reads the pool runs four at a time), 8 misses or a 20 ms budget back off. A cold cache
 * then costs the loop a few disk reads per backoff period (doubling to 32 s) before those
 * reads go to the pool again.
 */
export const coldReadGuardOptions: SyncIoGuardOptions = { ...syncIoGuardOptions, missMs: 0.06, slowBudgetMs: 20, missCountMin: 8 };

/** One per direction and process: what a sync call blocks is this thread's event loop. */
export const syncWriteGuard = new SyncIoGuard();
export const syncReadGuard = new SyncIoGuard();
/** Reads of pages not known to be recent (see coldReadGuardOptions). */
export const coldReadGuard = new SyncIoGuard(coldReadGuardOptions);

/** One line on what the fast path did in this process (for a server's log at shutdown). */
export function syncIoSummary(): string {
  const part = (label: string, stats: SyncIoStats): string => `${label} ${stats.calls} (${stats.misses} slow, ${stats.backoffs} backoffs)`;
  return [part("writes", syncWriteGuard.stats), part("reads", syncReadGuard.stats), part("first reads", coldReadGuard.stats)].join(", ");
}

/** Whether a write of this shape may be done synchronously now. */
export function syncWriteAllowed(lengthBytes: number, offsetBytes: number, nowMs: number): boolean {
  return lengthBytes > 0 && lengthBytes <= syncWriteBytesMax && lengthBytes % pageBytes === 0 && offsetBytes % pageBytes === 0 && syncWriteGuard.allowed(nowMs);
}

/** Whether a read of this size may be done synchronously now (its pages being recent is the caller's check). */
export function syncReadAllowed(lengthBytes: number, nowMs: number): boolean {
  return lengthBytes > 0 && lengthBytes <= syncReadBytesMax && syncReadGuard.allowed(nowMs);
}

/**
 * pwrite until all of `data` is written (pwrite may write less than asked), at most
 * writePieceBytesMax per call as writeAt does, timed for the guard less the copy's allowance.
 */
export function writeAllSync(fd: number, data: Uint8Array, offsetBytes: number): void {
  const startedMs = performance.now();
  let doneBytes = 0;
  try {
    while (doneBytes < data.length) {
      doneBytes += writeSync(fd, data, doneBytes, Math.min(writePieceBytesMax, data.length - doneBytes), offsetBytes + doneBytes);
    }
  } finally {
    const endedMs = performance.now();
    syncWriteGuard.record(Math.max(0, endedMs - startedMs - data.length * copyAllowanceMsPerByte), endedMs);
  }
}

/** Fills `target` from `offsetBytes` (zeros past the end of the file), timed for `guard`. */
export function readAllSync(fd: number, target: Buffer, offsetBytes: number, guard: SyncIoGuard = syncReadGuard): void {
  const startedMs = performance.now();
  let doneBytes = 0;
  try {
    while (doneBytes < target.length) {
      const bytesRead = readSync(fd, target, doneBytes, target.length - doneBytes, offsetBytes + doneBytes);
      if (bytesRead === 0) break; // end of file
      doneBytes += bytesRead;
    }
    target.fill(0, doneBytes);
  } finally {
    const endedMs = performance.now();
    guard.record(endedMs - startedMs, endedMs);
  }
}
