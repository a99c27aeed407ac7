/**
 * Meta contexts we offer (proto.md "Metadata querying"):
 *
 *   base:allocation          from the map: a zero entry is HOLE|ZERO, anything else data
 *   qemu:dirty-bitmap:SNAP   blocks that differ between the export and the frozen map SNAP
 *                            (qemu's namespace, docs/interop/nbd.txt: flag 1 = dirty), so
 *                            incremental-backup tools read "what changed since SNAP"
 *
 * LIST answers queries, including namespace wildcards (`base:`, `qemu:`,
 * `qemu:dirty-bitmap:`); no query lists everything. SET takes exact names only, as qemu does,
 * and computes a dirty bitmap's ranges there and then (Engine.diff, O(map)): the bitmap is
 * the difference as of SET_META_CONTEXT, not updated by later writes.
 */
import type { ChangedRange } from "../mapper/diff.ts";
import type { ExportInfo, ExportRegistry } from "./exports.ts";
import { metaContextsMax } from "./limits.ts";
import { baseAllocationContext, baseNamespace, dirtyBitmapContextPrefix, qemuNamespace } from "./protocol.ts";

export type MetaContext =
  | { id: number; name: string; kind: "allocation" }
  | { id: number; name: string; kind: "dirty"; snapshot: string; ranges: readonly ChangedRange[] };

/** Context names matching LIST_META_CONTEXT `queries` for export `info` (no duplicates). */
export async function listContexts(registry: ExportRegistry, info: ExportInfo, queries: readonly string[]): Promise<string[]> {
  const names = new Set<string>();
  let snapshots: string[] | undefined;
  const allBitmaps = async () => (snapshots ??= await registry.snapshotsOf(info)).map((name) => dirtyBitmapContextPrefix + name);
  if (queries.length === 0) {
    names.add(baseAllocationContext);
    for (const name of await allBitmaps()) names.add(name);
  }
  for (const query of queries) {
    if (query === baseNamespace || query === baseAllocationContext) {
      names.add(baseAllocationContext);
    } else if (query === qemuNamespace || query === dirtyBitmapContextPrefix) {
      for (const name of await allBitmaps()) names.add(name);
    } else if (query.startsWith(dirtyBitmapContextPrefix)) {
      if (await registry.isFrozenMap(query.slice(dirtyBitmapContextPrefix.length))) names.add(query);
    }
  }
  return [...names];
}

/**
 * Contexts selected by SET_META_CONTEXT `queries`, numbered from 1 in query order. Unknown
 * names select nothing (proto.md: the server replies only with the contexts it selected);
 * past metaContextsMax, further queries are ignored.
 */
export async function selectContexts(registry: ExportRegistry, info: ExportInfo, queries: readonly string[]): Promise<MetaContext[]> {
  const contexts: MetaContext[] = [];
  const chosen = new Set<string>();
  for (const query of queries) {
    if (contexts.length === metaContextsMax) break;
    if (chosen.has(query)) continue;
    const id = contexts.length + 1;
    if (query === baseAllocationContext) {
      contexts.push({ id, name: query, kind: "allocation" });
    } else if (query.startsWith(dirtyBitmapContextPrefix) && query.length > dirtyBitmapContextPrefix.length) {
      const snapshot = query.slice(dirtyBitmapContextPrefix.length);
      const ranges = await registry.dirtyRanges(info.name, snapshot);
      if (ranges === undefined) continue;
      contexts.push({ id, name: query, kind: "dirty", snapshot, ranges });
    } else {
      continue;
    }
    chosen.add(query);
  }
  return contexts;
}
