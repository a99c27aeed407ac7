/**
 * /servers/{id}/metadata[/{key}] (Nova's server_metadata.py): POST merges, PUT on the
 * collection replaces, PUT on a key sets that one key and its body must name the same key.
 */
import type { FastifyInstance } from "fastify";
import { ComputeError } from "../errors.ts";
import { callerOf, param, type RouteContext } from "./context.ts";
import { badRequest } from "./faults.ts";
import { isJsonObject, readMetadata } from "./input.ts";

function metadataBody(body: unknown, key: "metadata" | "meta"): Record<string, string> {
  if (!isJsonObject(body) || body[key] === undefined) throw badRequest("Malformed request body");
  return readMetadata(body[key], key);
}

export function metadataRoutes(app: FastifyInstance, context: RouteContext): void {
  const { compute } = context;

  app.get("/servers/:id/metadata", async (request) => {
    const server = await compute.getServer(callerOf(request), param(request, "id"));
    return { metadata: server.metadata };
  });

  for (const [method, replace] of [["POST", false], ["PUT", true]] as const) {
    app.route({
      method,
      url: "/servers/:id/metadata",
      handler: async (request) => {
        const metadata = metadataBody(request.body, "metadata");
        return { metadata: await compute.setServerMetadata(callerOf(request), param(request, "id"), metadata, replace) };
      },
    });
  }

  app.get("/servers/:id/metadata/:key", async (request) => {
    const server = await compute.getServer(callerOf(request), param(request, "id"));
    const key = param(request, "key");
    const value = Object.hasOwn(server.metadata, key) ? server.metadata[key] : undefined;
    if (value === undefined) throw new ComputeError("ENOT_FOUND", "Metadata item was not found");
    return { meta: { [key]: value } };
  });

  app.put("/servers/:id/metadata/:key", async (request) => {
    const key = param(request, "key");
    const meta = metadataBody(request.body, "meta");
    const entries = Object.entries(meta);
    if (entries.length > 1) throw badRequest("Request body contains too many items");
    const [entry] = entries;
    if (entry === undefined || entry[0] !== key) throw badRequest("Request body and URI mismatch");
    await compute.setServerMetadata(callerOf(request), param(request, "id"), meta, false);
    return { meta };
  });

  app.delete("/servers/:id/metadata/:key", async (request, reply) => {
    await compute.deleteServerMetadata(callerOf(request), param(request, "id"), param(request, "key"));
    return reply.code(204).send();
  });
}
