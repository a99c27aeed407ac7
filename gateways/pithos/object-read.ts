/**
 * GET and HEAD of an object: data (whole, ranges, multi-range), the Pithos+ hashmap
 * (`?hashmap&format=json`), the version list (`?version=list`), a past version
 * (`?version=N`), and large objects assembled from their segments (DLO `X-Object-Manifest`,
 * SLO). Data streams from the engine block by block; nothing is buffered whole.
 */
import { Readable } from "node:stream";
import type { FastifyReply } from "fastify";
import { accessFor, effectiveSharing, getCurrent, getVersion, listObjects, listVersions, type PithosContainer, type PithosObject, type PithosVersion } from "../../db/index.ts";
import { loadContainer, requireObjectAccess, type PithosContext } from "./context.ts";
import { objectHeaders } from "./object-headers.ts";
import { evaluateConditions, ifRangeMatches } from "./wire/conditionals.ts";
import { PithosError, rangeNotSatisfiable } from "./wire/errors.ts";
import { listingFormat } from "./wire/listing.ts";
import { contentRange, multipartFraming, parseRange } from "./wire/ranges.ts";
import { lastModifiedSeconds, listingLastModified } from "./wire/timestamps.ts";
import { parseObjectManifest } from "./wire/names.ts";
import { createHash, randomBytes } from "node:crypto";

/** A piece of an object's data: `length` bytes of a map from `offset`. */
interface Segment {
  mapName: string;
  sizeBytes: number;
}

export interface ObjectView {
  container: PithosContainer;
  object: PithosObject;
  version: PithosVersion;
  /** The data, in order: one segment for a plain object, the parts of a large object. */
  segments: Segment[];
  sizeBytes: number;
  etag: string;
  /** Manifest ETags are quoted (swift.md 9). */
  etagQuoted: boolean;
}

/** Most segments one large object may assemble (Swift's max_manifest_segments for SLO; DLO listings page at 10000). */
export const largeObjectSegmentsMax = 10_000;

export async function readObject(context: PithosContext): Promise<FastifyReply> {
  const { reply, query } = context;
  const container = await loadContainer(context);
  const path = context.objectPath as string;
  await requireObjectAccess(context, container, path, "read");

  if (query.get("version") === "list") return sendVersionList(context, container, path);
  const found = await findVersion(context, container, path);
  const view = await viewOf(context, container, found.object, found.version);
  const isHead = context.request.method === "HEAD";

  reply.headers(objectHeaders(view, context));
  if (context.caller.userUuid !== container.account) reply.headers(await granteeHeaders(context, container, path));
  if (query.has("hashmap") && query.get("format") !== null && context.request.method === "GET") return sendHashmap(context, view);
  if (query.get("multipart-manifest") === "get" && view.version.sloManifest !== null) return sendSloManifest(context, view);

  const condition = evaluateConditions(isHead ? "HEAD" : "GET", context.request.headers, {
    etag: view.etag,
    lastModifiedMs: lastModifiedSeconds(view.version.modifiedAt) * 1000,
  });
  if (condition === "not-modified") return reply.code(304).header("content-length", "0").send();
  if (condition === "precondition-failed") throw new PithosError("EPRECONDITION_FAILED");

  const rangeHeader = context.request.headers.range;
  const honourRange =
    !isHead &&
    rangeHeader !== undefined &&
    ifRangeMatches(context.request.headers, { etag: view.etag, lastModifiedMs: lastModifiedSeconds(view.version.modifiedAt) * 1000 });
  const range = honourRange ? parseRange(rangeHeader, view.sizeBytes) : ({ kind: "whole" } as const);
  if (range.kind === "unsatisfiable") {
    throw rangeNotSatisfiable(view.sizeBytes);
  }
  if (isHead) return reply.code(200).header("content-length", String(view.sizeBytes)).send();
  if (range.kind === "whole") {
    reply.header("content-length", String(view.sizeBytes));
    return reply.code(200).send(segmentStream(context, view.segments, 0, view.sizeBytes));
  }
  if (range.ranges.length === 1) {
    const { start, end } = range.ranges[0]!;
    reply.header("content-range", contentRange(start, end, view.sizeBytes)).header("content-length", String(end - start + 1));
    return reply.code(206).send(segmentStream(context, view.segments, start, end + 1));
  }
  const boundary = randomBytes(16).toString("hex");
  const framing = multipartFraming(boundary, view.version.contentType, view.sizeBytes, range.ranges);
  reply.header("content-type", `multipart/byteranges;boundary=${boundary}`).header("content-length", String(framing.totalLength));
  const segments = view.segments;
  const parts = async function* () {
    for (const [index, { start, end }] of range.ranges.entries()) {
      yield framing.preambles[index]!;
      yield* segmentStream(context, segments, start, end + 1);
    }
    yield framing.epilogue;
  };
  return reply.code(206).send(Readable.from(parts()));
}

