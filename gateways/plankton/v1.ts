/**
 * Plankton v1 (synnefo.md C), under `/image/v1` and `/image/v1.0`: Glance v1 as Synnefo
 * spoke it, registering files already in Pithos+.
 *
 *   POST   /images                      register X-Image-Meta-Location (no data moved); 200 + headers
 *   GET    /images[/detail]             a JSON list (not wrapped) of what the caller sees
 *   HEAD   /images/{id}                 the image as X-Image-Meta-* headers
 *   GET    /images/{id}                 the headers and the data
 *   PUT    /images/{id}                 update the fields given (properties merged)
 *   DELETE /images/{id}                 unregister (the file stays); 204
 *   GET    /images/{id}/members         {"members": [{"member_id", "can_share": false}]}
 *   PUT    /images/{id}/members         replace: {"memberships": [{"member_id": …}]}; 204
 *   PUT    /images/{id}/members/{uuid}  add; 204        DELETE: remove; 204
 *   GET    /shared-images/{uuid}        the caller's images that user sees
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { listImages, updateImage, type ImageListOptions, type ImageSortKey, type ImageWithFile } from "../../db/index.ts";
import { registerFileAsImage } from "./api.ts";
import { PlanktonError } from "./errors.ts";
import { checksumOf, isPlainFile, isUuid, type PlanktonService } from "./service.ts";
import { membersOf, visibilityOf, withMember, withMembers, withoutMember, withVisibility } from "./sharing.ts";
import { diskFormats, containerFormats } from "./v2-format.ts";
import { callerOf } from "./v2-images.ts";
import { paramsOf, parseLocation, statusFilterOf, v1Detail, v1Headers, v1Summary, type V1Params } from "./v1-wire.ts";

/** What one v1 listing returns at most: Plankton listed everything; we page internally to this. */
export const v1ListingImagesMax = 10_000;

const addFields = new Set(["name", "id", "store", "disk_format", "container_format", "size", "checksum", "is_public", "owner", "location"]);
const updateFields = new Set(["name", "disk_format", "container_format", "is_public", "owner", "status"]);
const sortKeys = new Set(["id", "name", "status", "size", "disk_format", "container_format", "created_at", "updated_at"]);

function checkFormats(fields: Record<string, string>): void {
  if (fields["disk_format"] !== undefined && !(diskFormats as readonly string[]).includes(fields["disk_format"])) {
    throw new PlanktonError("EBAD_REQUEST", `Invalid disk format '${fields["disk_format"]}'`);
  }
  if (fields["container_format"] !== undefined && !(containerFormats as readonly string[]).includes(fields["container_format"])) {
    throw new PlanktonError("EBAD_REQUEST", `Invalid container format '${fields["container_format"]}'`);
  }
}

function sendHeaders(reply: FastifyReply, entry: ImageWithFile): FastifyReply {
  return reply.code(200).headers(v1Headers(entry));
}

