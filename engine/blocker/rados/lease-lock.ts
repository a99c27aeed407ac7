/**
 * Volume locks on RADOS: an exclusive cls_lock with a lease, renewed by a timer, and
 * fencing of a holder whose lease expired.
 *
 *   +lock.<name>   cls_lock "okeanos" (exclusive, cookie random per acquisition,
 *                  description = the holder record), and as its data the same record;
 *                  the object exists only while held, or after a holder failed to release
 *
 * - lock: one atomic write op [cls lock, write_full(record)]: EBUSY → EVOLUME_LOCKED naming
 *   the live holder (cls get_info). The lease runs on the OSD from each (re)lock.
 * - renewal every leaseMs/3 (and on renew()): cls lock with MUST_RENEW, which fails once the
 *   lease has run out (the class drops expired lockers) — the lock is then lost for good.
 * - release: [cls unlock, remove] — removes the object only if we still held the lock, and
 *   leaves nothing behind (lock objects are not in the listing index, so gc never sees them).
 * - shared mode (the store-wide reference lock, engine/blocker/store-lock.ts): cls_lock
 *   LOCK_SHARED, no record written (its holders would overwrite each other's), released by
 *   unlock alone (removing the object would drop the other shared holders' locks with it),
 *   never fenced. Exclusive is refused while any shared locker's lease runs, and the reverse.
 * - fencing: if a lock object with a record was there when we took the lock, its holder's
 *   lease ran out without a release (it died, or it hangs and may wake up). Before lock() returns, that holder's
 *   RADOS client is blocklisted, so the OSDs refuse every op it still sends — it cannot
 *   write again (what librbd does on taking over an exclusive lock). A client blocklisted
 *   this way sees ESHUTDOWN on every op until it reconnects. If the blocklist is refused
 *   (the client lacks the mon cap `osd blocklist`), we give the lock back and fail.
 */
import { hostname } from "node:os";
import { EngineError } from "../../errors.ts";
import type { LockHolder, LockMode, ObjectLock } from "../object-store.ts";
import { decodeGetInfoReply, encodeBreakLock, encodeGetInfo, encodeLock, encodeUnlock, lockClass, lockFlagMustRenew, type Locker } from "./cls-lock.ts";
import type { InFlightLimiter } from "./in-flight.ts";
import { isRadosError, type RadosCluster, type RadosPool } from "./native.ts";

/** The cls_lock name on every lock object: one lock per object. */
const clsLockName = "okeanos";
const enoent = 2;
const ebusy = 16;
/** ESHUTDOWN: what a blocklisted client gets for every op. */
export const eshutdown = 108;

/** Seconds a fenced client stays blocklisted: 0 = the cluster's mon_osd_blocklist_default_expire (1 h). */
const fenceBlocklistSeconds = 0;

/** The holder record: LockHolder plus the RADOS client address that fencing blocklists. */
interface HolderRecord extends LockHolder {
  address: string;
}

export interface LockContext {
  cluster: RadosCluster;
  pool: RadosPool;
  limiter: InFlightLimiter;
  /** Blocklist a holder whose lease ran out before taking its lock (default true). */
  fence: boolean;
  /** Locks held through this context, so that closing the store stops their renewal. */
  held: Set<{ abandon(): void }>;
  /** Told when an op failed with ESHUTDOWN: this client was fenced (the store then fails every barrier). */
  onBlocklisted(error: unknown): void;
}

export function lockObject(name: string): string {
  return `+lock.${name}`;
}

