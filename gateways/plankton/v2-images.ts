/**
 * Glance v2 images (openstack-clients.md 2.2–2.5), under `/image/v2`:
 *
 *   GET    /images          list: filters, marker/limit, sort; `next` endpoint-relative
 *   POST   /images          create (201): a queued image over an empty file images/<id>
 *   GET    /images/{id}     show; 404 for unknown or not visible (the SDK then lists by name)
 *   PATCH  /images/{id}     JSON patch (v2.1 media type); visibility is the file's sharing
 *   DELETE /images/{id}     204; the file too when Plankton stored it
 *   GET    /schemas/…       image, images, member, members
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { imageListLimitMax, imageSortKeys, isDbError, listImages, updateImage, type ImageListOptions, type ImageSortKey, type ImageVisibilityFilter } from "../../db/index.ts";
import { PlanktonError } from "./errors.ts";
import { isUuid, type PlanktonService } from "./service.ts";
import { withVisibility, type Visibility } from "./sharing.ts";
import { imageHref, imageJson, imageSchema, imagesSchema, memberSchema, membersSchema } from "./v2-format.ts";
import { applyPatch, parseCreateBody, parsePatch } from "./v2-input.ts";

export const jsonPatchMediaType = "application/openstack-images-v2.1-json-patch";

export function callerOf(request: FastifyRequest): string {
  const caller = request.imageCaller;
  if (caller === null) throw new Error("image: a route ran without the token hook's caller");
  return caller;
}

export interface V2Options {
  plankton: PlanktonService;
  /** `{public base}/image`, for Location headers. */
  imageBaseUrl: (request: FastifyRequest) => string;
}

export function v2ImageRoutes(app: FastifyInstance, options: V2Options): void {
  const { plankton } = options;

  app.get("/images", async (request, reply) => {
    const caller = callerOf(request);
    const query = rawQuery(request);
    const listOptions = listOptionsOf(query);
    let page;
    try {
      page = await listImages(plankton.db, caller, listOptions);
    } catch (error) {
      // Glance: a marker the caller cannot see is a bad request, not a missing resource.
      if (isDbError(error, "ENOT_FOUND")) throw new PlanktonError("EBAD_REQUEST", `Could not find marker ${listOptions.marker ?? ""}`);
      throw error;
    }
    query.delete("marker");
    const first = query.size > 0 ? `/v2/images?${query.toString()}` : "/v2/images";
    const body: Record<string, unknown> = { images: page.images.map(imageJson), first, schema: "/v2/schemas/images" };
    if (page.nextMarker !== undefined) {
      query.set("marker", page.nextMarker);
      body["next"] = `/v2/images?${query.toString()}`;
    }
    return reply.type("application/json").send(body);
  });

  app.post("/images", async (request, reply) => {
    const caller = callerOf(request);
    const { fields, visibility } = parseCreateBody(request.body, caller);
    let created = await plankton.create(caller, fields);
    if (visibility !== undefined && visibility !== "private") {
      await plankton.share(created, withVisibility(created.file.object.sharing, visibility));
      created = await plankton.refresh(created.image.uuid);
    }
    return reply
      .code(201)
      .header("location", `${options.imageBaseUrl(request)}${imageHref(created.image.uuid)}`)
      .type("application/json")
      .send(imageJson(created));
  });

  app.get<{ Params: { id: string } }>("/images/:id", async (request, reply) => {
    const found = await plankton.find(request.params.id, callerOf(request));
    return reply.type("application/json").send(imageJson(found));
  });

  app.patch<{ Params: { id: string } }>("/images/:id", async (request, reply) => {
    const caller = callerOf(request);
    const mediaType = (request.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (mediaType !== jsonPatchMediaType) {
      throw new PlanktonError("EUNSUPPORTED_MEDIA_TYPE", `The request media type ${mediaType || "(none)"} is not supported by this server.`, {
        headers: { "accept-patch": jsonPatchMediaType },
      });
    }
    const operations = parsePatch(request.body);
    const entry = await plankton.findOwned(request.params.id, caller);
    let visibility: Visibility | undefined;
    await updateImage(plankton.db, entry.image.uuid, (current) => {
      const patched = applyPatch(current, operations, caller);
      visibility = patched.visibility;
      return patched.fields;
    });
    if (visibility !== undefined) await plankton.share(entry, withVisibility(entry.file.object.sharing, visibility));
    return reply.type("application/json").send(imageJson(await plankton.refresh(entry.image.uuid)));
  });

  app.delete<{ Params: { id: string } }>("/images/:id", async (request, reply) => {
    await plankton.delete(callerOf(request), request.params.id, { keepFile: false });
    return reply.code(204).send();
  });

  const schemas: Record<string, () => Record<string, unknown>> = { image: imageSchema, images: imagesSchema, member: memberSchema, members: membersSchema };
  app.get<{ Params: { name: string } }>("/schemas/:name", async (request, reply) => {
    const schema = schemas[request.params.name];
    if (schema === undefined) throw new PlanktonError("ENOT_FOUND", `No schema ${request.params.name}.`);
    return reply.type("application/json").send(schema());
  });
}

function rawQuery(request: FastifyRequest): URLSearchParams {
  const url = request.raw.url ?? "";
  const start = url.indexOf("?");
  return new URLSearchParams(start < 0 ? "" : url.slice(start + 1));
}

/** Query values arrive as Python literals too (`os_hidden=True`, openstack-clients.md 5.16). */
function booleanParam(name: string, value: string): boolean {
  const lowered = value.toLowerCase();
  if (lowered === "true") return true;
  if (lowered === "false") return false;
  throw new PlanktonError("EBAD_REQUEST", `Invalid value for ${name}: ${value}`);
}

function integerParam(name: string, value: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number)) throw new PlanktonError("EBAD_REQUEST", `${name} param must be a non-negative integer`);
  return number;
}

