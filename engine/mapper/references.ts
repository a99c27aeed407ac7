/**
 * The reference gate: how gc and the operations that make maps reference content blocks
 * ("referrers") stay out of each other's way. The argument is in gc.ts's header.
 *
 *   l.refs        store-wide lock (store-lock.ts): referrers hold it shared, gc exclusive
 *   g.run         present while a gc run sweeps: its run id (16 hex digits); a gc that
 *                 begins replaces it, and the run it replaced stops sweeping content blocks
 *   g.<run>.<id>.<n>  a pin: map <id> was created or locked while run <run> was under way
 *                     (<n> random: a map locked again after gc read its pin pins anew)
 *
 * A referrer session (`session`) holds l.refs shared from before it looks at blocks or
 * source maps until the maps it makes are durable; under it, `pin(mapId)` records the map
 * for the current gc run, if there is one (one small create, only while a gc runs).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { EngineError, isEngineError } from "../errors.ts";
import type { ObjectStore } from "../blocker/object-store.ts";
import { StoreLock, type HeldLock } from "../blocker/store-lock.ts";

export const referenceLockObject = "l.refs";
export const gcRunObject = "g.run";
const gcRunIdPattern = /^[0-9a-f]{16}$/;

/**
 * How long a referrer waits for gc's exclusive hold to end: gc holds it for one batch
 * (gc.ts gcSweepBatchObjects removals, well under a second on a local disk), so a minute
 * means gc is stuck, and the referrer fails with EVOLUME_LOCKED rather than hang.
 */
export const referrerWaitMs = 60_000;

export interface ReferenceSession {
  /** Records that map `mapId` was made (or locked) in this session, for a gc under way. */
  pin(mapId: string): Promise<void>;
}

export class ReferenceGate {
  readonly #objects: ObjectStore;
  readonly #lock: StoreLock;

  constructor(objects: ObjectStore) {
    this.#objects = objects;
    this.#lock = StoreLock.of(objects, referenceLockObject, `okeanos pid ${process.pid} on ${hostname()}`);
  }

  /** Runs `action` holding the reference lock shared; sessions nest and never wait on each other. */
  async session<T>(action: (session: ReferenceSession) => Promise<T>): Promise<T> {
    const held = await this.#lock.shared(referrerWaitMs);
    try {
      // Stable while we hold the lock: gc writes and removes it only under its exclusive hold.
      const runId = await this.#readRunId();
      return await action({
        pin: async (mapId) => {
          if (runId !== undefined) await this.#objects.writeFull(`g.${runId}.${mapId}.${randomBytes(4).toString("hex")}`, Buffer.alloc(0));
        },
      });
    } finally {
      await held.release();
    }
  }

  /** Lets this process's lingering shared hold go (the engine is closing). */
  close(): Promise<void> {
    return this.#lock.close();
  }

  /** gc: takes the exclusive hold (waiting up to `waitMs`), or says why not. */
  async exclusive(waitMs: number): Promise<HeldLock | { busy: string }> {
    try {
      return await this.#lock.exclusive(waitMs);
    } catch (error) {
      if (isEngineError(error, "EVOLUME_LOCKED")) return { busy: `referrers held ${referenceLockObject} for over ${waitMs} ms` };
      throw error;
    }
  }

  /**
   * gc: begins a run (under the exclusive hold): clears every earlier run's record and pins
   * (a crashed run's; a running one then finds g.run is not its own and stops sweeping
   * content blocks), writes g.run.
   */
  async beginRun(): Promise<string> {
    await this.#clearRuns();
    const runId = randomBytes(8).toString("hex");
    await this.#objects.writeFull(gcRunObject, Buffer.from(runId));
    await this.#objects.barrier();
    return runId;
  }

  /** gc: the pins of run `runId` so far, as pin name → map id (under the exclusive hold: none can be added meanwhile). */
  async pins(runId: string): Promise<Map<string, string>> {
    const prefix = `g.${runId}.`;
    const pins = new Map<string, string>();
    for await (const object of this.#objects.list(prefix)) pins.set(object, object.slice(prefix.length, object.lastIndexOf(".")));
    return pins;
  }

  /** gc (under the exclusive hold): is `runId` still the run referrers pin for? */
  async isCurrentRun(runId: string): Promise<boolean> {
    return (await this.#readRunId()) === runId;
  }

  /**
   * gc: ends run `runId`: g.run goes first (if still ours), so later sessions pin nothing,
   * then the run's own pins (a pin written meanwhile is cleared by the next beginRun).
   * Needs no exclusive hold: a run that began meanwhile loses nothing it relies on.
   */
  async endRun(runId: string): Promise<void> {
    if (await this.isCurrentRun(runId)) await this.#objects.remove(gcRunObject);
    for await (const object of this.#objects.list(`g.${runId}.`)) await this.#objects.remove(object);
  }

  async #readRunId(): Promise<string | undefined> {
    let text: string;
    try {
      text = (await this.#objects.read(gcRunObject, 0, 16)).toString("latin1");
    } catch (error) {
      if (isEngineError(error, "ENOT_FOUND")) return undefined;
      throw error;
    }
    if (!gcRunIdPattern.test(text)) throw new EngineError("ECORRUPT", `${gcRunObject} holds no gc run id`);
    return text;
  }

  /** Removes g.run first (no new pins), then every pin. */
  async #clearRuns(): Promise<void> {
    await this.#objects.remove(gcRunObject);
    for await (const object of this.#objects.list("g.")) await this.#objects.remove(object);
  }
}
