/**
 * The export registry: which names a server offers, and the one open Volume per export that
 * all of its connections share.
 *
 *   GO "vm1" ──acquire──► open["vm1"] = { volume (opened once), references }
 *   conn 2   ──acquire──►           references + 1      (same Volume: multi-conn coherent)
 *   close    ──release──►           references - 1 ──0──► volume.close() (flushes, unlocks)
 *
 * Sharing one Volume is what makes CAN_MULTI_CONN true (proto.md "CAN_MULTI_CONN": every
 * connection sees one coherent image and a FLUSH on any of them covers writes completed on
 * all): the volume's flush persists every dirty block, whichever connection wrote it.
 *
 * The registry does not own the Engine: whoever created both closes the engine after
 * `close()` here.
 */
import assert from "node:assert/strict";
import { EngineError, isEngineError } from "../errors.ts";
import type { Engine } from "../engine.ts";
import type { MapHeader, MapKind } from "../mapper/headers.ts";
import type { ChangedRange } from "../mapper/diff.ts";
import { emptyIoCounters, type Volume, type VolumeIoCounters } from "../volume.ts";
import { dirtyBitmapListMax, exportListMax } from "./limits.ts";

export interface ExportRegistryOptions {
  /** The names served, or "all": every volume, snapshot and image in the store. */
  names: readonly string[] | "all";
  /** Serve everything read-only (volumes are opened without their writer lock). */
  readOnly?: boolean;
  /** Recorded in the volume locks we take. */
  owner?: string;
  /** How long opening an export waits for a writer lock held elsewhere (default exportLockWaitMs). */
  lockWaitMs?: number;
}

/**
 * How long opening an export keeps retrying a writer lock held by another process before
 * the client is refused. Locks we meet are usually brief: a CLI snapshot, resize or hash of
 * a volume no client had open (tens of milliseconds after the CLI's start-up), or the
 * previous server of a restart releasing the volume at the end of its graceful shutdown.
 * 2 s covers those and keeps a really-locked volume's refusal far inside a client's
 * handshake patience (qemu waits for GO without a timeout; ours is handshakeTimeoutMs, 30 s).
 */
export const exportLockWaitMs = 2_000;
/** Between two attempts at a held lock (the file store's probe costs 50 ms of it). */
const lockRetryMs = 100;

/** What GO and INFO tell a client about an export, without opening it. */
export interface ExportInfo {
  name: string;
  sizeBytes: number;
  readOnly: boolean;
  kind: MapKind;
  /** The volume the map belongs to: its snapshots share it (dirty bitmap candidates). */
  volumeId: string;
  description: string;
}

interface OpenExport {
  volume: Promise<Volume>;
  references: number;
  /** Set once the last reference is gone and the volume is being closed. */
  closing: Promise<void> | undefined;
}

/** One connection's hold on an open export. */
export class ExportLease {
  readonly name: string;
  readonly volume: Volume;
  readonly #release: () => Promise<void>;
  #released = false;

  constructor(name: string, volume: Volume, release: () => Promise<void>) {
    this.name = name;
    this.volume = volume;
    this.#release = release;
  }

  /** Drops this hold; the last one flushes and closes the volume. Idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#release();
  }
}

export class ExportRegistry {
  readonly engine: Engine;
  readonly readOnly: boolean;
  readonly #names: readonly string[] | "all";
  readonly #owner: string | undefined;
  readonly #lockWaitMs: number;
  readonly #open = new Map<string, OpenExport>();
  /** I/O of volumes closed since the server started, per export name. */
  readonly #closedIo = new Map<string, VolumeIoCounters>();
  #closed = false;

  constructor(engine: Engine, options: ExportRegistryOptions) {
    this.engine = engine;
    this.readOnly = options.readOnly === true;
    this.#names = options.names === "all" ? "all" : [...options.names];
    this.#owner = options.owner;
    this.#lockWaitMs = options.lockWaitMs ?? exportLockWaitMs;
  }

  /** The names configured at start, or "all". */
  get served(): readonly string[] | "all" {
    return this.#names;
  }