export function v1Routes(app: FastifyInstance, plankton: PlanktonService): void {
  app.post("/images", async (request, reply) => {
    const caller = callerOf(request);
    const { fields, properties } = paramsOf(request);
    if (!Object.keys(fields).every((key) => addFields.has(key))) throw new PlanktonError("EBAD_REQUEST", "Invalid parameters");
    if (fields["id"] !== undefined) throw new PlanktonError("EBAD_REQUEST", "Setting the image ID is not supported");
    const name = fields["name"];
    if (name === undefined) throw new PlanktonError("EBAD_REQUEST", "Image 'name' parameter is required");
    if (name.length === 0) throw new PlanktonError("EBAD_REQUEST", "Invalid image name");
    const location = fields["location"];
    if (location === undefined) throw new PlanktonError("EBAD_REQUEST", "'location' parameter is required");
    const { account, container, path } = parseLocation(location);
    if (fields["store"] !== undefined && fields["store"] !== "pithos") throw new PlanktonError("EBAD_REQUEST", `Invalid store type '${fields["store"]}'`);
    checkFormats(fields);
    if (account !== caller || (fields["owner"] !== undefined && fields["owner"] !== caller)) {
      throw new PlanktonError("EFORBIDDEN", "Only the file's owner may register it as an image.");
    }
    let expectSizeBytes: number | undefined;
    if (fields["size"] !== undefined) {
      expectSizeBytes = Number(fields["size"]);
      if (!/^\d+$/.test(fields["size"]) || !Number.isSafeInteger(expectSizeBytes)) throw new PlanktonError("EBAD_REQUEST", "Invalid size");
    }
    const registered = await registerFileAsImage(plankton.pithos, plankton.db, {
      account,
      container,
      path,
      name,
      diskFormat: fields["disk_format"] ?? "diskdump",
      containerFormat: fields["container_format"] ?? "bare",
      properties,
      replaceExisting: true,
      ...(fields["is_public"] !== undefined && { isPublic: fields["is_public"].toLowerCase() === "true" }),
      ...(expectSizeBytes !== undefined && { expectSizeBytes }),
      ...(fields["checksum"] !== undefined && { expectChecksum: fields["checksum"] }),
    });
    return sendHeaders(reply, registered).send();
  });

  const list = (detail: boolean) => async (request: FastifyRequest, reply: FastifyReply) => {
    const options = v1ListOptions(request.query as Record<string, string | undefined>);
    const images = await listAll(plankton, callerOf(request), options);
    return reply.type("application/json").send(images.map(detail ? v1Detail : v1Summary));
  };
  app.get("/images", list(false));
  app.get("/images/detail", list(true));

  app.head<{ Params: { id: string } }>("/images/:id", async (request, reply) => {
    return sendHeaders(reply, await plankton.find(request.params.id, callerOf(request))).send();
  });

  app.get<{ Params: { id: string } }>("/images/:id", { exposeHeadRoute: false }, async (request, reply) => {
    const entry = await plankton.find(request.params.id, callerOf(request));
    sendHeaders(reply, entry).header("content-type", "application/octet-stream");
    const { version } = entry.file;
    if (entry.image.status !== "active" || !isPlainFile(version) || version.sizeBytes === 0) return reply.header("content-length", "0").send(Buffer.alloc(0));
    const md5 = checksumOf(version);
    if (md5 !== null) reply.header("etag", md5);
    const reader = await plankton.pithos.engine.openFile(version.mapName);
    return reply.header("content-length", String(version.sizeBytes)).send(reader.stream(0, version.sizeBytes));
  });

  app.put<{ Params: { id: string } }>("/images/:id", async (request, reply) => {
    const caller = callerOf(request);
    const entry = await plankton.findOwned(request.params.id, caller);
    const params = paramsOf(request);
    await updateV1(plankton, entry, params, caller);
    return sendHeaders(reply, await plankton.refresh(entry.image.uuid)).send();
  });

  app.delete<{ Params: { id: string } }>("/images/:id", async (request, reply) => {
    // Unregister: the file was the user's before it was an image, and stays.
    await plankton.delete(callerOf(request), request.params.id, { keepFile: true });
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string } }>("/images/:id/members", async (request, reply) => {
    const caller = callerOf(request);
    const entry = await plankton.find(request.params.id, caller);
    const members = membersOf(entry.file.object.sharing).filter((member) => entry.image.owner === caller || member === caller);
    return reply.type("application/json").send({ members: members.map((member) => ({ member_id: member, can_share: false })) });
  });

  app.put<{ Params: { id: string } }>("/images/:id/members", async (request, reply) => {
    const entry = await plankton.findOwned(request.params.id, callerOf(request));
    const memberships = (request.body as { memberships?: unknown } | undefined)?.memberships;
    if (!Array.isArray(memberships)) throw new PlanktonError("EBAD_REQUEST", "Invalid 'memberships' field");
    const members = memberships.map((membership: unknown) => {
      const member = (membership as { member_id?: unknown } | null)?.member_id;
      if (typeof member !== "string" || !isUuid(member)) throw new PlanktonError("EBAD_REQUEST", "Invalid 'memberships' field");
      return member;
    });
    await plankton.share(entry, withMembers(entry.file.object.sharing, members));
    return reply.code(204).send();
  });

  app.put<{ Params: { id: string; member: string } }>("/images/:id/members/:member", async (request, reply) => {
    const entry = await plankton.findOwned(request.params.id, callerOf(request));
    if (!isUuid(request.params.member)) throw new PlanktonError("EBAD_REQUEST", "A member is a user id (a UUID).");
    await plankton.share(entry, withMember(entry.file.object.sharing, request.params.member));
    return reply.code(204).send();
  });

  app.delete<{ Params: { id: string; member: string } }>("/images/:id/members/:member", async (request, reply) => {
    const entry = await plankton.findOwned(request.params.id, callerOf(request));
    // Plankton: removing someone who had no access is not an error.
    if (membersOf(entry.file.object.sharing).includes(request.params.member)) {
      await plankton.share(entry, withoutMember(entry.file.object.sharing, request.params.member));
    }
    return reply.code(204).send();
  });

  app.get<{ Params: { member: string } }>("/shared-images/:member", async (request, reply) => {
    const { member } = request.params;
    const images = isUuid(member) ? await listAll(plankton, member, { owner: callerOf(request), visibility: "all" }) : [];
    return reply.type("application/json").send({ shared_images: images.map(({ image }) => ({ image_id: image.uuid, can_share: false })) });
  });
}

