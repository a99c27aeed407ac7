/**
 * Store URIs → object stores: the one place that knows which backends exist.
 *
 *   file:PATH      a local directory (PATH relative to the working directory, or absolute)
 *   file:///PATH   the same, as a file URL
 *   PATH           a bare path (anything not starting with `scheme:`) means file:PATH
 *   memory:[LABEL] an in-process store, for tests: nothing survives the process
 *   rados:POOL     Ceph RADOS: the objects of pool POOL (the pool must exist)
 *   rados:POOL/NS  the same, inside RADOS namespace NS: several stores in one pool
 *
 * A rados store connects with OpenObjectStoreOptions.rados (cephConf, cephId, keyring),
 * else $CEPH_CONF and $CEPH_ID, else Ceph's defaults (/etc/ceph/ceph.conf, client.admin).
 *
 * Each backend's module is imported when a URI names it: a command on a rados store does not
 * parse the file backend, nor one on a file store the rados one (~10 and ~15 ms of a CLI
 * command's start-up on the benchmark machine, bench/RESULTS.md "RADOS run 8").
 */
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { EngineError } from "../errors.ts";
import type { ObjectStore } from "./object-store.ts";
import type { RadosStoreOptions } from "./rados/rados.ts";

export const storeSchemes = ["file", "memory", "rados"] as const;

export interface OpenObjectStoreOptions {
  /**
   * Create the store's directory if it is absent (`store init`). Without it a missing
   * directory is ENO_STORE, so a mistyped `--store` creates nothing.
   */
  create?: boolean;
  /** How a rados: store connects; each field falls back to the environment (see the header). */
  rados?: RadosConnectOptions;
}

export interface RadosConnectOptions {
  /** ceph.conf path (else $CEPH_CONF). */
  cephConf?: string;
  /** Client id without `client.` (else $CEPH_ID, else admin). */
  cephId?: string;
  /** Keyring path (else the one ceph.conf names). */
  keyring?: string;
}

/** A URI scheme: a letter, then letters, digits, `+`, `.` or `-`, then `:` (RFC 3986 §3.1). */
const schemePattern = /^([A-Za-z][A-Za-z0-9+.-]*):/;

export async function openObjectStore(uri: string, options: OpenObjectStoreOptions = {}): Promise<ObjectStore> {
  const match = schemePattern.exec(uri);
  if (match === null) return openFileStore(uri, options);
  const scheme = (match[1] as string).toLowerCase();
  const rest = uri.slice(match[0].length);
  switch (scheme) {
    case "file":
      return openFileStore(rest.startsWith("//") ? fileUrlPath(uri) : rest, options);
    case "memory": {
      const { MemoryObjectStore } = await import("./memory.ts");
      return new MemoryObjectStore(rest === "" ? "memory" : rest);
    }
    case "rados":
      return openRadosStore(uri, options.rados ?? {});
    default:
      throw new EngineError("EINVALID", `unknown store scheme ${JSON.stringify(`${scheme}:`)} in ${uri}: use ${storeSchemes.map((s) => `${s}:`).join(", ")} or a path`);
  }
}

async function openFileStore(path: string, options: OpenObjectStoreOptions): Promise<ObjectStore> {
  if (path === "") throw new EngineError("EINVALID", "a file store needs a directory: file:PATH");
  const dir = resolve(path);
  if (options.create !== true) {
    const found = await stat(dir).catch(() => undefined);
    if (found === undefined) throw new EngineError("ENO_STORE", `no store at file:${dir}: run \`okeanos store init\` first`);
    if (!found.isDirectory()) throw new EngineError("EINVALID", `store path ${dir} is not a directory`);
  }
  const { FileObjectStore } = await import("./file.ts");
  return FileObjectStore.open(dir);
}

/**
 * rados:POOL or rados:POOL/NAMESPACE. The pool must exist: pools are the cluster
 * administrator's (placement groups, replication, quotas), so `store init` creates none.
 */
async function openRadosStore(uri: string, options: RadosConnectOptions): Promise<ObjectStore> {
  const target = radosStoreTarget(uri, options);
  const { RadosObjectStore } = await import("./rados/rados.ts");
  return RadosObjectStore.open(target);
}

/** What a rados: URI names, with how to connect: the options for RadosObjectStore.open. */
export function radosStoreTarget(uri: string, options: RadosConnectOptions): RadosStoreTarget {
  const match = schemePattern.exec(uri);
  if (match === null || (match[1] as string).toLowerCase() !== "rados") throw new EngineError("EINVALID", `not a rados store: ${uri}`);
  const rest = uri.slice(match[0].length);
  const slash = rest.indexOf("/");
  const pool = slash === -1 ? rest : rest.slice(0, slash);
  const namespace = slash === -1 ? "" : rest.slice(slash + 1);
  if (pool === "") throw new EngineError("EINVALID", `a rados store needs a pool: rados:POOL or rados:POOL/NAMESPACE (got ${uri})`);
  if (slash !== -1 && namespace === "") throw new EngineError("EINVALID", `empty RADOS namespace in ${uri}: use rados:${pool}`);
  return { pool, namespace, cephConf: options.cephConf, cephId: options.cephId, keyring: options.keyring };
}

/** What open-store.ts decides of a rados store's options: where it is and how to connect. */
export type RadosStoreTarget = Pick<RadosStoreOptions, "pool" | "namespace" | "cephConf" | "cephId" | "keyring">;

function fileUrlPath(uri: string): string {
  try {
    return fileURLToPath(uri);
  } catch (error) {
    throw new EngineError("EINVALID", `invalid file URL ${uri}: ${(error as Error).message}`);
  }
}
