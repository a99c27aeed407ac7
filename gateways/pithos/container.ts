/**
 * Containers: HEAD (counts, policy, metadata), GET (object listings), PUT (create: 201 new,
 * 202 existing), POST (metadata; with `?update` and a data body, Pithos+'s block upload),
 * DELETE (204, 409 while it holds objects). swift.md 4 and 8, synnefo.md B.2–B.3.
 */
import type { FastifyReply } from "fastify";
import { accessFor, createContainer, deleteContainer, listObjects, updateContainer, type PithosContainer } from "../../db/index.ts";
import { isOwner, loadContainer, requireOwner, type PithosContext } from "./context.ts";
import { readBodyBytes } from "./request-body.ts";
import { PithosError } from "./wire/errors.ts";
import { negotiateListing, parseListingQuery, renderContainerListing, type ContainerListingEntry } from "./wire/listing.ts";
import { applyMetadata, metadataHeaders, parseMetadataHeaders } from "./wire/metadata.ts";
import { checkContainerName } from "./wire/names.ts";
import { lastModifiedHeader, xTimestamp } from "./wire/timestamps.ts";
import { storagePolicyName } from "./wire/info.ts";
import { sloSummary } from "./object-read.ts";

/** One block-upload request carries at most this many bytes (kamaki sends one block per request). */
export const blockUploadBytesMax = 64 * 1024 * 1024;

function containerHeaders(context: PithosContext, container: PithosContainer): Record<string, string> {
  return {
    "x-container-object-count": String(container.objectCount),
    "x-container-bytes-used": String(container.bytesUsed),
    "x-container-block-size": String(context.service.blockSizeBytes),
    "x-container-block-hash": context.service.hashAlgorithm,
    "x-container-policy-versioning": container.versioning,
    "x-container-policy-quota": String(container.quotaBytes ?? 0),
    "x-storage-policy": storagePolicyName,
    "x-timestamp": xTimestamp(container.createdAt),
    "last-modified": lastModifiedHeader(container.modifiedAt),
    "accept-ranges": "bytes",
    vary: "Accept",
    ...metadataHeaders("container", container.meta),
  };
}

/** Pithos+ `until=<unix seconds>`: list the container as it was then (synnefo.md B.5). */
function untilMs(query: URLSearchParams): number | undefined {
  const value = query.get("until");
  if (value === null || value === "") return undefined;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds < 0) throw new PithosError("EBAD_REQUEST", "Invalid until.");
  return Math.floor(seconds * 1000);
}

function policyFromHeaders(context: PithosContext): { versioning?: "auto" | "none"; quotaBytes?: number | null } {
  const versioning = context.request.headers["x-container-policy-versioning"];
  const quota = context.request.headers["x-container-policy-quota"];
  const policy: { versioning?: "auto" | "none"; quotaBytes?: number | null } = {};
  if (typeof versioning === "string" && versioning !== "") {
    if (versioning !== "auto" && versioning !== "none") throw new PithosError("EBAD_REQUEST", "Invalid X-Container-Policy-Versioning: use auto or none.");
    policy.versioning = versioning;
  }
  if (typeof quota === "string" && quota !== "") {
    const bytes = Number(quota);
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new PithosError("EBAD_REQUEST", "Invalid X-Container-Policy-Quota.");
    policy.quotaBytes = bytes === 0 ? null : bytes;
  }
  return policy;
}

async function headContainer(context: PithosContext): Promise<FastifyReply> {
  const container = await loadContainer(context);
  if (!isOwner(context)) requireOwner(context);
  return context.reply.code(204).headers(containerHeaders(context, container)).header("content-type", "text/plain; charset=utf-8").send();
}