  /**
   * The export a client's name refers to, or undefined if we do not serve it. The empty
   * name (qemu's `nbd:unix:PATH` without an export, proto.md's "default export") means the
   * one export when exactly one is configured.
   */
  resolve(requested: string): string | undefined {
    if (this.#names === "all") return requested === "" ? undefined : requested;
    if (requested === "" && this.#names.length === 1) return this.#names[0];
    return this.#names.includes(requested) ? requested : undefined;
  }

  /** Names for NBD_OPT_LIST. */
  async names(): Promise<string[]> {
    const names = this.#names === "all" ? (await this.engine.list()).map((entry) => entry.name) : [...this.#names];
    return names.slice(0, exportListMax);
  }

  /** Size, flags and lineage of an export; undefined when it does not exist (or is not served). */
  async describe(requested: string): Promise<ExportInfo | undefined> {
    const name = this.resolve(requested);
    if (name === undefined) return undefined;
    const open = this.#open.get(name);
    if (open !== undefined && open.closing === undefined) {
      const volume = await open.volume.catch(() => undefined);
      if (volume !== undefined) return this.#info(name, volume.header.kind, volume.header.volumeId, volume.sizeBytes, volume.readOnly);
    }
    try {
      const entry = await this.engine.maps.lookup(name);
      const header = await this.engine.maps.loadHeader(entry.mapId);
      return this.#info(name, header.kind, header.volumeId, header.sizeBytes, this.readOnly || header.frozen);
    } catch (error) {
      if (isEngineError(error, "ENOT_FOUND") || isEngineError(error, "EINVALID")) return undefined;
      throw error;
    }
  }

  /** Opens (or shares) the export's volume. Throws EngineError: ENOT_FOUND, EVOLUME_LOCKED… */
  async acquire(requested: string): Promise<ExportLease> {
    const name = this.resolve(requested);
    if (name === undefined) throw new EngineError("ENOT_FOUND", `${requested} is not exported`, { name: requested });
    for (;;) {
      if (this.#closed) throw new EngineError("ECLOSED", "the NBD server is shutting down");
      const open = this.#open.get(name);
      if (open === undefined) break;
      if (open.closing !== undefined) {
        await open.closing; // the last connection is closing it: reopen afterwards
        continue;
      }
      open.references++;
      return this.#lease(name, open);
    }
    const open: OpenExport = {
      volume: this.#openVolume(name),
      references: 1,
      closing: undefined,
    };
    this.#open.set(name, open);
    return this.#lease(name, open);
  }

  /**
   * Crash-consistent snapshot of a served volume, taken on the Volume its connections share
   * (the control socket's `snapshot`): requests in flight finish, new ones wait, the volume
   * is flushed, its epoch bumped and the frozen map written, then I/O resumes
   * (Volume.snapshot). A volume no client has open is opened for it, under its writer lock,
   * and closed again unless a client arrived meanwhile.
   */
  async snapshot(requested: string, snapshotName: string): Promise<MapHeader> {
    // Volume.snapshot checks too, but only once I/O is held back: a name already taken (a
    // typo, a retried script) must not pause the clients for nothing.
    if (await this.engine.maps.exists(snapshotName)) throw new EngineError("EEXISTS", `${snapshotName} already exists`, { name: snapshotName });
    return this.#withWritable(requested, (volume) => volume.snapshot(snapshotName));
  }

  /**
   * Grows a served volume (Volume.resize holds I/O back like a snapshot). Connected clients
   * keep the size they were told at GO: NBD cannot tell them of a change, so they see the
   * new size when they next connect.
   */
  async resize(requested: string, sizeBytes: number): Promise<{ name: string; previousSizeBytes: number; sizeBytes: number }> {
    return this.#withWritable(requested, async (volume) => {
      const previousSizeBytes = volume.sizeBytes;
      await volume.resize(sizeBytes);
      return { name: volume.name, previousSizeBytes, sizeBytes: volume.sizeBytes };
    });
  }

  /**
   * Snapshots of the export's volume, for LIST_META_CONTEXT `qemu:dirty-bitmap:`. One header
   * read per snapshot in the store (the directory does not record lineage), at most
   * dirtyBitmapListMax of them; oldest first.
   */
  async snapshotsOf(info: ExportInfo): Promise<string[]> {
    const snapshots = (await this.engine.list()).filter((entry) => entry.kind === "snapshot" && entry.name !== info.name);
    snapshots.sort((a, b) => a.createdAtMs - b.createdAtMs);
    const headers = await Promise.all(
      snapshots.slice(0, dirtyBitmapListMax).map((entry) => this.engine.maps.loadHeader(entry.mapId).catch(() => undefined)),
    );
    return headers.filter((header) => header !== undefined && header.volumeId === info.volumeId).map((header) => header!.name);
  }

  /**
   * Block ranges that differ between the export and the frozen map `snapshot`
   * (qemu:dirty-bitmap:SNAP), or undefined when `snapshot` is not a frozen map. The export
   * is flushed first when we have it open for writing, so the diff (which reads stored maps)
   * sees every write completed so far.
   */
  async dirtyRanges(exportName: string, snapshot: string): Promise<ChangedRange[] | undefined> {
    if (!(await this.isFrozenMap(snapshot))) return undefined;
    const open = this.#open.get(exportName);
    if (open !== undefined && open.closing === undefined) {
      const volume = await open.volume.catch(() => undefined);
      if (volume !== undefined && !volume.readOnly) await volume.flush();
    }
    return (await this.engine.diff(exportName, snapshot)).ranges;
  }

  /** Whether `name` is a snapshot or image (a frozen map): what a dirty bitmap can name. */
  async isFrozenMap(name: string): Promise<boolean> {
    try {
      return (await this.engine.maps.loadHeader((await this.engine.maps.lookup(name)).mapId)).frozen;
    } catch (error) {
      if (isEngineError(error, "ENOT_FOUND") || isEngineError(error, "EINVALID")) return false;
      throw error;
    }
  }

  /** Exports open right now and their connection counts (for logs and tests). */
  get openExports(): ReadonlyMap<string, number> {
    return new Map([...this.#open].map(([name, open]) => [name, open.references]));
  }

  /**
   * Refuses new acquires and closes (flushes) every open volume, whether or not leases are
   * still held: the server calls it after its connections have ended or timed out.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(
      [...this.#open.values()].map(async (open) => {
        if (open.closing !== undefined) return open.closing.catch(() => undefined);
        open.references = 0;
        open.closing = this.#closeVolume(open);
        await open.closing;
      }),
    );
    this.#open.clear();
  }

  async #withWritable<T>(requested: string, action: (volume: Volume) => Promise<T>): Promise<T> {
    const lease = await this.acquire(requested);
    try {
      const volume = lease.volume;
      if (volume.header.frozen) throw new EngineError("EREAD_ONLY", `${volume.name} is a frozen ${volume.header.kind}`, { name: volume.name });
      if (volume.readOnly) throw new EngineError("EREAD_ONLY", `${volume.name} is served read-only (--read-only)`, { name: volume.name });
      return await action(volume);
    } finally {
      await lease.release();
    }
  }

  /** Opens a volume, retrying a writer lock held elsewhere for up to lockWaitMs (exportLockWaitMs). */
  async #openVolume(name: string): Promise<Volume> {
    const options = { readOnly: this.readOnly, ...(this.#owner === undefined ? {} : { owner: this.#owner }) };
    const deadline = performance.now() + this.#lockWaitMs;
    for (;;) {
      try {
        return await this.engine.openVolume(name, options);
      } catch (error) {
        if (!isEngineError(error, "EVOLUME_LOCKED") || this.#closed || performance.now() + lockRetryMs > deadline) throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, lockRetryMs));
    }
  }

  async #lease(name: string, open: OpenExport): Promise<ExportLease> {
    let volume: Volume;
    try {
      volume = await open.volume;
    } catch (error) {
      // Nobody got this volume: forget the failed open so the next GO tries again.
      if (this.#open.get(name) === open) this.#open.delete(name);
      throw error;
    }
    return new ExportLease(name, volume, () => this.#release(name, open));
  }

  async #release(name: string, open: OpenExport): Promise<void> {
    if (open.closing !== undefined) return open.closing; // closed by close() already
    assert.ok(open.references > 0);
    open.references--;
    if (open.references > 0) return;
    open.closing = this.#closeVolume(open).finally(() => {
      if (this.#open.get(name) === open) this.#open.delete(name);
    });
    await open.closing;
  }

  async #closeVolume(open: OpenExport): Promise<void> {
    const volume = await open.volume.catch(() => undefined);
    if (volume !== undefined) this.#addClosed(volume.name, volume.io);
    await volume?.close();
  }

  /**
   * I/O per export since the server started: closed volumes' totals plus the open ones'
   * counters, so the numbers only grow (Prometheus counters) across reopenings.
   */
  async ioCounters(): Promise<Map<string, VolumeIoCounters>> {
    const totals = new Map([...this.#closedIo].map(([name, io]) => [name, { ...io }]));
    for (const [name, open] of this.#open) {
      // An export still opening (waiting for a lock) has done no I/O: do not wait for it. An
      // already-settled promise wins the race over the plain undefined listed after it.
      const volume = await Promise.race([open.volume.catch(() => undefined), Promise.resolve(undefined)]);
      if (volume === undefined) continue;
      const total = totals.get(name) ?? emptyIoCounters();
      for (const key of Object.keys(total) as Array<keyof VolumeIoCounters>) total[key] += volume.io[key];
      totals.set(name, total);
    }
    return totals;
  }

  #addClosed(name: string, io: VolumeIoCounters): void {
    const total = this.#closedIo.get(name) ?? emptyIoCounters();
    for (const key of Object.keys(total) as Array<keyof VolumeIoCounters>) total[key] += io[key];
    this.#closedIo.set(name, total);
  }

  #info(name: string, kind: MapKind, volumeId: string, sizeBytes: number, readOnly: boolean): ExportInfo {
    const mode = readOnly ? "read-only" : "read-write";
    return { name, sizeBytes, readOnly, kind, volumeId, description: `okeanos ${kind} ${name} (${mode})` };
  }
}