/** PUT /images/{id}: the fields given, properties merged, is_public toggles `*`. */
async function updateV1(plankton: PlanktonService, entry: ImageWithFile, { fields, properties }: V1Params, caller: string): Promise<void> {
  if (!Object.keys(fields).every((key) => updateFields.has(key))) throw new PlanktonError("EBAD_REQUEST", "Invalid metadata");
  checkFormats(fields);
  if (fields["owner"] !== undefined && fields["owner"] !== caller) throw new PlanktonError("EFORBIDDEN", "An image cannot be given to another user.");
  if (fields["status"] !== undefined && statusFilterOf(fields["status"]) !== entry.image.status) {
    throw new PlanktonError("EBAD_REQUEST", "An image's status follows its data; it cannot be set.");
  }
  await updateImage(plankton.db, entry.image.uuid, (current) => ({
    ...(fields["name"] !== undefined && { name: fields["name"] }),
    ...(fields["disk_format"] !== undefined && { diskFormat: fields["disk_format"] }),
    ...(fields["container_format"] !== undefined && { containerFormat: fields["container_format"] }),
    properties: { ...current.properties, ...properties },
  }));
  const isPublic = fields["is_public"];
  if (isPublic !== undefined && (isPublic.toLowerCase() === "true") !== (visibilityOf(entry.file.object.sharing) === "public")) {
    await plankton.share(entry, withVisibility(entry.file.object.sharing, isPublic.toLowerCase() === "true" ? "public" : "shared"));
  }
}

/** Plankton's listing query (views.py FILTERS, PARAMS; default created_at desc). */
function v1ListOptions(query: Record<string, string | undefined>): ImageListOptions {
  const options: ImageListOptions = { sortKey: "created_at", sortDir: "desc" };
  if (query["sort_key"] !== undefined) {
    if (!sortKeys.has(query["sort_key"])) throw new PlanktonError("EBAD_REQUEST", "Invalid 'sort_key'");
    options.sortKey = query["sort_key"] as ImageSortKey;
  }
  if (query["sort_dir"] !== undefined) {
    if (query["sort_dir"] !== "asc" && query["sort_dir"] !== "desc") throw new PlanktonError("EBAD_REQUEST", "Invalid 'sort_dir'");
    options.sortDir = query["sort_dir"];
  }
  for (const [param, option] of [["size_min", "sizeMinBytes"], ["size_max", "sizeMaxBytes"]] as const) {
    const value = query[param];
    if (value === undefined) continue;
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new PlanktonError("EBAD_REQUEST", "Malformed request.");
    options[option] = Number(value);
  }
  if (query["name"] !== undefined) options.name = query["name"];
  if (query["disk_format"] !== undefined) options.diskFormat = query["disk_format"];
  if (query["container_format"] !== undefined) options.containerFormat = query["container_format"];
  if (query["status"] !== undefined) {
    const status = statusFilterOf(query["status"]);
    // A status we never have matches nothing.
    if (status === undefined) options.visibility = "community";
    else options.status = status;
  }
  return options;
}

/** Every page of a listing, up to v1ListingImagesMax images. */
async function listAll(plankton: PlanktonService, viewer: string, options: ImageListOptions): Promise<ImageWithFile[]> {
  const images: ImageWithFile[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await listImages(plankton.db, viewer, { ...options, limit: 1000, ...(marker !== undefined && { marker }) });
    images.push(...page.images);
    if (page.nextMarker === undefined || images.length >= v1ListingImagesMax) return images.slice(0, v1ListingImagesMax);
    marker = page.nextMarker;
  }
}