/** What a grantee is allowed, and (when inherited) which directory object shares it (synnefo.md B.2, B.5). */
async function granteeHeaders(context: PithosContext, container: PithosContainer, path: string): Promise<Record<string, string>> {
  const db = context.service.db;
  const access = await accessFor(db, context.caller.userUuid, container.account, container.id, path);
  const headers: Record<string, string> = { "x-object-allowed-to": access === "write" ? "write" : "read" };
  const effective = await effectiveSharing(db, container.id, path);
  if (effective !== undefined && effective.path !== path) headers["x-object-shared-by"] = `${container.name}/${effective.path}`;
  return headers;
}

async function findVersion(context: PithosContext, container: PithosContainer, path: string): Promise<{ object: PithosObject; version: PithosVersion }> {
  const wanted = context.query.get("version");
  if (wanted !== null && wanted !== "") {
    const serial = Number(wanted);
    if (!Number.isSafeInteger(serial) || serial <= 0) throw new PithosError("EBAD_REQUEST", `Invalid version ${JSON.stringify(wanted)}.`);
    const found = await getVersion(context.service.db, container.id, path, serial);
    if (found === undefined) throw new PithosError("ENOT_FOUND");
    return found;
  }
  const found = await getCurrent(context.service.db, container.id, path);
  if (found === undefined) throw new PithosError("ENOT_FOUND");
  return found;
}

/** Resolves a version to the data it serves: itself, or a large object's segments. */
export async function viewOf(context: PithosContext, container: PithosContainer, object: PithosObject, version: PithosVersion): Promise<ObjectView> {
  const base = { container, object, version };
  if (version.sloManifest !== null) {
    const segments: Segment[] = [];
    const etags = createHash("md5");
    for (const segment of parseStoredSlo(version.sloManifest)) {
      const part = await findSegment(context, segment.container, segment.path);
      if (part === undefined) throw new PithosError("ECONFLICT", `Segment ${segment.container}/${segment.path} of this manifest is missing.`);
      segments.push({ mapName: part.version.mapName, sizeBytes: part.version.sizeBytes });
      etags.update(part.version.etag);
    }
    return { ...base, segments, sizeBytes: sum(segments), etag: etags.digest("hex"), etagQuoted: true };
  }
  if (version.manifest !== null) {
    const { container: segmentContainer, prefix } = parseObjectManifest(version.manifest);
    const parts = await dloSegments(context, segmentContainer, prefix);
    const etags = createHash("md5");
    for (const part of parts) etags.update(part.version.etag);
    const segments = parts.map((part) => ({ mapName: part.version.mapName, sizeBytes: part.version.sizeBytes }));
    return { ...base, segments, sizeBytes: sum(segments), etag: etags.digest("hex"), etagQuoted: true };
  }
  return { ...base, segments: [{ mapName: version.mapName, sizeBytes: version.sizeBytes }], sizeBytes: version.sizeBytes, etag: version.etag, etagQuoted: false };
}

function sum(segments: readonly Segment[]): number {
  return segments.reduce((total, segment) => total + segment.sizeBytes, 0);
}

export interface StoredSloSegment {
  container: string;
  path: string;
  etag: string;
  sizeBytes: number;
  /** The segment's modification time when the manifest was stored (ms). */
  modifiedAt?: number;
}

export function parseStoredSlo(json: string): StoredSloSegment[] {
  return JSON.parse(json) as StoredSloSegment[];
}

/** What Swift shows of an SLO without reading its segments: size, `slo_etag`, manifest etag. */
export function sloSummary(json: string): { sizeBytes: number; sloEtag: string; manifestEtag: string } {
  const segments = parseStoredSlo(json);
  const etags = createHash("md5");
  for (const segment of segments) etags.update(segment.etag);
  return {
    sizeBytes: segments.reduce((total, segment) => total + segment.sizeBytes, 0),
    sloEtag: `"${etags.digest("hex")}"`,
    manifestEtag: createHash("md5").update(json).digest("hex"),
  };
}

/** A segment in the same account; the caller needs read access to it too. */
async function findSegment(context: PithosContext, containerName: string, path: string): Promise<{ version: PithosVersion } | undefined> {
  const container = await loadContainer(context, containerName).catch(() => undefined);
  if (container === undefined) return undefined;
  await requireObjectAccess(context, container, path, "read");
  return getCurrent(context.service.db, container.id, path);
}

