/**
 * PUT, POST, DELETE, COPY and MOVE of an object.
 *
 *   PUT                       streamed upload (Content-Length or chunked; 411 without either)
 *   PUT ?hashmap              create from a hashmap: 201, or 409 + the missing hashes
 *   PUT ?multipart-manifest=put   SLO manifest
 *   PUT + X-Object-Manifest   DLO manifest (its own data is what was sent, usually 0 bytes)
 *   PUT + X-Copy-From / X-Move-From, COPY / MOVE + Destination   server-side copy and move:
 *                             copy makes a new map of the same block hashes, move keeps it
 *   POST                      metadata (replace; `?update` merges), sharing, public link
 *   DELETE                    the current version (history kept with versioning=auto)
 */
import type { FastifyReply } from "fastify";
import {
  getCurrent,
  renameObject,
  setPublic,
  setSharing,
  type PithosContainer,
  type PithosObject,
  type PithosVersion,
} from "../../db/index.ts";
import { isOwner, loadContainer, requireObjectAccess, type PithosContext } from "./context.ts";
import { publicLink } from "./object-headers.ts";
import { isPartialUpdate, partialUpdate } from "./partial-update.ts";
import { parseStoredSlo, segmentStream, viewOf, type StoredSloSegment } from "./object-read.ts";
import { readBodyBytes, requestBody } from "./request-body.ts";
import type { StoredVersion, VersionFields } from "./service.ts";
import { putPreconditions } from "./wire/conditionals.ts";
import { guessContentType } from "./wire/content-type.ts";
import { PithosError } from "./wire/errors.ts";
import { maxFileSizeBytes, sloMaxManifestSegments, sloMaxManifestBytes } from "./wire/info.ts";
import { applyMetadata, parseMetadataHeaders } from "./wire/metadata.ts";
import { parseAccountHeader, parseObjectManifest, parseObjectPathHeader } from "./wire/names.ts";
import { parseObjectSharing } from "./wire/sharing.ts";
import { lastModifiedHeader } from "./wire/timestamps.ts";

/** A hashmap body lists one 64-hex hash per block: 5 GiB of 4 KiB blocks is ~1.3 M hashes, ~90 MB of JSON. */
export const hashmapBodyBytesMax = 96 * 1024 * 1024;

/** An account header (`AUTH_<uuid>` or `<uuid>`) as the account's user uuid; 412 otherwise. */
function accountOf(value: string): string {
  const { accountUuid } = parseAccountHeader(value);
  if (accountUuid === undefined) throw new PithosError("EPRECONDITION_FAILED", "Bad account header");
  return accountUuid;
}

function header(context: PithosContext, name: string): string | undefined {
  const value = context.request.headers[name];
  if (Array.isArray(value)) return value[0];
  return value === "" ? undefined : value;
}

/** Fields of a new version from the request's headers (Content-Type guessed when absent, swift.md 5). */
function versionFields(context: PithosContext, path: string, base: Partial<VersionFields> = {}): VersionFields {
  const given = header(context, "content-type");
  const parsed = parseMetadataHeaders("object", context.request.headers);
  const deleteAt = deleteAtMs(context);
  return {
    contentType: given ?? base.contentType ?? guessContentType(path),
    contentEncoding: header(context, "content-encoding") ?? base.contentEncoding ?? null,
    contentDisposition: header(context, "content-disposition") ?? base.contentDisposition ?? null,
    manifest: header(context, "x-object-manifest") ?? null,
    sloManifest: null,
    meta: applyMetadata(base.meta ?? {}, parsed, "merge"),
    deleteAt: deleteAt === undefined ? (base.deleteAt ?? null) : deleteAt,
  };
}

function deleteAtMs(context: PithosContext): number | null | undefined {
  const at = header(context, "x-delete-at");
  const after = header(context, "x-delete-after");
  if (at !== undefined) {
    const seconds = Number(at);
    if (!Number.isFinite(seconds) || seconds < 0) throw new PithosError("EBAD_REQUEST", "Non-integer X-Delete-At");
    return Math.round(seconds * 1000);
  }
  if (after !== undefined) {
    const seconds = Number(after);
    if (!Number.isFinite(seconds) || seconds < 0) throw new PithosError("EBAD_REQUEST", "Non-integer X-Delete-After");
    return Date.now() + Math.round(seconds * 1000);
  }
  return undefined;
}

