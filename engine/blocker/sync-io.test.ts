import { describe, expect, it } from "vitest";
import { RecentPages } from "./recent-pages.ts";
import { SyncIoGuard, syncIoGuardOptions, type SyncIoGuardOptions } from "./sync-io.ts";

/** A guard on a fake clock: `call(ms)` records one call taking `ms` at the clock, then advances it. */
function guardOnClock(runQueueWaitMs: () => number = () => 0, overrides: Partial<SyncIoGuardOptions> = {}) {
  const guard = new SyncIoGuard({ ...syncIoGuardOptions, runQueueWaitMs, ...overrides });
  const clock = { nowMs: 10_000 };
  const call = (elapsedMs: number, gapMs = 1): void => {
    clock.nowMs += elapsedMs;
    guard.record(elapsedMs, clock.nowMs);
    clock.nowMs += gapMs;
  };
  return { guard, clock, call };
}

describe("SyncIoGuard", () => {
  it("page-cache copies never back off, however many", () => {
    const { guard, clock, call } = guardOnClock();
    for (let index = 0; index < 100_000; index++) call(0.005, 0.01);
    expect(guard.stats).toEqual({ calls: 100_000, misses: 0, backoffs: 0 });
    expect(guard.allowed(clock.nowMs)).toBe(true);
  });

  it("a journal stall or a preemption now and then is within budget", () => {
    const { guard, clock, call } = guardOnClock();
    // 20 s of 5,000 calls a second, one 12 ms stall and ten 3 ms ones each second.
    for (let second = 0; second < 20; second++) {
      for (let index = 0; index < 5000; index++) call(index === 0 ? 12 : index % 500 === 1 ? 3 : 0.005, 0.18);
    }
    expect(guard.stats.backoffs).toBe(0);
    expect(guard.allowed(clock.nowMs)).toBe(true);
  });

  it("slow calls over the budget send the direction to the pool, for a backoff that doubles while it recurs", () => {
    const { guard, clock, call } = guardOnClock();
    // Dirty-page throttling: 40 ms pauses.
    call(40);
    call(40);
    expect(guard.allowed(clock.nowMs)).toBe(true);
    call(40); // 120 ms in slow calls within the window: over 100
    expect(guard.stats.backoffs).toBe(1);
    expect(guard.allowed(clock.nowMs)).toBe(false);
    expect(guard.allowed(clock.nowMs + syncIoGuardOptions.backoffMinMs)).toBe(true);
    clock.nowMs += syncIoGuardOptions.backoffMinMs;
    for (let index = 0; index < 3; index++) call(40); // still throttled right after resuming
    expect(guard.stats.backoffs).toBe(2);
    expect(guard.allowed(clock.nowMs + syncIoGuardOptions.backoffMinMs)).toBe(false);
    expect(guard.allowed(clock.nowMs + 2 * syncIoGuardOptions.backoffMinMs)).toBe(true);
    // Doubling stops at backoffMaxMs.
    for (let round = 0; round < 10; round++) {
      clock.nowMs += 64_000;
      for (let index = 0; index < 3; index++) call(40);
      clock.nowMs -= 64_000 - syncIoGuardOptions.backoffMaxMs; // resume as soon as allowed
    }
    expect(guard.allowed(clock.nowMs + syncIoGuardOptions.backoffMaxMs - 100)).toBe(false);
    // A long quiet spell later, a new episode starts from the minimum again.
    clock.nowMs += 10 * syncIoGuardOptions.backoffMaxMs;
    for (let index = 0; index < 3; index++) call(40);
    expect(guard.allowed(clock.nowMs + syncIoGuardOptions.backoffMinMs)).toBe(true);
  });

  it("time the thread spent preempted is not held against the budget", () => {
    let preemptedMs = 0;
    const { guard, clock, call } = guardOnClock(() => preemptedMs);
    // A saturated loop on an overloaded machine: 1,000 calls a second, 30 of them preempted for 5 ms.
    const second = (record: (elapsedMs: number, gapMs: number) => void, preempt: () => void): void => {
      for (let index = 0; index < 1000; index++) {
        if (index % 33 === 0) {
          preempt();
          record(5, 0.8);
        } else {
          record(0.005, 0.8);
        }
      }
    };
    for (let seconds = 0; seconds < 5; seconds++) second(call, () => (preemptedMs += 5));
    expect(guard.stats.backoffs).toBe(0);
    expect(guard.allowed(clock.nowMs)).toBe(true);
    // Without schedstat (NaN) the same calls count in full.
    const blind = guardOnClock(() => Number.NaN);
    second(blind.call, () => undefined);
    expect(blind.guard.stats.backoffs).toBe(1);
  });

  it("many misses (a page cache that no longer holds the pages) send the direction to the pool", () => {
    const { guard, clock, call } = guardOnClock();
    // SSD reads of 0.3 ms: each under the 1 ms of "slow", but 1 call in 10 misses.
    for (let index = 0; index < 200 && guard.stats.backoffs === 0; index++) call(index % 10 === 0 ? 0.3 : 0.005, 0.1);
    expect(guard.stats.backoffs).toBe(1);
    expect(guard.stats.misses).toBe(syncIoGuardOptions.missCountMin);
    expect(guard.allowed(clock.nowMs)).toBe(false);
  });
});

describe("RecentPages", () => {
  const generationMs = 60_000;

  it("covers what was touched, page by page, and nothing else", () => {
    const pages = new RecentPages(16, generationMs);
    pages.touch("p.a", 4096, 8192, 0); // pages 1 and 2
    expect(pages.covers("p.a", 4096, 8192, 0)).toBe(true);
    expect(pages.covers("p.a", 5000, 100, 0)).toBe(true);
    expect(pages.covers("p.a", 4096, 8193, 0)).toBe(false); // reaches page 3
    expect(pages.covers("p.a", 0, 4096, 0)).toBe(false);
    expect(pages.covers("p.b", 4096, 4096, 0)).toBe(false);
    // Partial pages count as touched (a partial write brings its page into the cache).
    pages.touch("p.a", 4 * 1024 * 1024 - 1, 1, 0);
    expect(pages.covers("p.a", 4 * 1024 * 1024 - 4096, 4096, 0)).toBe(true);
    expect(pages.covers("p.a", 0, 0, 0)).toBe(false);
  });

  it("forgets pages after one to two generations, and objects on forget() or when over its bound", () => {
    const pages = new RecentPages(2, generationMs);
    pages.touch("p.a", 0, 4096, 1000);
    expect(pages.covers("p.a", 0, 4096, generationMs + 1000)).toBe(true); // the next generation
    expect(pages.covers("p.a", 0, 4096, 2 * generationMs)).toBe(false); // two on
    pages.touch("p.a", 0, 4096, 2 * generationMs);
    pages.forget("p.a");
    expect(pages.covers("p.a", 0, 4096, 2 * generationMs)).toBe(false);
    for (const name of ["p.a", "p.b", "p.c"]) pages.touch(name, 0, 4096, 2 * generationMs);
    expect(pages.size).toBe(2);
    expect(pages.covers("p.a", 0, 4096, 2 * generationMs)).toBe(false); // least recently used
    expect(pages.covers("p.c", 0, 4096, 2 * generationMs)).toBe(true);
  });
});
