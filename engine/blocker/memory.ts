/**
 * In-memory object store, for unit tests only: nothing survives the process, and its
 * locks exclude only other callers in this process. Never the proof that a feature works.
 */
import { hostname } from "node:os";
import { EngineError } from "../errors.ts";
import { ObjectStoreBase, type LockHolder, type LockMode, type ObjectLock, type ObjectStat, type StoreCapabilities } from "./object-store.ts";

interface MemoryObject {
  data: Buffer;
  mtimeMs: number;
}

export class MemoryObjectStore extends ObjectStoreBase {
  readonly capabilities: StoreCapabilities = { persistent: false, serverSideCopy: true, crossProcessLocks: false };
  readonly uri: string;
  readonly #objects = new Map<string, MemoryObject>();
  /** Exclusive holders by lock name. */
  readonly #locks = new Map<string, LockHolder>();
  /** Shared holders by lock name (an empty set: none). */
  readonly #sharedLocks = new Map<string, Set<LockHolder>>();

  constructor(label = "memory") {
    super();
    this.uri = `memory:${label}`;
  }

  /** Number of stored objects, for tests. */
  get objectCount(): number {
    return this.#objects.size;
  }

  protected async _readInto(name: string, offsetBytes: number, target: Buffer): Promise<void> {
    const object = this.#objects.get(name);
    if (object === undefined) throw new EngineError("ENOT_FOUND", `object ${name} does not exist`);
    const copiedBytes = offsetBytes < object.data.length ? object.data.copy(target, 0, offsetBytes, Math.min(object.data.length, offsetBytes + target.length)) : 0;
    target.fill(0, copiedBytes);
  }

  protected async _write(name: string, offsetBytes: number, data: Uint8Array): Promise<void> {
    const object = this.#objects.get(name) ?? { data: Buffer.alloc(0), mtimeMs: 0 };
    const end = offsetBytes + data.length;
    if (end > object.data.length) {
      const grown = Buffer.alloc(end);
      object.data.copy(grown);
      object.data = grown;
    }
    object.data.set(data, offsetBytes);
    object.mtimeMs = Date.now();
    this.#objects.set(name, object);
  }

  protected async _writeFull(name: string, data: Uint8Array, offsetBytes: number, _atomic: boolean): Promise<void> {
    const content = Buffer.alloc(offsetBytes + data.length);
    content.set(data, offsetBytes);
    this.#objects.set(name, { data: content, mtimeMs: Date.now() });
  }

  protected async _createExclusive(name: string, data: Uint8Array): Promise<boolean> {
    if (this.#objects.has(name)) return false;
    this.#objects.set(name, { data: Buffer.from(data), mtimeMs: Date.now() });
    return true;
  }

  protected async _copy(source: string, target: string, _atomic: boolean): Promise<void> {
    const object = this.#objects.get(source);
    if (object === undefined) throw new EngineError("ENOT_FOUND", `object ${source} does not exist`);
    this.#objects.set(target, { data: Buffer.from(object.data), mtimeMs: Date.now() });
  }

  protected async _stat(name: string): Promise<ObjectStat | undefined> {
    const object = this.#objects.get(name);
    return object === undefined ? undefined : { sizeBytes: object.data.length, mtimeMs: object.mtimeMs };
  }

  protected async _remove(name: string): Promise<boolean> {
    return this.#objects.delete(name);
  }

  protected async *_list(prefix: string): AsyncIterable<string> {
    for (const name of [...this.#objects.keys()]) if (name.startsWith(prefix)) yield name;
  }

  protected async _barrier(): Promise<void> {}

  protected async _lock(name: string, owner: string, _leaseMs: number, mode: LockMode): Promise<ObjectLock> {
    const existing = this.#locks.get(name);
    const shared = this.#sharedLocks.get(name) ?? new Set<LockHolder>();
    if (existing !== undefined) {
      throw new EngineError("EVOLUME_LOCKED", `${name} is locked by ${existing.owner} (pid ${existing.pid} on ${existing.host})`, { holder: existing });
    }
    const holder: LockHolder = { owner, host: hostname(), pid: process.pid, acquiredAtMs: Date.now() };
    if (mode === "shared") {
      shared.add(holder);
      this.#sharedLocks.set(name, shared);
      return {
        name,
        holder,
        async renew() {
          if (!shared.has(holder)) throw new EngineError("EVOLUME_LOCKED", `lock ${name} was lost`);
        },
        async release() {
          shared.delete(holder);
        },
      };
    }
    if (shared.size > 0) throw new EngineError("EVOLUME_LOCKED", `${name} is held shared by ${shared.size} holder(s)`, { holder: [...shared][0] });
    this.#locks.set(name, holder);
    const locks = this.#locks;
    return {
      name,
      holder,
      async renew() {
        if (locks.get(name) !== holder) throw new EngineError("EVOLUME_LOCKED", `lock ${name} was lost`);
      },
      async release() {
        if (locks.get(name) === holder) locks.delete(name);
      },
    };
  }

  protected async _lockHolder(name: string): Promise<LockHolder | undefined> {
    return this.#locks.get(name);
  }

  protected async _close(): Promise<void> {}
}