function created(context: PithosContext, stored: StoredVersion, extra: Record<string, string> = {}): FastifyReply {
  const { version } = stored;
  return context.reply
    .code(201)
    .headers({
      etag: version.sloManifest !== null ? `"${version.etag}"` : version.etag,
      "last-modified": lastModifiedHeader(version.modifiedAt),
      "x-object-version": String(version.serial),
      "content-type": "text/html; charset=UTF-8",
      "content-length": "0",
      ...extra,
    })
    .send();
}

export async function putObject(context: PithosContext): Promise<FastifyReply> {
  const container = await loadContainer(context);
  const path = context.objectPath as string;
  await requireObjectAccess(context, container, path, "write");
  checkSharingAndPublic(context);
  const copyFrom = header(context, "x-copy-from");
  const moveFrom = header(context, "x-move-from");
  if (copyFrom !== undefined || moveFrom !== undefined) {
    const source = parseObjectPathHeader(copyFrom !== undefined ? "X-Copy-From" : "X-Move-From", (copyFrom ?? moveFrom) as string);
    const sourceAccount = header(context, "x-source-account");
    return copyOrMove(
      context,
      { containerName: source.container, path: source.object, account: sourceAccount === undefined ? undefined : accountOf(sourceAccount) },
      { container, path },
      moveFrom !== undefined ? "move" : "copy",
    );
  }

  const current = await getCurrent(context.service.db, container.id, path);
  const precondition = putPreconditions(context.request.headers, current === undefined ? undefined : { etag: current.version.etag });
  if (precondition === "precondition-failed") throw new PithosError("EPRECONDITION_FAILED");
  const createOnly = header(context, "if-none-match") === "*";
  const writeOptions = { modifiedBy: context.caller.userUuid, createOnly, ...(current !== undefined && !createOnly && header(context, "if-match") !== undefined && { expectCurrentSerial: current.version.serial }) };

  if (context.query.has("hashmap")) return putHashmap(context, container, path, writeOptions);
  if (context.query.get("multipart-manifest") === "put") return putSlo(context, container, path, writeOptions);

  const body = requestBody(context, maxFileSizeBytes);
  const fields = versionFields(context, path);
  if (fields.manifest !== null && fields.manifest !== undefined) parseObjectManifest(fields.manifest);
  const stored = await context.service.putFromStream(container, path, body.stream, fields, {
    ...writeOptions,
    ...(header(context, "etag") !== undefined && { expectedMd5: header(context, "etag") }),
    ...(body.lengthBytes !== undefined && { expectedSizeBytes: body.lengthBytes }),
  });
  await applySharingAndPublic(context, stored.object);
  return created(context, stored);
}

async function putHashmap(context: PithosContext, container: PithosContainer, path: string, options: { modifiedBy: string; createOnly: boolean; expectCurrentSerial?: number }): Promise<FastifyReply> {
  const raw = await readBodyBytes(context, hashmapBodyBytesMax);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString("utf8"));
  } catch {
    throw new PithosError("EBAD_REQUEST", "Invalid hashmap: not JSON.");
  }
  const { bytes, hashes } = (parsed ?? {}) as { bytes?: unknown; hashes?: unknown };
  if (!Number.isSafeInteger(bytes) || (bytes as number) < 0 || !Array.isArray(hashes) || !hashes.every((h) => typeof h === "string" && /^[0-9a-fA-F]{64}$/.test(h))) {
    throw new PithosError("EBAD_REQUEST", "Invalid hashmap: expected {\"bytes\": N, \"hashes\": [\"<64 hex>\", …]}.");
  }
  if ((bytes as number) > maxFileSizeBytes) throw new PithosError("ETOO_LARGE");
  const blocks = Math.ceil((bytes as number) / context.service.blockSizeBytes);
  if (hashes.length !== blocks && !((bytes as number) === 0 && hashes.length === 1)) {
    throw new PithosError("EBAD_REQUEST", `Invalid hashmap: ${hashes.length} hashes for ${bytes} bytes in blocks of ${context.service.blockSizeBytes}.`);
  }
  const fields = versionFields(context, path);
  const result = await context.service.putFromHashmap(container, path, bytes as number, (hashes as string[]).map((h) => Buffer.from(h, "hex")), fields, options);
  if ("missing" in result) {
    const missing = result.missing.map((hash) => hash.toString("hex"));
    const json = context.query.get("format") === "json";
    return context.reply
      .code(409)
      .type(json ? "application/json; charset=utf-8" : "text/plain; charset=utf-8")
      .send(json ? JSON.stringify(missing) : missing.map((hash) => `${hash}\n`).join(""));
  }
  await applySharingAndPublic(context, result.stored.object);
  return created(context, result.stored);
}

