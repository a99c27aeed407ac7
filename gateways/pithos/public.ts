/**
 * Public links (synnefo.md B.2, B.5): `GET|HEAD /public/{token}` serves a published object's
 * current data to anyone, with only Content-*, ETag and Last-Modified (no X-Object-* headers,
 * nothing about its owner). A token names exactly one object: it grants nothing else.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { getByPublicToken, getContainerById } from "../../db/index.ts";
import type { PithosContext } from "./context.ts";
import { sendPithosError } from "./http-errors.ts";
import { segmentStream, viewOf } from "./object-read.ts";
import type { PithosService } from "./service.ts";
import { evaluateConditions } from "./wire/conditionals.ts";
import { PithosError, rangeNotSatisfiable } from "./wire/errors.ts";
import { contentRange, parseRange } from "./wire/ranges.ts";
import { lastModifiedHeader, lastModifiedSeconds } from "./wire/timestamps.ts";

/** Public tokens are 16 characters of [0-9a-zA-Z]; anything else is not looked up. */
const publicTokenPattern = /^[0-9A-Za-z]{1,64}$/;

export async function publicPlugin(app: FastifyInstance, options: { service: PithosService }): Promise<void> {
  app.setErrorHandler(sendPithosError);
  app.setNotFoundHandler((request, reply) => sendPithosError(new PithosError("ENOT_FOUND"), request, reply));
  const handler = async (request: FastifyRequest<{ Params: { token: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const { token } = request.params;
    if (!publicTokenPattern.test(token)) throw new PithosError("ENOT_FOUND");
    const found = await getByPublicToken(options.service.db, token);
    if (found === undefined) throw new PithosError("ENOT_FOUND");
    // Segments of a public large object are read as its owner would read them.
    const context = {
      request,
      reply,
      service: options.service,
      caller: { userUuid: found.account, userName: "" },
      account: found.account,
      containerName: found.containerName,
      objectPath: found.path,
      query: new URLSearchParams(),
      publicUrl: undefined,
    } as PithosContext;
    const container = await getContainerById(options.service.db, found.containerId);
    if (container === undefined) throw new PithosError("ENOT_FOUND");
    const view = await viewOf(context, container, found.object, found.version);
    const lastModifiedMs = lastModifiedSeconds(view.version.modifiedAt) * 1000;
    reply.headers({
      "content-type": view.version.contentType,
      etag: view.etagQuoted ? `"${view.etag}"` : view.etag,
      "last-modified": lastModifiedHeader(view.version.modifiedAt),
      "accept-ranges": "bytes",
      ...(view.version.contentEncoding !== null && { "content-encoding": view.version.contentEncoding }),
      ...(view.version.contentDisposition !== null && { "content-disposition": view.version.contentDisposition }),
    });
    const isHead = request.method === "HEAD";
    const condition = evaluateConditions(isHead ? "HEAD" : "GET", request.headers, { etag: view.etag, lastModifiedMs });
    if (condition === "not-modified") return reply.code(304).header("content-length", "0").send();
    if (condition === "precondition-failed") throw new PithosError("EPRECONDITION_FAILED");
    if (isHead) return reply.code(200).header("content-length", String(view.sizeBytes)).send();
    const range = parseRange(request.headers.range, view.sizeBytes);
    if (range.kind === "unsatisfiable") throw rangeNotSatisfiable(view.sizeBytes);
    if (range.kind === "ranges" && range.ranges.length === 1) {
      const { start, end } = range.ranges[0]!;
      reply.header("content-range", contentRange(start, end, view.sizeBytes)).header("content-length", String(end - start + 1));
      return reply.code(206).send(segmentStream(context, view.segments, start, end + 1));
    }
    // Several ranges on a public link: the whole object (a client may always get more than it asked).
    reply.header("content-length", String(view.sizeBytes));
    return reply.code(200).send(segmentStream(context, view.segments, 0, view.sizeBytes));
  };
  app.route({ method: ["GET", "HEAD"], url: "/:token", exposeHeadRoute: false, handler });
}
