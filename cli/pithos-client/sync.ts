/**
 * Syncing a directory with a container prefix, one direction at a time.
 *
 *   up:   every regular file under LOCALDIR ──hash──► Merkle root = the listing's x_object_hash
 *         and same size? ──yes──► unchanged, no request
 *                         └─no──► upload (only the blocks the server lacks)
 *         --delete: objects under the prefix with no local file are deleted
 *   down: every object under the prefix ──► local file with that Merkle root? ──► unchanged
 *         else download (in place: only the blocks that differ are fetched)
 *         --delete: local files with no object are deleted
 *
 * An object `PREFIX/a/b.txt` is the file `LOCALDIR/a/b.txt`. Pseudo-folder objects
 * (`application/directory`) become directories going down and are never deleted. Object
 * names that cannot be a path inside LOCALDIR (`..`, empty segments) are skipped, never
 * followed outside it.
 */
import { mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import type { HashPool } from "../../engine/blocker/hash-pool.ts";
import { localFileError } from "../output.ts";
import type { ContainerLayout, ObjectEntry, PithosClient } from "./client.ts";
import { downloadObject, partSuffix, type DownloadOptions, type DownloadResult } from "./download.ts";
import { RemoteError } from "./errors.ts";
import { hashLocalFile, objectHashOf, type LocalHashmap } from "./local-hashmap.ts";
import { uploadFile, type UploadOptions, type UploadResult } from "./upload.ts";

export const directoryContentType = "application/directory";

/** Progress callbacks for one file's transfer (the CLI draws a bar per file). */
export type TransferHooks = Pick<UploadOptions, "onHashProgress" | "onSendStart" | "onSendProgress"> &
  Pick<DownloadOptions, "onScanProgress" | "onFetchStart" | "onFetchProgress"> & { done?: () => void };

export interface SyncOptions {
  pool: HashPool;
  parallel?: number;
  /** Also delete what the other side does not have. */
  delete?: boolean;
  /** Decide, report, change nothing. */
  dryRun?: boolean;
  hooks?: (name: string) => TransferHooks;
}

export interface SyncResult {
  direction: "up" | "down";
  container: string;
  prefix: string;
  localDir: string;
  /** Files (up) or objects (down) compared. */
  compared: number;
  unchanged: number;
  /** What differed: transferred, or (dryRun) would be. */
  changed: Array<{ name: string; bytes: number }>;
  /** Each transfer's own result (none with dryRun). */
  transfers: Array<UploadResult | DownloadResult>;
  /** Object names (up) or local paths (down) deleted, or that would be with dryRun. */
  deleted: string[];
  skipped: Array<{ name: string; reason: string }>;
  /** Block bytes sent (up) or fetched (down), all files. */
  blockBytes: number;
  dryRun: boolean;
  seconds: number;
}

/** "photos" → "photos/": a prefix names a folder. "" stays "". */
export function folderPrefix(prefix: string): string {
  return prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`;
}

/** Every regular file under `dir`, as "/"-separated paths relative to it, sorted. */
export async function localFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch((error: unknown) => {
    throw localFileError("read", dir, error);
  });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)).split(sep).join("/"))
    .sort();
}

/** The path under `dir` for an object's name relative to the prefix, or why there is none. */
export function localPathFor(dir: string, relativeName: string): { path: string } | { reason: string } {
  const segments = relativeName.split("/");
  if (segments.some((segment) => segment === "" || segment === "." || segment === "..")) return { reason: "the name has an empty, . or .. segment" };
  if (relativeName.includes("\0")) return { reason: "the name holds a NUL byte" };
  return { path: join(dir, ...segments) };
}

async function remoteObjects(client: PithosClient, container: string, prefix: string): Promise<Map<string, ObjectEntry>> {
  const objects = new Map<string, ObjectEntry>();
  for await (const entry of client.listObjects(container, { prefix })) {
    if ("name" in entry) objects.set(entry.name, entry);
  }
  return objects;
}

function unchanged(entry: ObjectEntry | undefined, layout: ContainerLayout, local: LocalHashmap): boolean {
  return entry !== undefined && entry.bytes === local.bytes && entry.x_object_hash?.toLowerCase() === objectHashOf(layout, local);
}

async function hashPath(path: string, layout: ContainerLayout, pool: HashPool): Promise<LocalHashmap> {
  const file = await open(path, "r").catch((error: unknown) => {
    throw localFileError("open", path, error);
  });
  try {
    return await hashLocalFile(file, path, layout, { pool });
  } finally {
    await file.close();
  }
}

export async function syncUp(client: PithosClient, localDir: string, container: string, prefixGiven: string, options: SyncOptions): Promise<SyncResult> {
  const started = performance.now();
  const prefix = folderPrefix(prefixGiven);
  const result = emptyResult("up", container, prefix, localDir, options);
  const files = await localFiles(localDir);
  const layout = options.dryRun === true ? await client.containerInfo(container) : await client.ensureContainer(container);
  const remote = layout === undefined ? new Map<string, ObjectEntry>() : await remoteObjects(client, container, prefix);
  for (const name of files) {
    const objectName = `${prefix}${name}`;
    const path = join(localDir, ...name.split("/"));
    result.compared++;
    // A new container (dry run) has no layout yet: every file would be uploaded.
    const hashmap = layout === undefined ? undefined : await hashPath(path, layout, options.pool);
    if (layout !== undefined && hashmap !== undefined && unchanged(remote.get(objectName), layout, hashmap)) {
      result.unchanged++;
      continue;
    }
    const bytes =
      hashmap?.bytes ??
      (
        await stat(path).catch((error: unknown) => {
          throw localFileError("read", path, error);
        })
      ).size;
    result.changed.push({ name: objectName, bytes });
    if (options.dryRun === true) continue;
    const hooks = options.hooks?.(objectName) ?? {};
    try {
      const uploaded = await uploadFile(client, path, container, objectName, {
        pool: options.pool,
        ...(options.parallel !== undefined && { parallel: options.parallel }),
        ...(hashmap !== undefined && { hashmap }),
        ...(layout !== undefined && { layout }),
        ...hooks,
      });
      result.transfers.push(uploaded);
      result.blockBytes += uploaded.bytesSent;
    } finally {
      hooks.done?.();
    }
  }
  if (options.delete === true) {
    const local = new Set(files.map((name) => `${prefix}${name}`));
    for (const [name, entry] of remote) {
      if (local.has(name) || entry.content_type === directoryContentType) continue;
      if (options.dryRun !== true) await client.deleteObject(container, name);
      result.deleted.push(name);
    }
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

export async function syncDown(client: PithosClient, container: string, prefixGiven: string, localDir: string, options: SyncOptions): Promise<SyncResult> {
  const started = performance.now();
  const prefix = folderPrefix(prefixGiven);
  const result = emptyResult("down", container, prefix, localDir, options);
  const layout = await client.containerInfo(container);
  if (layout === undefined) throw new RemoteError("ENOT_FOUND", `sync from ${container}: no such container (HTTP 404)`, { status: 404 });
  const remote = await remoteObjects(client, container, prefix);
  const wanted = new Set<string>();
  for (const [name, entry] of remote) {
    const target = localPathFor(localDir, name.slice(prefix.length));
    if ("reason" in target) {
      result.skipped.push({ name, reason: target.reason });
      continue;
    }
    wanted.add(target.path);
    if (entry.content_type === directoryContentType) {
      if (options.dryRun !== true) await mkdirs(target.path);
      continue;
    }
    result.compared++;
    const found = await stat(target.path).catch(() => undefined);
    const local = found?.isFile() === true ? await hashPath(target.path, layout, options.pool) : undefined;
    if (local !== undefined && unchanged(entry, layout, local)) {
      result.unchanged++;
      continue;
    }
    result.changed.push({ name, bytes: entry.bytes });
    if (options.dryRun === true) continue;
    await mkdirs(join(target.path, ".."));
    const hooks = options.hooks?.(name) ?? {};
    try {
      const downloaded = await downloadObject(client, container, name, target.path, {
        pool: options.pool,
        ...(options.parallel !== undefined && { parallel: options.parallel }),
        ...hooks,
      });
      result.transfers.push(downloaded);
      result.blockBytes += downloaded.bytesFetched;
    } finally {
      hooks.done?.();
    }
  }
  if (options.delete === true) {
    for (const name of await localFiles(localDir).catch(() => [])) {
      const path = join(localDir, ...name.split("/"));
      // A download interrupted elsewhere leaves LOCAL.part: it is ours to remove too.
      if (wanted.has(path) || (name.endsWith(partSuffix) && wanted.has(path.slice(0, -partSuffix.length)))) continue;
      if (options.dryRun !== true) {
        await unlink(path).catch((error: unknown) => {
          throw localFileError("delete", path, error);
        });
      }
      result.deleted.push(path);
    }
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

async function mkdirs(path: string): Promise<void> {
  await mkdir(path, { recursive: true }).catch((error: unknown) => {
    throw localFileError("create directory", path, error);
  });
}

function emptyResult(direction: "up" | "down", container: string, prefix: string, localDir: string, options: SyncOptions): SyncResult {
  return { direction, container, prefix, localDir, compared: 0, unchanged: 0, changed: [], transfers: [], deleted: [], skipped: [], blockBytes: 0, dryRun: options.dryRun === true, seconds: 0 };
}