/** SLO: `[{"path": "/c/o", "etag": md5|null, "size_bytes": n|null}, …]`, each segment checked (swift.md 9). */
async function putSlo(context: PithosContext, container: PithosContainer, path: string, options: { modifiedBy: string; createOnly: boolean }): Promise<FastifyReply> {
  const raw = await readBodyBytes(context, sloMaxManifestBytes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString("utf8"));
  } catch {
    throw new PithosError("EBAD_REQUEST", "Manifest must be valid JSON.");
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || parsed.length > sloMaxManifestSegments) {
    throw new PithosError("EBAD_REQUEST", `Manifest must be a list of 1 to ${sloMaxManifestSegments} segments.`);
  }
  const segments: StoredSloSegment[] = [];
  for (const [index, item] of parsed.entries()) {
    const { path: segmentPath, etag, size_bytes: sizeBytes } = (item ?? {}) as { path?: unknown; etag?: unknown; size_bytes?: unknown };
    if (typeof segmentPath !== "string") throw new PithosError("EBAD_REQUEST", `Index ${index}: "path" must be a string.`);
    const source = parseObjectPathHeader("X-Copy-From", segmentPath);
    const segmentContainer = await loadContainer(context, source.container).catch(() => undefined);
    const found = segmentContainer === undefined ? undefined : await getCurrent(context.service.db, segmentContainer.id, source.object);
    if (found === undefined || segmentContainer === undefined) throw new PithosError("EBAD_REQUEST", `Index ${index}: 404 Not Found ${segmentPath}`);
    await requireObjectAccess(context, segmentContainer, source.object, "read");
    if (typeof etag === "string" && etag !== found.version.etag) throw new PithosError("EBAD_REQUEST", `Index ${index}: Etag Mismatch`);
    if (typeof sizeBytes === "number" && sizeBytes !== found.version.sizeBytes) throw new PithosError("EBAD_REQUEST", `Index ${index}: Size Mismatch`);
    segments.push({ container: source.container, path: source.object, etag: found.version.etag, sizeBytes: found.version.sizeBytes, modifiedAt: found.version.modifiedAt });
  }
  const fields = { ...versionFields(context, path), sloManifest: JSON.stringify(segments) };
  // The manifest itself holds no data; its size and ETag are computed from the segments when read.
  const empty = (async function* () {})();
  const stored = await context.service.putFromStream(container, path, empty, fields, options);
  const view = await viewOf(context, container, stored.object, stored.version);
  await applySharingAndPublic(context, stored.object);
  return context.reply
    .code(201)
    .headers({ etag: `"${view.etag}"`, "last-modified": lastModifiedHeader(stored.version.modifiedAt), "x-object-version": String(stored.version.serial), "content-length": "0" })
    .send();
}

interface SourceRef {
  containerName: string;
  path: string;
  account: string | undefined;
}

/**
 * Copy: a new version whose map holds the same block hashes (O(map), no block copied);
 * large objects are copied as their manifest (swift copies the assembled data instead —
 * TODO: materialise). Move: the object node is renamed, keeping its uuid and maps.
 */
