/**
 * Nova's image proxy (nova/api/openstack/compute/images.py, image_metadata.py and
 * views/images.py): Plankton's images in Nova's shape, under /v2.1:
 *
 *   GET    /images[/detail]              list (summary / full), Nova's filters, limit and marker
 *   GET    /images/{id}                  one image; 404 itemNotFound "Image not found."
 *   DELETE /images/{id}                  204; owner only (403 forbidden)
 *   GET    /images/{id}/metadata         {"metadata": properties}
 *   POST   /images/{id}/metadata         merge;   PUT replaces all (owner only)
 *   GET    /images/{id}/metadata/{key}   {"meta": {key: value}}
 *   PUT    /images/{id}/metadata/{key}   one key; body and URI must name it
 *   DELETE /images/{id}/metadata/{key}   204
 *
 * Nova removed the proxy at 2.36 (404 from then on); we advertise up to 2.10
 * (microversion.ts), so every version we negotiate serves it. Images are made by createImage
 * or the image service: POST /images is not routed (Nova: 405).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ComputeError } from "../errors.ts";
import type { Image, ImageListFilter } from "../model.ts";
import { callerOf, microversionOf, param, type RouteContext } from "./context.ts";
import { resourceMetadataRoutes } from "./metadata.ts";
import { queryNonNegativeInteger, queryTimestamp, queryValue } from "./input.ts";
import { novaTime, type ApiUrls, type Link } from "./views.ts";

/** The first microversion without the proxy APIs (Nova 2.36: images, networks, volumes…). */
export const imageProxyRemovedMinor = 36;
/** Nova's osapi_max_limit: the most images one page holds, and the page without ?limit. */
export const imagesPerPageMax = 1000;

function links(urls: ApiUrls, collection: string, id: string): Link[] {
  const path = `${collection}/${encodeURIComponent(id)}`;
  return [
    { rel: "self", href: `${urls.api}/${path}` },
    { rel: "bookmark", href: `${urls.compute}/${path}` },
  ];
}

/** self, bookmark, and the alternate at the image service (Nova: Glance's URL for it). */
function imageLinks(image: Image, urls: ApiUrls): Array<Link & { type?: string }> {
  return [...links(urls, "images", image.id), { rel: "alternate", type: "application/vnd.openstack.image", href: `${urls.image}/v2/images/${encodeURIComponent(image.id)}` }];
}

export function imageSummary(image: Image, urls: ApiUrls): Record<string, unknown> {
  return { id: image.id, name: image.name, links: imageLinks(image, urls) };
}

/** views/images.py show: the full image; `server` only for createImage's (instance_uuid). */
export function imageDetail(image: Image, urls: ApiUrls): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: image.id,
    name: image.name,
    minRam: image.minRamMiB,
    minDisk: image.minDiskGiB,
    metadata: image.metadata,
    created: novaTime(image.createdAt),
    updated: novaTime(image.updatedAt),
    status: image.status,
    progress: image.progress,
    "OS-EXT-IMG-SIZE:size": image.sizeBytes,
    links: imageLinks(image, urls),
  };
  if (image.serverId !== null) view["server"] = { id: image.serverId, links: links(urls, "servers", image.serverId) };
  const autoDiskConfig = image.metadata["auto_disk_config"];
  if (autoDiskConfig !== undefined) {
    // strutils.bool_from_string, as Nova reads the property.
    view["OS-DCF:diskConfig"] = ["1", "t", "true", "on", "y", "yes"].includes(autoDiskConfig.trim().toLowerCase()) ? "AUTO" : "MANUAL";
  }
  return view;
}

/** images.py _get_filters: Nova's query names, `server` as an id or an href, status lowercased. */
function listFilter(query: unknown): { filter: ImageListFilter; limit: number } {
  const filter: ImageListFilter = {};
  const name = queryValue(query, "name");
  if (name !== undefined) filter.name = name;
  const status = queryValue(query, "status");
  if (status !== undefined) filter.status = status.toLowerCase();
  const changesSince = queryTimestamp(query, "changes-since");
  if (changesSince !== undefined) filter.changesSince = changesSince;
  const server = queryValue(query, "server");
  if (server !== undefined) filter.serverId = server.replace(/\/+$/, "").split("/").pop() ?? server;
  const type = queryValue(query, "type");
  if (type !== undefined) filter.type = type;
  const minRam = queryNonNegativeInteger(query, "minRam");
  if (minRam !== undefined) filter.minRamMiB = minRam;
  const minDisk = queryNonNegativeInteger(query, "minDisk");
  if (minDisk !== undefined) filter.minDiskGiB = minDisk;
  const marker = queryValue(query, "marker");
  if (marker !== undefined) filter.marker = marker;
  const requested = queryNonNegativeInteger(query, "limit");
  const limit = requested === undefined || requested === 0 ? imagesPerPageMax : Math.min(requested, imagesPerPageMax);
  filter.limit = limit;
  return { filter, limit };
}

/** Nova's `images_links` next link when the page is full: the same query, marker = last id. */
function nextLink(request: FastifyRequest, context: RouteContext, path: string, lastId: string, limit: number): Link[] {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(request.query as Record<string, unknown>)) {
    if (key === "marker" || key === "limit") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
  }
  params.set("limit", String(limit));
  params.set("marker", lastId);
  return [{ rel: "next", href: `${context.urls(request).api}${path}?${params.toString()}` }];
}

/** The routes, in their own context so the version check covers only them. */
export async function imageRoutes(app: FastifyInstance, context: RouteContext): Promise<void> {
  await app.register(async (images) => {
    images.addHook("preHandler", async (request) => {
      if (microversionOf(request) >= imageProxyRemovedMinor) throw new ComputeError("ENOT_FOUND", "The resource could not be found.");
    });
    routes(images, context);
  });
}

function routes(app: FastifyInstance, context: RouteContext): void {
  const { compute } = context;

  const list = (detail: boolean) => async (request: FastifyRequest) => {
    const { filter, limit } = listFilter(request.query);
    const images = await compute.listImages(callerOf(request), filter);
    const urls = context.urls(request);
    const body: Record<string, unknown> = { images: images.map((image) => (detail ? imageDetail(image, urls) : imageSummary(image, urls))) };
    const last = images.at(-1);
    if (last !== undefined && images.length >= limit) body["images_links"] = nextLink(request, context, detail ? "/images/detail" : "/images", last.id, limit);
    return body;
  };
  app.get("/images", list(false));
  app.get("/images/detail", list(true));

  app.get("/images/:id", async (request) => ({ image: imageDetail(await compute.getImage(callerOf(request), param(request, "id")), context.urls(request)) }));

  app.delete("/images/:id", async (request, reply) => {
    await compute.deleteImage(callerOf(request), param(request, "id"));
    return reply.code(204).send();
  });

  resourceMetadataRoutes(app, {
    path: "/images/:id",
    read: async (caller, id) => (await compute.getImage(caller, id)).metadata,
    write: (caller, id, metadata, replace) => compute.setImageMetadata(caller, id, metadata, replace),
    remove: (caller, id, key) => compute.deleteImageMetadata(caller, id, key),
    // image_metadata.py show: a bare HTTPNotFound, webob's default sentence.
    keyNotFound: "The resource could not be found.",
  });
}
