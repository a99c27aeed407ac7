/**
 * /volumes: list, detail, create, show, update, delete (cinder/api/v3/volumes.py and
 * schemas/volumes.py), and /volumes/{id}/metadata (v3/volume_metadata.py).
 *
 * A listing answers `?name=` with a 200 and an empty list when nothing matches: osc-lib's
 * find_resource falls back from the GET's 404 to that list, and its "No volume with a name or
 * ID of 'x' exists." comes from the empty list.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { volumeListLimitMax, volumeSortKeys, type VolumeSortKey } from "../../../db/index.ts";
import type { CreateVolumeRequest } from "../service.ts";
import { callerOf, param, type RouteContext } from "./context.ts";
import {
  badRequest,
  bodyMember,
  invalidField,
  isJsonObject,
  queryLimit,
  querySort,
  queryValue,
  readBoolean,
  readEitherText,
  readMetadata,
  readSize,
  readUuid,
  rejectUnknownKeys,
  type JsonObject,
} from "./input.ts";
import { availabilityZone, defaultTypeId, defaultTypeName, nextLinks, volumeSummary, volumeView } from "./views.ts";
import { VolumeError } from "../errors.ts";

/** Parses POST /volumes' body (schemas/volumes.py `create`, additionalProperties allowed below 3.53). */
export function parseCreateVolume(body: unknown): CreateVolumeRequest {
  const volume = bodyMember(body, "volume", ["OS-SCH-HNT:scheduler_hints"]);
  if (isJsonObject(body) && body["OS-SCH-HNT:scheduler_hints"] !== undefined && body["OS-SCH-HNT:scheduler_hints"] !== null && !isJsonObject(body["OS-SCH-HNT:scheduler_hints"])) {
    throw invalidField("OS-SCH-HNT:scheduler_hints", body["OS-SCH-HNT:scheduler_hints"], "It is not of type 'object', 'null'");
  }
  const request: CreateVolumeRequest = {};
  const name = readEitherText(volume, "name", "display_name", "volume");
  if (name !== undefined && name !== null) request.name = name;
  const description = readEitherText(volume, "description", "display_description", "volume");
  if (description !== undefined) request.description = description;
  const size = readSize(volume, "size", "volume.size", { nullable: true });
  if (size !== undefined) request.sizeGib = size;
  const metadata = readMetadata(volume["metadata"], "volume.metadata", { nullable: true });
  if (metadata !== undefined) request.metadata = metadata;
  const snapshotId = readUuid(volume, "snapshot_id", "volume.snapshot_id");
  if (snapshotId !== undefined) request.snapshotId = snapshotId;
  const sourceVolid = readUuid(volume, "source_volid", "volume.source_volid");
  if (sourceVolid !== undefined) request.sourceVolid = sourceVolid;
  for (const key of ["imageRef", "image_id"]) {
    const value = volume[key];
    if (value === undefined || value === null || value === "") continue;
    if (typeof value !== "string" || value.length > 255) throw invalidField(`volume.${key}`, value, "It is not a string of at most 255 characters");
    // An href's last segment is the id, as Cinder's common.get_id_from_href reads it.
    request.imageRef ??= value.replace(/\/+$/, "").split("/").pop() ?? value;
  }
  checkVolumeType(volume["volume_type"]);
  const zone = volume["availability_zone"];
  if (zone !== undefined && zone !== null && zone !== availabilityZone) {
    throw new VolumeError("EBAD_REQUEST", `Invalid input received: Availability zone '${typeof zone === "string" ? zone.slice(0, 80) : String(zone)}' is invalid.`);
  }
  if (readBoolean(volume, "multiattach", "volume.multiattach", { nullable: true }) === true) {
    throw badRequest("Invalid input received: multiattach volumes are not supported: a volume attaches to one server.");
  }
  for (const key of ["consistencygroup_id", "backup_id", "group_id"]) {
    if (volume[key] !== undefined && volume[key] !== null) throw badRequest(`Invalid input received: ${key} is not supported here (no groups or backups).`);
  }
  return request;
}

/** Only the one type exists (types.ts): its name, its id, or nothing. */
function checkVolumeType(value: unknown): void {
  if (value === undefined || value === null || value === "" || value === defaultTypeName || value === defaultTypeId) return;
  if (typeof value !== "string" || [...value].length > 255) throw invalidField("volume.volume_type", value, "It is not a string of at most 255 characters");
  throw new VolumeError("ENOT_FOUND", `Volume type with name ${value} could not be found.`);
}

const updateKeys = new Set(["name", "description", "display_name", "display_description", "metadata"]);

/** Parses PUT /volumes/{id}'s body (schemas/volumes.py `update`). */
export function parseUpdateVolume(body: unknown): { name?: string; description?: string | null; metadata?: Record<string, string> } {
  const volume = bodyMember(body, "volume");
  rejectUnknownKeys(volume, updateKeys, "volume");
  const patch: { name?: string; description?: string | null; metadata?: Record<string, string> } = {};
  const name = readEitherText(volume, "name", "display_name", "volume");
  if (name !== undefined) patch.name = name ?? "";
  const description = readEitherText(volume, "description", "display_description", "volume");
  if (description !== undefined) patch.description = description;
  const metadata = readMetadata(volume["metadata"], "volume.metadata");
  if (metadata !== undefined) patch.metadata = metadata;
  return patch;
}