async function getContainer(context: PithosContext): Promise<FastifyReply> {
  const container = await loadContainer(context);
  const options = parseListingQuery(context.query);
  const { format, contentType } = negotiateListing(context.query.get("format") ?? undefined, context.request.headers.accept);
  const owner = isOwner(context);
  const until = untilMs(context.query);
  const page = await listObjects(context.service.db, container.id, {
    ...options,
    ...(context.query.has("shared") && { sharedOnly: true }),
    ...(context.query.has("public") && { publicOnly: true }),
    ...(until !== undefined && { untilMs: until }),
  });
  const entries: ContainerListingEntry[] = [];
  for (const entry of page) {
    if (entry.kind === "subdir") {
      entries.push({ subdir: entry.subdir });
      continue;
    }
    // Others see only what is shared with them (Pithos+ lists the allowed objects).
    if (!owner && (await accessFor(context.service.db, context.caller.userUuid, container.account, container.id, entry.path)) === "none") continue;
    const { version, object } = entry;
    // An SLO lists its total size and its segments' etag (swift.md 8), from the stored manifest.
    const slo = version.sloManifest === null ? undefined : sloSummary(version.sloManifest);
    entries.push({
      name: entry.path,
      hash: slo?.manifestEtag ?? version.etag,
      bytes: slo?.sizeBytes ?? version.sizeBytes,
      contentType: version.contentType,
      lastModifiedMs: version.modifiedAt,
      extra: {
        x_object_hash: version.contentHash,
        x_object_uuid: object.uuid,
        x_object_version: version.serial,
        x_object_version_timestamp: (version.modifiedAt / 1000).toFixed(6),
        x_object_modified_by: version.modifiedBy,
        ...(slo !== undefined && { slo_etag: slo.sloEtag }),
      },
    });
  }
  if (!owner && entries.length === 0 && page.length > 0) throw new PithosError("EFORBIDDEN");
  const rendered = renderContainerListing(format, container.name, entries);
  const reply = context.reply.headers(owner ? containerHeaders(context, container) : {});
  if (rendered.status === 204) return reply.code(204).send();
  return reply.code(200).type(contentType).send(rendered.body);
}

async function putContainer(context: PithosContext): Promise<FastifyReply> {
  requireOwner(context);
  const name = checkContainerName(context.containerName as string);
  const meta = applyMetadata({}, parseMetadataHeaders("container", context.request.headers), "merge");
  const { created } = await createContainer(context.service.db, context.account, name, { ...policyFromHeaders(context), meta });
  return context.reply
    .code(created ? 201 : 202)
    .type("text/html; charset=UTF-8")
    .send(created ? "" : "<html><h1>Accepted</h1><p>The request is accepted for processing.</p></html>");
}

async function postContainer(context: PithosContext): Promise<FastifyReply> {
  requireOwner(context);
  const container = await loadContainer(context);
  const contentType = String(context.request.headers["content-type"] ?? "");
  const hasBody = context.request.headers["content-length"] !== undefined && context.request.headers["content-length"] !== "0";
  if (context.query.has("update") && (hasBody || /chunked/i.test(String(context.request.headers["transfer-encoding"] ?? ""))) && contentType.startsWith("application/octet-stream")) {
    return uploadBlocks(context);
  }
  const parsed = parseMetadataHeaders("container", context.request.headers);
  // Swift merges container metadata on POST; Pithos+ without `update` replaces it. Swift's
  // clients rely on merging, and Pithos+ clients always send `update`: merge.
  // applyMetadata already merged and removed: what it returns is the whole new set.
  await updateContainer(context.service.db, container.id, { meta: applyMetadata(container.meta, parsed, "merge"), replaceMeta: true, ...policyFromHeaders(context) });
  return context.reply.code(204).send();
}

/**
 * Pithos+ block upload (synnefo.md B.3): the body is cut into blocks, each stored under its
 * hash; the reply lists the hashes (one per line, or JSON).
 */
async function uploadBlocks(context: PithosContext): Promise<FastifyReply> {
  const engine = context.service.engine;
  const blockSize = context.service.blockSizeBytes;
  const data = await readBodyBytes(context, blockUploadBytesMax);
  const hashes: string[] = [];
  for (let offset = 0; offset < data.length; offset += blockSize) {
    const stored = await engine.storeBlock(data.subarray(offset, Math.min(data.length, offset + blockSize)));
    hashes.push(stored.hash.toString("hex"));
  }
  await engine.objects.barrier();
  const json = context.query.get("format") === "json";
  return context.reply
    .code(202)
    .type(json ? "application/json; charset=utf-8" : "text/plain; charset=utf-8")
    .send(json ? JSON.stringify(hashes) : hashes.map((hash) => `${hash}\n`).join(""));
}

async function deleteContainerRoute(context: PithosContext): Promise<FastifyReply> {
  requireOwner(context);
  await context.service.dropMaps(await deleteContainer(context.service.db, context.account, context.containerName as string));
  return context.reply.code(204).send();
}

export const containerRoutes = {
  HEAD: headContainer,
  GET: getContainer,
  PUT: putContainer,
  POST: postContainer,
  DELETE: deleteContainerRoute,
};
