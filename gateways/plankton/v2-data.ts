/**
 * Glance v2 image data, under `/image/v2` (openstack-clients.md 2.2 "Upload", "Download"):
 *
 *   PUT /images/{id}/file   application/octet-stream, Content-Length or chunked, any Accept
 *                           (the SDK sends `Accept: ""`); streamed into the image's file in
 *                           fixed memory; 204. qcow2 is converted to raw first (convert.ts).
 *   GET /images/{id}/file   the file's bytes, `Content-MD5: <hex md5>` when known (the SDK
 *                           verifies it, in hex, not RFC 1864 base64); 204 while no data.
 */
import type { FastifyInstance } from "fastify";
import { PlanktonError } from "./errors.ts";
import { checksumOf, isPlainFile, type PlanktonService } from "./service.ts";
import { callerOf } from "./v2-images.ts";

const octetStream = "application/octet-stream";

export function v2DataRoutes(app: FastifyInstance, plankton: PlanktonService): void {
  app.put<{ Params: { id: string } }>("/images/:id/file", async (request, reply) => {
    const caller = callerOf(request);
    const mediaType = (request.headers["content-type"] ?? octetStream).split(";")[0]!.trim().toLowerCase();
    if (mediaType !== octetStream) throw new PlanktonError("EUNSUPPORTED_MEDIA_TYPE", `The request media type ${mediaType} is not supported by this server.`);
    const chunked = /\bchunked\b/i.test(String(request.headers["transfer-encoding"] ?? ""));
    const declared = request.headers["content-length"];
    // Node has checked the header's syntax; without either framing header the body is empty.
    const lengthBytes = chunked ? undefined : declared === undefined ? 0 : Number(declared);
    await plankton.upload(caller, request.params.id, request.raw, lengthBytes);
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string } }>("/images/:id/file", { exposeHeadRoute: false }, async (request, reply) => {
    const { image, file } = await plankton.find(request.params.id, callerOf(request));
    // Glance answers 204 for an image without data (queued, or being saved).
    if (image.status !== "active") return reply.code(204).send();
    if (!isPlainFile(file.version)) throw new PlanktonError("ECONFLICT", `Image ${image.uuid}'s file has become a large-object manifest.`);
    const sizeBytes = file.version.sizeBytes;
    const md5 = checksumOf(file.version);
    reply.code(200).header("content-type", octetStream).header("content-length", String(sizeBytes));
    if (md5 !== null) reply.header("content-md5", md5);
    if (sizeBytes === 0) return reply.send(Buffer.alloc(0));
    const reader = await plankton.pithos.engine.openFile(file.version.mapName);
    return reply.send(reader.stream(0, sizeBytes));
  });
}
