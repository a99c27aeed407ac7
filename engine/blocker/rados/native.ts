/**
 * The librados addon (native/rados.cc), as TypeScript sees it, and its loader.
 *
 * The addon is optional: `npm ci` does not build it, so a machine without librados runs
 * everything else. It is built by scripts/build-rados.sh into native/build/Release/; until
 * then opening a rados store fails with ENO_STORE saying what to install and run.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { EngineError } from "../../errors.ts";

/**
 * One step of an atomic write op (rados_write_op_*):
 * - assertExists: fail the op with ENOENT unless the object exists
 * - assertVersion V: fail the op unless the object is at version V (ERANGE if newer, EOVERFLOW if older)
 * - create: create the object; exclusive (true) fails the op with EEXIST if it exists
 * - write OFFSET DATA · writeFull DATA · truncate SIZE · zero OFFSET LENGTH · remove
 * - omapSet KEYS VALUES · omapRm KEYS · omapCmp KEY VALUE (ECANCELED unless equal)
 * - cmpxattr NAME VALUE (ECANCELED unless equal) · setxattr NAME VALUE
 * - exec CLASS METHOD INPUT: an object class method (e.g. cls_lock)
 * librados copies every argument into the op when it is built.
 */
export type WriteStep =
  | readonly ["assertExists"]
  | readonly ["assertVersion", number]
  | readonly ["create", boolean]
  | readonly ["write", number, Uint8Array]
  | readonly ["writeFull", Uint8Array]
  | readonly ["truncate", number]
  | readonly ["zero", number, number]
  | readonly ["remove"]
  | readonly ["omapSet", readonly string[], readonly Uint8Array[]]
  | readonly ["omapRm", readonly string[]]
  | readonly ["omapCmp", string, Uint8Array]
  | readonly ["cmpxattr", string, Uint8Array]
  | readonly ["setxattr", string, Uint8Array]
  | readonly ["exec", string, string, Uint8Array];

/**
 * One step of a read op (rados_read_op_*); its result, in order:
 * - assertExists → undefined · version → the object's version as of this op (not a RADOS
 *   step: rados_aio_get_version) · stat → StatResult · read OFFSET TARGET → bytes read into TARGET
 * - omapGetVals START_AFTER PREFIX MAX → OmapPage · exec CLASS METHOD INPUT → Buffer
 * A step that failed on its own has a RadosError as its result.
 */
export type ReadStep =
  | readonly ["assertExists"]
  | readonly ["version"]
  | readonly ["stat"]
  | readonly ["read", number, Uint8Array]
  | readonly ["omapGetVals", string, string, number]
  | readonly ["exec", string, string, Uint8Array];

export interface StatResult {
  sizeBytes: number;
  /** librados' C API gives whole seconds. */
  mtimeSeconds: number;
}

export interface OmapPage {
  keys: string[];
  values: Buffer[];
  /** More keys follow the last one returned. */
  more: boolean;
}

export interface RadosPool {
  read(oid: string, offsetBytes: number, target: Uint8Array): Promise<number>;
  writeOp(oid: string, steps: readonly WriteStep[]): Promise<void>;
  readOp(oid: string, steps: readonly ReadStep[]): Promise<unknown[]>;
  remove(oid: string): Promise<void>;
  /** Resolves once every write submitted on this handle before it has completed (rados_aio_flush_async). */
  flush(): Promise<void>;
  /** Only with nothing pending. */
  close(): void;
}

export interface RadosCluster {
  openPool(pool: string, namespace: string): Promise<RadosPool>;
  confGet(key: string): string;
  /** Our global id: we are `client.<instanceId>` to lockers and OSDs. */
  instanceId(): number;
  /** Our messenger address, as blocklists and lockers name it. */
  address(): string;
  blocklist(address: string, seconds: number): Promise<void>;
  /** Only with no pool open and nothing pending. */
  shutdown(): Promise<void>;
  readonly pending: number;
}

export interface ConnectOptions {
  /** ceph.conf path; empty: $CEPH_CONF, then Ceph's default search path. */
  conf?: string;
  /** Client id without `client.` (default: admin). */
  id?: string;
  keyring?: string;
  /** Extra config settings, applied after ceph.conf and CEPH_ARGS. */
  settings?: Record<string, string>;
}

export interface RadosAddon {
  connect(options: ConnectOptions): Promise<RadosCluster>;
  libradosVersion: string;
  /** glibc's mallopt(M_MMAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD); false if not applied (not glibc). Absent in addons built before it. */
  tuneMalloc?(mmapThresholdBytes: number, trimThresholdBytes: number): boolean;
  /**
   * _exit(code): ends the process without running exit handlers, one of which (libuv's)
   * waits for a connect still in progress on the thread pool. Absent in older builds.
   */
  exitNow?(code: number): never;
}

/** What librados rejects with: an Error with the positive errno and the operation. */
export interface RadosError extends Error {
  errno: number;
  op: string;
}

export function isRadosError(value: unknown, errno?: number): value is RadosError {
  return value instanceof Error && typeof (value as Partial<RadosError>).errno === "number" && (errno === undefined || (value as RadosError).errno === errno);
}

/** Where scripts/build-rados.sh puts the addon; OKEANOS_RADOS_ADDON overrides it. */
export const radosAddonPath = join(import.meta.dirname, "native", "build", "Release", "okeanos_rados.node");

export const radosAddonInstructions =
  "install librados and a compiler (apt-get install -y --no-install-recommends librados-dev g++ make python3), then run scripts/build-rados.sh";

let loaded: RadosAddon | undefined;

/** The addon, loaded once; ENO_STORE saying what to install and run when it is missing or unloadable. */
export function loadRadosAddon(): RadosAddon {
  if (loaded !== undefined) return loaded;
  const path = process.env["OKEANOS_RADOS_ADDON"] ?? radosAddonPath;
  if (!existsSync(path)) {
    throw new EngineError("ENO_STORE", `the rados backend needs its native addon, which is not built (${path} is missing): ${radosAddonInstructions}`, { addon: path });
  }
  try {
    loaded = createRequire(import.meta.url)(path) as RadosAddon;
  } catch (error) {
    throw new EngineError(
      "ENO_STORE",
      `the rados backend's native addon ${path} does not load (${(error as Error).message}): ${radosAddonInstructions}`,
      { addon: path },
      { cause: error },
    );
  }
  return loaded;
}