const visibilityFilters: readonly ImageVisibilityFilter[] = ["all", "public", "private", "shared", "community"];
const statusFilters = ["queued", "saving", "active", "killed", "deleted"] as const;

/** Glance's GET /v2/images query (glance/api/v2/images.py RequestDeserializer.index). */
export function listOptionsOf(query: URLSearchParams): ImageListOptions {
  const options: ImageListOptions = {};
  const limit = query.get("limit");
  if (limit !== null) options.limit = Math.min(Math.max(integerParam("limit", limit), 1), imageListLimitMax);
  const marker = query.get("marker");
  if (marker !== null) {
    if (!isUuid(marker)) throw new PlanktonError("EBAD_REQUEST", `Could not find marker ${marker}`);
    options.marker = marker;
  }
  const visibility = query.get("visibility");
  if (visibility !== null) {
    if (!visibilityFilters.includes(visibility as ImageVisibilityFilter)) throw new PlanktonError("EBAD_REQUEST", `Invalid visibility value: ${visibility}`);
    options.visibility = visibility as ImageVisibilityFilter;
  }
  const status = query.get("status");
  if (status !== null) {
    if (!statusFilters.includes(status as (typeof statusFilters)[number])) throw new PlanktonError("EBAD_REQUEST", `Invalid status value: ${status}`);
    options.status = status as (typeof statusFilters)[number];
  }
  const text = { name: "name", disk_format: "diskFormat", container_format: "containerFormat", owner: "owner" } as const;
  for (const [param, option] of Object.entries(text)) {
    const value = query.get(param);
    if (value !== null) options[option] = value;
  }
  // An owner that is no user uuid owns nothing ("community" lists nothing).
  if (options.owner !== undefined && !isUuid(options.owner)) options.visibility = "community";
  const sizeMin = query.get("size_min");
  if (sizeMin !== null) options.sizeMinBytes = integerParam("size_min", sizeMin);
  const sizeMax = query.get("size_max");
  if (sizeMax !== null) options.sizeMaxBytes = integerParam("size_max", sizeMax);
  const tags = query.getAll("tag").map((tag) => tag.trim());
  if (tags.length > 0) options.tags = tags;
  // Glance hides os_hidden images unless asked for them (`os_hidden=true` lists only those).
  const hidden = query.get("os_hidden");
  options.osHidden = hidden === null ? false : booleanParam("os_hidden", hidden);
  Object.assign(options, sortOf(query));
  return options;
}

/** `sort=key:dir,…` or `sort_key=…&sort_dir=…`; the first key sorts, the image id breaks ties. */
function sortOf(query: URLSearchParams): { sortKey?: ImageSortKey; sortDir?: "asc" | "desc" } {
  const sort = query.get("sort");
  if (sort !== null && (query.has("sort_key") || query.has("sort_dir"))) throw new PlanktonError("EBAD_REQUEST", "Old and new sorting syntax cannot be combined");
  const [key, dir] = sort !== null ? (sort.split(",")[0] ?? "").split(":").map((part) => part.trim()) : [query.get("sort_key")?.trim(), query.get("sort_dir")?.trim()];
  const result: { sortKey?: ImageSortKey; sortDir?: "asc" | "desc" } = {};
  if (key !== undefined && key !== "") {
    if (!imageSortKeys.includes(key as ImageSortKey)) throw new PlanktonError("EBAD_REQUEST", `Invalid sort key: ${key}. It must be one of the following: ${imageSortKeys.join(", ")}.`);
    result.sortKey = key as ImageSortKey;
  }
  if (dir !== undefined && dir !== "") {
    if (dir !== "asc" && dir !== "desc") throw new PlanktonError("EBAD_REQUEST", `Invalid sort direction: ${dir}`);
    result.sortDir = dir;
  }
  return result;
}