export async function acquireLeaseLock(context: LockContext, name: string, owner: string, leaseMs: number, mode: LockMode = "exclusive"): Promise<ObjectLock> {
  const object = lockObject(name);
  const cookie = crypto.randomUUID();
  const holder: HolderRecord = { owner, host: hostname(), pid: process.pid, acquiredAtMs: Date.now(), address: context.cluster.address() };
  const description = JSON.stringify(holder);
  const shared = mode === "shared";
  const previous = shared ? undefined : await readRecord(context, object);
  const lockOp = ["exec", lockClass, "lock", encodeLock({ name: clsLockName, cookie, description, durationMs: leaseMs, flags: 0, shared })] as const;
  try {
    await run(context, () => context.pool.writeOp(object, shared ? [lockOp] : [lockOp, ["writeFull", Buffer.from(description)]]));
  } catch (error) {
    if (!isRadosError(error, ebusy)) throw error;
    const current = await readLockHolder(context, name);
    throw lockedError(name, current);
  }
  const lock = new LeaseLock(context, name, holder, cookie, description, leaseMs, shared);
  if (previous !== undefined) {
    try {
      await fence(context, previous);
    } catch (error) {
      await lock.release().catch(() => undefined);
      throw new EngineError(
        "EVOLUME_LOCKED",
        `${name}: the lease of ${describe(previous)} ran out, but it could not be fenced (blocklist ${previous.address}: ${(error as Error).message}); ` +
          "the client needs the mon capability to blocklist (e.g. profile rbd)",
        { holder: previous },
        { cause: error },
      );
    }
  }
  lock.startRenewing();
  return lock;
}

/** The live holder of lock `name`, if any. */
export async function readLockHolder(context: LockContext, name: string): Promise<LockHolder | undefined> {
  const [live] = await readLockers(context, name);
  return live === undefined ? undefined : visibleHolder(live);
}

/**
 * Breaks lock `name` whoever holds it, for operators (`volume unlock --force`): the holder
 * is fenced first, so it cannot write once the lock is gone. Returns who held it.
 */
export async function breakLeaseLock(context: LockContext, name: string): Promise<LockHolder | undefined> {
  const lockers = await readLockers(context, name);
  for (const locker of lockers) {
    const record = parseRecord(locker.description);
    if (record !== undefined) await fence(context, record);
    try {
      await run(context, () => context.pool.writeOp(lockObject(name), [["exec", lockClass, "break_lock", encodeBreakLock(clsLockName, locker)], ["remove"]]));
    } catch (error) {
      if (!isRadosError(error, enoent)) throw error; // gone already
    }
  }
  const [first] = lockers;
  return first === undefined ? undefined : visibleHolder(first);
}

/** The lock's live lockers (cls_lock drops expired ones when asked); none if it was never taken. */
async function readLockers(context: LockContext, name: string): Promise<Locker[]> {
  let lockers: Locker[];
  try {
    const [reply] = await run(context, () => context.pool.readOp(lockObject(name), [["exec", lockClass, "get_info", encodeGetInfo(clsLockName)]]));
    if (reply instanceof Error) throw reply;
    lockers = decodeGetInfoReply(reply as Buffer);
  } catch (error) {
    if (isRadosError(error, enoent)) return [];
    throw error;
  }
  const now = Date.now();
  return lockers.filter((locker) => locker.expirationMs === 0 || locker.expirationMs > now);
}

/** Blocklists the RADOS client of `holder`, unless fencing is off or it is our own client. */
async function fence(context: LockContext, holder: HolderRecord): Promise<void> {
  if (!context.fence || holder.address === "" || holder.address === context.cluster.address()) return;
  await context.cluster.blocklist(holder.address, fenceBlocklistSeconds);
}

function visibleHolder(locker: Locker): LockHolder {
  const record = parseRecord(locker.description);
  if (record === undefined) return { owner: `unknown (${locker.entity})`, host: "unknown", pid: 0, acquiredAtMs: 0 };
  const { owner, host, pid, acquiredAtMs } = record;
  return { owner, host, pid, acquiredAtMs };
}

class LeaseLock implements ObjectLock {
  readonly name: string;
  readonly holder: LockHolder;
  readonly #context: LockContext;
  readonly #cookie: string;
  readonly #description: string;
  readonly #leaseMs: number;
  readonly #shared: boolean;
  #timer: NodeJS.Timeout | undefined;
  /** Why the lock is gone (released, or a renewal failed); set once, never cleared. */
  #lost: EngineError | undefined;

  constructor(context: LockContext, name: string, holder: HolderRecord, cookie: string, description: string, leaseMs: number, shared: boolean) {
    this.#context = context;
    this.name = name;
    const { address: _address, ...visible } = holder;
    this.holder = visible;
    this.#cookie = cookie;
    this.#description = description;
    this.#leaseMs = leaseMs;
    this.#shared = shared;
  }