export interface ListQuery {
  name?: string;
  status?: string;
  marker?: string;
  limit: number;
  sortKey?: VolumeSortKey;
  sortDir?: "asc" | "desc";
}

/** The listing's filters and paging (cinder/api/common.py; unknown filters are ignored below 3.31). */
export function parseListQuery(query: unknown, sortKeys: readonly string[]): ListQuery {
  const out: ListQuery = { limit: queryLimit(query, volumeListLimitMax) ?? volumeListLimitMax };
  const name = queryValue(query, "name") ?? queryValue(query, "display_name");
  if (name !== undefined) out.name = name;
  const status = queryValue(query, "status");
  if (status !== undefined) out.status = status;
  const marker = queryValue(query, "marker");
  if (marker !== undefined) out.marker = marker;
  const sort = querySort(query);
  if (sort !== undefined) {
    const key = sort.key === "display_name" ? "name" : sort.key;
    if (!sortKeys.includes(key)) throw badRequest(`Invalid input received: Invalid sort key ${sort.key.slice(0, 80)}`);
    out.sortKey = key as VolumeSortKey;
    out.sortDir = sort.dir;
  }
  return out;
}

export function volumeRoutes(app: FastifyInstance, context: RouteContext): void {
  const { volumes } = context;

  const list = async (request: FastifyRequest, detail: boolean) => {
    const query = parseListQuery(request.query, volumeSortKeys);
    const page = await volumes.listVolumes(callerOf(request), query);
    const urls = context.urls(request);
    const links = nextLinks(urls, detail ? "volumes/detail" : "volumes", request.query as Record<string, unknown>, page.next);
    return {
      volumes: page.volumes.map((volume) => (detail ? volumeView(volume, urls) : volumeSummary(volume, urls))),
      ...(links !== undefined && { volumes_links: links }),
    };
  };
  app.get("/volumes", (request) => list(request, false));
  app.get("/volumes/detail", (request) => list(request, true));

  app.post("/volumes", async (request, reply) => {
    const volume = await volumes.createVolume(callerOf(request), parseCreateVolume(request.body));
    return reply.code(202).send({ volume: volumeView(volume, context.urls(request)) });
  });

  app.get("/volumes/:id", async (request) => ({ volume: volumeView(await volumes.getVolume(callerOf(request), param(request, "id")), context.urls(request)) }));

  app.put("/volumes/:id", async (request) => {
    const { metadata, ...patch } = parseUpdateVolume(request.body);
    const caller = callerOf(request);
    const id = param(request, "id");
    if (metadata !== undefined) await volumes.changeMetadata(caller, id, { set: metadata, replace: true });
    return { volume: volumeView(await volumes.updateVolume(caller, id, patch), context.urls(request)) };
  });

  app.delete("/volumes/:id", async (request, reply) => {
    const cascade = readBoolean({ cascade: queryValue(request.query, "cascade") }, "cascade", "cascade") === true;
    await volumes.deleteVolume(callerOf(request), param(request, "id"), { cascade });
    return reply.code(202).send();
  });

  metadataRoutes(app, context);
}

/** Reads `{"metadata": {…}}` (or `{"meta": {…}}` for one item). */
function metadataBody(body: unknown, key: "metadata" | "meta"): Record<string, string> {
  if (!isJsonObject(body)) throw badRequest("Malformed request body");
  rejectUnknownKeys(body, new Set([key]), "");
  if (body[key] === undefined) throw badRequest(`Invalid input for field/attribute ${key}. Value: None. '${key}' is a required property`);
  return readMetadata(body[key], key)!;
}

function metadataRoutes(app: FastifyInstance, { volumes }: RouteContext): void {
  app.get("/volumes/:id/metadata", async (request) => ({ metadata: await volumes.getMetadata(callerOf(request), param(request, "id")) }));

  // POST merges and answers with everything; PUT replaces the whole set and answers with it.
  app.post("/volumes/:id/metadata", async (request) => ({
    metadata: await volumes.changeMetadata(callerOf(request), param(request, "id"), { set: metadataBody(request.body, "metadata") }),
  }));
  app.put("/volumes/:id/metadata", async (request) => ({
    metadata: await volumes.changeMetadata(callerOf(request), param(request, "id"), { set: metadataBody(request.body, "metadata"), replace: true }),
  }));

  app.get("/volumes/:id/metadata/:key", async (request) => {
    const key = param(request, "key");
    const metadata = await volumes.getMetadata(callerOf(request), param(request, "id"));
    const value = metadata[key];
    if (value === undefined) throw new VolumeError("ENOT_FOUND", "Metadata item was not found");
    return { meta: { [key]: value } };
  });

  app.put("/volumes/:id/metadata/:key", async (request) => {
    const key = param(request, "key");
    const meta: JsonObject = metadataBody(request.body, "meta");
    if (Object.keys(meta).length > 1) throw badRequest("Request body contains too many items.");
    if (!(key in meta)) throw badRequest("Request body and URI mismatch");
    const metadata = await volumes.changeMetadata(callerOf(request), param(request, "id"), { set: meta as Record<string, string> });
    return { meta: { [key]: metadata[key] } };
  });

  app.delete("/volumes/:id/metadata/:key", async (request, reply) => {
    await volumes.changeMetadata(callerOf(request), param(request, "id"), { unset: [param(request, "key")] });
    return reply.code(200).send();
  });
}