async function copyOrMove(context: PithosContext, source: SourceRef, target: { container: PithosContainer; path: string }, mode: "copy" | "move"): Promise<FastifyReply> {
  const sourceAccount = source.account ?? context.account;
  const sourceContainer = await loadContainer(context, source.containerName, sourceAccount);
  await requireObjectAccess(context, sourceContainer, source.path, mode === "move" ? "write" : "read");
  const found = await findSourceVersion(context, sourceContainer, source.path);
  const fresh = header(context, "x-fresh-metadata")?.toLowerCase() === "true";
  const fields = versionFields(context, target.path, {
    contentType: found.version.contentType,
    contentEncoding: found.version.contentEncoding,
    contentDisposition: found.version.contentDisposition,
    meta: fresh ? {} : found.version.meta,
    deleteAt: found.version.deleteAt,
  });
  const options = { modifiedBy: context.caller.userUuid };
  let stored: StoredVersion;
  // A move within one account renames (same uuid and map); across accounts it is copy + delete.
  if (mode === "move" && sourceContainer.account === target.container.account) {
    if (sourceContainer.id === target.container.id && source.path === target.path) throw new PithosError("EBAD_REQUEST", "Source and destination are the same object.");
    stored = await renameObject(context.service.db, sourceContainer.id, source.path, target.container.id, target.path, {
      ...options,
      fields: { ...fields, manifest: found.version.manifest, sloManifest: found.version.sloManifest },
    });
  } else if (found.version.manifest !== null || found.version.sloManifest !== null) {
    // A large object copies as the data it assembles, into a plain object (swift.md 9): the
    // copy must not change when the segments later do.
    const view = await viewOf(context, sourceContainer, found.object, found.version);
    stored = await context.service.putFromStream(target.container, target.path, segmentStream(context, view.segments, 0, view.sizeBytes), { ...fields, manifest: null, sloManifest: null }, options);
    if (mode === "move") await context.service.delete(sourceContainer, source.path, context.caller.userUuid);
  } else {
    stored = await context.service.copy(found, target.container, target.path, { ...fields, manifest: null, sloManifest: null }, options);
    if (mode === "move") await context.service.delete(sourceContainer, source.path, context.caller.userUuid);
  }
  await applySharingAndPublic(context, stored.object);
  return created(context, stored, {
    "x-copied-from": `${source.containerName}/${source.path}`,
    "x-copied-from-account": `AUTH_${sourceAccount}`,
    "x-copied-from-last-modified": lastModifiedHeader(found.version.modifiedAt),
  });
}

async function findSourceVersion(context: PithosContext, container: PithosContainer, path: string): Promise<{ object: PithosObject; version: PithosVersion }> {
  const found = await getCurrent(context.service.db, container.id, path);
  if (found === undefined) throw new PithosError("ENOT_FOUND");
  return found;
}

/** COPY and MOVE verbs: `Destination: /container/object` (swift.md 9). */
export async function copyVerb(context: PithosContext): Promise<FastifyReply> {
  const destination = header(context, "destination");
  if (destination === undefined) throw new PithosError("EPRECONDITION_FAILED", "You must provide a Destination header.");
  const target = parseObjectPathHeader("Destination", destination);
  const destinationAccount = header(context, "destination-account");
  const container = await loadContainer(context, target.container, destinationAccount === undefined ? context.account : accountOf(destinationAccount));
  checkSharingAndPublic(context);
  await requireObjectAccess(context, container, target.object, "write");
  return copyOrMove(
    context,
    { containerName: context.containerName as string, path: context.objectPath as string, account: undefined },
    { container, path: target.object },
    context.request.method === "MOVE" ? "move" : "copy",
  );
}

