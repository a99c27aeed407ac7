/**
 * /servers/{id}/metadata[/{key}] (Nova's server_metadata.py; images' too, image_metadata.py): POST merges, PUT on the
 * collection replaces, PUT on a key sets that one key and its body must name the same key.
 */
import type { FastifyInstance } from "fastify";
import { ComputeError } from "../errors.ts";
import type { ComputeCaller } from "../model.ts";
import { callerOf, param, type RouteContext } from "./context.ts";
import { badRequest } from "./faults.ts";
import { isJsonObject, readMetadata } from "./input.ts";

function metadataBody(body: unknown, key: "metadata" | "meta"): Record<string, string> {
  if (!isJsonObject(body) || body[key] === undefined) throw badRequest("Malformed request body");
  return readMetadata(body[key], key);
}

/** A resource with Nova's metadata sub-collection (servers, images). */
export interface MetadataResource {
  /** The resource's route, e.g. `/servers/:id`. */
  path: string;
  read(caller: ComputeCaller, id: string): Promise<Record<string, string>>;
  write(caller: ComputeCaller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>>;
  remove(caller: ComputeCaller, id: string, key: string): Promise<void>;
  /** What Nova says when a key is not there (server_metadata.py and image_metadata.py differ). */
  keyNotFound: string;
}

/** `{path}/metadata[/{key}]`: GET, POST merge, PUT replace; a key's GET, PUT and DELETE. */
export function resourceMetadataRoutes(app: FastifyInstance, resource: MetadataResource): void {
  const collection = `${resource.path}/metadata`;
  app.get(collection, async (request) => ({ metadata: await resource.read(callerOf(request), param(request, "id")) }));

  for (const [method, replace] of [["POST", false], ["PUT", true]] as const) {
    app.route({
      method,
      url: collection,
      handler: async (request) => {
        const metadata = metadataBody(request.body, "metadata");
        return { metadata: await resource.write(callerOf(request), param(request, "id"), metadata, replace) };
      },
    });
  }

  app.get(`${collection}/:key`, async (request) => {
    const metadata = await resource.read(callerOf(request), param(request, "id"));
    const key = param(request, "key");
    const value = Object.hasOwn(metadata, key) ? metadata[key] : undefined;
    if (value === undefined) throw new ComputeError("ENOT_FOUND", resource.keyNotFound);
    return { meta: { [key]: value } };
  });

  app.put(`${collection}/:key`, async (request) => {
    const key = param(request, "key");
    const meta = metadataBody(request.body, "meta");
    const entries = Object.entries(meta);
    if (entries.length > 1) throw badRequest("Request body contains too many items");
    const [entry] = entries;
    if (entry === undefined || entry[0] !== key) throw badRequest("Request body and URI mismatch");
    await resource.write(callerOf(request), param(request, "id"), meta, false);
    return { meta };
  });

  app.delete(`${collection}/:key`, async (request, reply) => {
    await resource.remove(callerOf(request), param(request, "id"), param(request, "key"));
    return reply.code(204).send();
  });
}

export function metadataRoutes(app: FastifyInstance, context: RouteContext): void {
  const { compute } = context;
  resourceMetadataRoutes(app, {
    path: "/servers/:id",
    read: async (caller, id) => (await compute.getServer(caller, id)).metadata,
    write: (caller, id, metadata, replace) => compute.setServerMetadata(caller, id, metadata, replace),
    remove: (caller, id, key) => compute.deleteServerMetadata(caller, id, key),
    keyNotFound: "Metadata item was not found",
  });
}