  /** Renews every leaseMs/3: two renewals can fail or be late before the lease runs out. */
  startRenewing(): void {
    this.#context.held.add(this);
    this.#timer = setInterval(() => void this.renew().catch(() => undefined), Math.max(1, Math.floor(this.#leaseMs / 3)));
    this.#timer.unref();
  }

  async renew(): Promise<void> {
    if (this.#lost !== undefined) throw this.#lost;
    const request = { name: clsLockName, cookie: this.#cookie, description: this.#description, durationMs: this.#leaseMs, flags: lockFlagMustRenew, shared: this.#shared };
    try {
      await run(this.#context, () => this.#context.pool.writeOp(lockObject(this.name), [["exec", lockClass, "lock", encodeLock(request)]]));
    } catch (error) {
      // ENOENT: our lease ran out (maybe someone holds it now); ESHUTDOWN: we were fenced.
      // Anything else (a timeout, an I/O error) leaves the lease uncertain: treat it as lost too.
      this.#stop(new EngineError("EVOLUME_LOCKED", `lost the lock ${this.name}: its lease could not be renewed (${(error as Error).message})`, { holder: this.holder }, { cause: error }));
      throw this.#lost;
    }
  }

  async release(): Promise<void> {
    if (this.#lost !== undefined) return;
    this.#stop(new EngineError("EVOLUME_LOCKED", `lock ${this.name} was released`, { holder: this.holder }));
    try {
      const unlock = ["exec", lockClass, "unlock", encodeUnlock(clsLockName, this.#cookie)] as const;
      // A shared lock leaves the object: other shared holders' locks live in it.
      await run(this.#context, () => this.#context.pool.writeOp(lockObject(this.name), this.#shared ? [unlock] : [unlock, ["remove"]]));
    } catch (error) {
      // Not ours any more (expired, maybe taken), or we were fenced: nothing left to release.
      if (!isRadosError(error, enoent) && !isRadosError(error, eshutdown)) throw error;
    }
  }

  /** Stops renewing (the store is closing); the lease then runs out on its own. */
  abandon(): void {
    this.#stop(new EngineError("EVOLUME_LOCKED", `lock ${this.name} was abandoned: its store is closed`, { holder: this.holder }));
  }

  #stop(reason: EngineError): void {
    this.#lost ??= reason;
    this.#context.held.delete(this);
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

async function run<T>(context: LockContext, action: () => Promise<T>): Promise<T> {
  try {
    return await context.limiter.run(0, action);
  } catch (error) {
    if (isRadosError(error, eshutdown)) context.onBlocklisted(error);
    throw error;
  }
}

/** The record of a holder that did not release; undefined if there is none (no lock object). */
async function readRecord(context: LockContext, object: string): Promise<HolderRecord | undefined> {
  const target = Buffer.alloc(4096);
  try {
    const bytesRead = await run(context, () => context.pool.read(object, 0, target));
    return parseRecord(target.toString("utf8", 0, bytesRead));
  } catch (error) {
    if (isRadosError(error, enoent)) return undefined;
    throw error;
  }
}

function parseRecord(text: string): HolderRecord | undefined {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const { owner, host, pid, acquiredAtMs, address } = value;
    if (typeof owner !== "string" || typeof host !== "string" || typeof pid !== "number" || typeof acquiredAtMs !== "number") return undefined;
    return { owner, host, pid, acquiredAtMs, address: typeof address === "string" ? address : "" };
  } catch {
    return undefined; // empty (released) or damaged
  }
}

function describe(holder: LockHolder): string {
  return `${holder.owner} (pid ${holder.pid} on ${holder.host}, since ${new Date(holder.acquiredAtMs).toISOString()})`;
}

function lockedError(name: string, holder: LockHolder | undefined): EngineError {
  if (holder === undefined) {
    return new EngineError("EVOLUME_LOCKED", `${name} is locked by another client (it released just now, or its record is unreadable): retry`, {
      holder: { owner: "unknown", host: "unknown", pid: 0, acquiredAtMs: 0 },
    });
  }
  const { owner, host, pid, acquiredAtMs } = holder;
  return new EngineError("EVOLUME_LOCKED", `${name} is locked by ${describe(holder)}`, { holder: { owner, host, pid, acquiredAtMs } });
}