/** POST: metadata (Swift: replaces user metadata; `?update`: merges), Content-Type, sharing, public. */
export async function postObject(context: PithosContext): Promise<FastifyReply> {
  const container = await loadContainer(context);
  const path = context.objectPath as string;
  await requireObjectAccess(context, container, path, "write");
  const found = await getCurrent(context.service.db, container.id, path);
  if (found === undefined) throw new PithosError("ENOT_FOUND");
  checkSharingAndPublic(context);
  if (isPartialUpdate(context)) {
    const stored = await partialUpdate(context);
    await applySharingAndPublic(context, stored.object);
    return context.reply
      .code(204)
      .headers({ etag: stored.version.etag, "x-object-version": String(stored.version.serial), "last-modified": lastModifiedHeader(stored.version.modifiedAt) })
      .send();
  }
  const parsed = parseMetadataHeaders("object", context.request.headers);
  const hasMetaChange = Object.keys(parsed.set).length > 0 || parsed.remove.length > 0 || header(context, "content-type") !== undefined || header(context, "content-encoding") !== undefined || header(context, "content-disposition") !== undefined || deleteAtMs(context) !== undefined;
  if (hasMetaChange) {
    const mode = context.query.has("update") ? "merge" : "replace";
    const { version } = found;
    const deleteAt = deleteAtMs(context);
    await context.service.commit(
      container,
      path,
      {
        mapName: version.mapName,
        sizeBytes: version.sizeBytes,
        contentHash: version.contentHash,
        etag: version.etag,
        contentType: header(context, "content-type") ?? version.contentType,
        contentEncoding: header(context, "content-encoding") ?? version.contentEncoding,
        contentDisposition: header(context, "content-disposition") ?? version.contentDisposition,
        manifest: header(context, "x-object-manifest") ?? version.manifest,
        sloManifest: version.sloManifest,
        meta: applyMetadata(version.meta, parsed, mode),
        deleteAt: deleteAt === undefined ? version.deleteAt : deleteAt,
      },
      { modifiedBy: context.caller.userUuid },
    );
  }
  await applySharingAndPublic(context, found.object);
  return context.reply.code(202).header("content-type", "text/html; charset=UTF-8").send("<html><h1>Accepted</h1><p>The request is accepted for processing.</p></html>");
}

/** X-Object-Sharing and X-Object-Public: the owner's alone to set (synnefo.md B.5). */
/**
 * Refuses, before anything is stored, a request whose sharing or publishing headers would be
 * refused after: a malformed X-Object-Sharing (400), or either header from a non-owner (403).
 */
function checkSharingAndPublic(context: PithosContext): void {
  const sharing = context.request.headers["x-object-sharing"];
  if (sharing === undefined && header(context, "x-object-public") === undefined) return;
  if (!isOwner(context)) throw new PithosError("EFORBIDDEN", "Only the owner may change sharing or publishing.");
  if (sharing !== undefined) parseObjectSharing(Array.isArray(sharing) ? sharing.join(";") : sharing);
}

async function applySharingAndPublic(context: PithosContext, object: PithosObject): Promise<void> {
  const sharing = context.request.headers["x-object-sharing"];
  const published = header(context, "x-object-public");
  if (sharing === undefined && published === undefined) return;
  checkSharingAndPublic(context);
  if (sharing !== undefined) {
    const parsed = parseObjectSharing(Array.isArray(sharing) ? sharing.join(";") : sharing);
    await setSharing(context.service.db, object.id, parsed.read.length === 0 && parsed.write.length === 0 ? null : parsed);
  }
  if (published !== undefined) {
    const token = await setPublic(context.service.db, object.id, published.toLowerCase() === "true");
    if (token !== null) context.reply.header("x-object-public", publicLink(context, token));
  }
}

export async function deleteObjectRoute(context: PithosContext): Promise<FastifyReply> {
  const container = await loadContainer(context);
  const path = context.objectPath as string;
  await requireObjectAccess(context, container, path, "write");
  if (context.query.get("multipart-manifest") === "delete") return deleteSlo(context, container, path);
  const deleted = await context.service.delete(container, path, context.caller.userUuid);
  if (deleted === undefined) throw new PithosError("ENOT_FOUND");
  return context.reply.code(204).send();
}

/** `DELETE ?multipart-manifest=delete`: the manifest and its segments, reported as bulk delete does. */
async function deleteSlo(context: PithosContext, container: PithosContainer, path: string): Promise<FastifyReply> {
  const found = await getCurrent(context.service.db, container.id, path);
  if (found === undefined) throw new PithosError("ENOT_FOUND");
  let deleted = 0;
  let notFound = 0;
  if (found.version.sloManifest !== null) {
    for (const segment of parseStoredSlo(found.version.sloManifest)) {
      const segmentContainer = await loadContainer(context, segment.container).catch(() => undefined);
      const gone = segmentContainer === undefined ? undefined : await context.service.delete(segmentContainer, segment.path, context.caller.userUuid);
      if (gone === undefined) notFound++;
      else deleted++;
    }
  }
  await context.service.delete(container, path, context.caller.userUuid);
  deleted++;
  const report = { "Response Status": "200 OK", "Response Body": "", "Number Deleted": deleted, "Number Not Found": notFound, Errors: [] };
  return context.reply.code(200).type("application/json; charset=utf-8").send(JSON.stringify(report));
}