/** DLO: every object under the prefix, in listing order (swift.md 9). */
async function dloSegments(context: PithosContext, containerName: string, prefix: string): Promise<Array<{ version: PithosVersion }>> {
  const container = await loadContainer(context, containerName).catch(() => undefined);
  if (container === undefined) return [];
  const parts: Array<{ version: PithosVersion }> = [];
  let marker: string | undefined;
  for (;;) {
    const page = await listObjects(context.service.db, container.id, { prefix, ...(marker !== undefined && { marker }), limit: 1000 });
    for (const entry of page) {
      if (entry.kind !== "object") continue;
      await requireObjectAccess(context, container, entry.path, "read");
      parts.push({ version: entry.version });
      if (parts.length > largeObjectSegmentsMax) throw new PithosError("ECONFLICT", `A manifest may assemble at most ${largeObjectSegmentsMax} segments.`);
    }
    if (page.length < 1000) return parts;
    const last = page.at(-1)!;
    marker = last.kind === "object" ? last.path : last.subdir;
  }
}

/** The bytes [start, end) of the concatenation of `segments`, read from the engine lazily. */
export function segmentStream(context: PithosContext, segments: readonly Segment[], start: number, end: number): Readable {
  const engine = context.service.engine;
  const chunks = async function* () {
    let offset = 0;
    for (const segment of segments) {
      const segmentEnd = offset + segment.sizeBytes;
      if (segmentEnd > start && offset < end && segment.sizeBytes > 0) {
        const reader = await engine.openFile(segment.mapName);
        yield* reader.stream(Math.max(start, offset) - offset, Math.min(end, segmentEnd) - offset);
      }
      offset = segmentEnd;
      if (offset >= end) return;
    }
  };
  return Readable.from(chunks(), { objectMode: false });
}

async function sendHashmap(context: PithosContext, view: ObjectView): Promise<FastifyReply> {
  const engine = context.service.engine;
  const hashmap = await engine.fileHashmap(view.version.mapName);
  const hashes = hashmap.hashes.map((hash) => hash.toString("hex"));
  // An empty object's hashmap is the one zero-block hash (synnefo.md B.3).
  if (hashes.length === 0) hashes.push(zeroHashHex(context));
  const format = listingFormat(context.query.get("format") ?? undefined, undefined);
  if (format === "xml") {
    const body =
      `<?xml version="1.0" encoding="UTF-8"?>\n<object name="${xmlEscape(view.object.path)}" bytes="${hashmap.sizeBytes}" block_size="${hashmap.blockSizeBytes}" block_hash="${hashmap.algorithm}">\n` +
      hashes.map((hash) => `<hash>${hash}</hash>\n`).join("") +
      "</object>\n";
    return context.reply.code(200).type("application/xml; charset=utf-8").send(body);
  }
  return context.reply
    .code(200)
    .type("application/json; charset=utf-8")
    .send(JSON.stringify({ block_size: hashmap.blockSizeBytes, block_hash: hashmap.algorithm, bytes: hashmap.sizeBytes, hashes }));
}

function zeroHashHex(context: PithosContext): string {
  return context.service.zeroBlockHashHex;
}

function xmlEscape(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function sendSloManifest(context: PithosContext, view: ObjectView): Promise<FastifyReply> {
  const segments = parseStoredSlo(view.version.sloManifest as string);
  const raw = context.query.get("format") === "raw";
  const body = segments.map((segment) =>
    raw
      ? { path: `/${segment.container}/${segment.path}`, etag: segment.etag, size_bytes: segment.sizeBytes }
      : {
          name: `/${segment.container}/${segment.path}`,
          bytes: segment.sizeBytes,
          hash: segment.etag,
          content_type: "application/octet-stream",
          ...(segment.modifiedAt !== undefined && { last_modified: listingLastModified(segment.modifiedAt) }),
        },
  );
  return context.reply.code(200).type("application/json; charset=utf-8").send(JSON.stringify(body));
}

async function sendVersionList(context: PithosContext, container: PithosContainer, path: string): Promise<FastifyReply> {
  const versions = await listVersions(context.service.db, container.id, path);
  if (versions.length === 0) throw new PithosError("ENOT_FOUND");
  const format = listingFormat(context.query.get("format") ?? undefined, context.request.headers.accept);
  const pairs = versions.map((version) => [version.serial, (version.modifiedAt / 1000).toFixed(6)] as const);
  if (format === "text") {
    return context.reply.code(200).type("text/plain; charset=utf-8").send(pairs.map(([serial, ts]) => `${serial} ${ts}\n`).join(""));
  }
  return context.reply.code(200).type("application/json; charset=utf-8").send(JSON.stringify({ versions: pairs }));
}
