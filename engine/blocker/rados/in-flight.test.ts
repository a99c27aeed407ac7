import { describe, expect, it } from "vitest";
import { InFlightLimiter } from "./in-flight.ts";

interface Pending {
  finish(): void;
  fail(error: Error): void;
}

/** An action that stays in flight until finished by hand, recording when it started. */
function controlled(started: string[], label: string, pending: Map<string, Pending>): () => Promise<string> {
  return () =>
    new Promise<string>((resolve, reject) => {
      started.push(label);
      pending.set(label, { finish: () => resolve(label), fail: reject });
    });
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("InFlightLimiter", () => {
  it("starts at once while under both limits, synchronously", () => {
    const limiter = new InFlightLimiter(2, 100);
    const started: string[] = [];
    const pending = new Map<string, Pending>();
    void limiter.run(10, controlled(started, "a", pending));
    expect(started).toEqual(["a"]);
    expect([limiter.opsInFlight, limiter.bytesInFlight]).toEqual([1, 10]);
  });

  it("holds operations beyond the count and starts them in order as others finish", async () => {
    const limiter = new InFlightLimiter(2, 1000);
    const started: string[] = [];
    const pending = new Map<string, Pending>();
    const results = ["a", "b", "c", "d"].map((label) => limiter.run(1, controlled(started, label, pending)));
    expect(started).toEqual(["a", "b"]);
    pending.get("b")?.finish();
    await tick();
    expect(started).toEqual(["a", "b", "c"]);
    pending.get("a")?.finish();
    pending.get("c")?.finish();
    await tick();
    pending.get("d")?.finish();
    expect(await Promise.all(results)).toEqual(["a", "b", "c", "d"]);
    expect([limiter.opsInFlight, limiter.bytesInFlight]).toEqual([0, 0]);
  });

  it("holds bytes beyond the limit; FIFO: a small one does not overtake a waiting big one", async () => {
    const limiter = new InFlightLimiter(10, 100);
    const started: string[] = [];
    const pending = new Map<string, Pending>();
    void limiter.run(60, controlled(started, "big1", pending));
    void limiter.run(60, controlled(started, "big2", pending));
    void limiter.run(1, controlled(started, "small", pending));
    expect(started).toEqual(["big1"]);
    pending.get("big1")?.finish();
    await tick();
    expect(started).toEqual(["big1", "big2", "small"]);
  });

  it("runs an operation larger than the byte limit alone", async () => {
    const limiter = new InFlightLimiter(10, 100);
    const started: string[] = [];
    const pending = new Map<string, Pending>();
    void limiter.run(10, controlled(started, "small", pending));
    void limiter.run(500, controlled(started, "huge", pending));
    expect(started).toEqual(["small"]);
    pending.get("small")?.finish();
    await tick();
    expect(started).toEqual(["small", "huge"]);
    expect(limiter.bytesInFlight).toBe(500);
  });

  it("a failing or throwing action frees its slot and rejects its caller", async () => {
    const limiter = new InFlightLimiter(1, 100);
    const started: string[] = [];
    const pending = new Map<string, Pending>();
    const failing = limiter.run(1, controlled(started, "a", pending));
    const throwing = limiter.run(1, () => {
      throw new Error("sync");
    });
    const after = limiter.run(1, controlled(started, "c", pending));
    pending.get("a")?.fail(new Error("async"));
    await expect(failing).rejects.toThrow("async");
    await expect(throwing).rejects.toThrow("sync");
    await tick();
    pending.get("c")?.finish();
    expect(await after).toBe("c");
    expect(limiter.opsInFlight).toBe(0);
  });

  it("refuses nonsensical limits", () => {
    expect(() => new InFlightLimiter(0, 1)).toThrow(RangeError);
    expect(() => new InFlightLimiter(1, 0.5)).toThrow(RangeError);
  });
});
