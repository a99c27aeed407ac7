/**
 * The image service as one encapsulated fastify plugin, mounted at `/image`:
 *
 *   GET /, /versions         version document (300 / 200), no token, absolute hrefs (2.1)
 *   GET /v2/versions         the same, where glanceclient looks for it (catalog URL + /versions)
 *   /v2/…                    Glance v2: v2-images.ts, v2-data.ts, v2-members.ts (also at
 *                            /v2/v2/…, where glanceclient looks with our versioned catalog URL)
 *   /v1/…, /v1.0/…           Plankton v1: v1.ts
 *
 * Tokens are checked on every /v1 and /v2 route by the TokenValidator serve gives the object
 * store too (in-process from the database, or identity over HTTP when deployed apart); errors
 * are Glance's JSON (errors.ts), 401 included. Bodies: JSON and the v2.1 JSON-patch media
 * type are parsed up to jsonBodyBytesMax; anything else (image data) is left unread for the
 * handler to stream, so an upload of any size takes fixed memory.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { TokenValidator } from "../../identity/index.ts";
import { publicBaseUrl } from "../../identity/wire.ts";
import type { PithosService } from "../pithos/index.ts";
import { PlanktonError, sendPlanktonError } from "./errors.ts";
import { PlanktonService } from "./service.ts";
import { v1Routes } from "./v1.ts";
import { v2DataRoutes } from "./v2-data.ts";
import { versionsDocument } from "./v2-format.ts";
import { jsonPatchMediaType, v2ImageRoutes } from "./v2-images.ts";
import { v2MemberRoutes } from "./v2-members.ts";

/**
 * JSON bodies we parse: an image create or patch is a few hundred bytes; 128 properties of
 * 8 KiB each, or a v1 member list of a thousand uuids, stay far below 1 MiB.
 */
export const jsonBodyBytesMax = 1024 * 1024;

export interface PlanktonPluginOptions {
  /** The object store the images live in. */
  service: PithosService;
  /** Who a token belongs to (identity's localTokenValidator or RemoteTokenValidator). */
  tokens: TokenValidator;
  /** Public base URL for version documents and Location headers; by default the request's own. */
  publicUrl?: string;
  /** Where qcow2 uploads are converted (the OS's temp folder by default). */
  tempDir?: string;
  qemuImg?: string;
}

export async function planktonPlugin(app: FastifyInstance, options: PlanktonPluginOptions): Promise<void> {
  const plankton = new PlanktonService({
    pithos: options.service,
    ...(options.tempDir !== undefined && { tempDir: options.tempDir }),
    ...(options.qemuImg !== undefined && { qemuImg: options.qemuImg }),
  });
  const mountPath = app.prefix; // `/image`
  const imageBaseUrl = (request: FastifyRequest) => `${publicBaseUrl(request, options.publicUrl)}${mountPath}`;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(["application/json", jsonPatchMediaType], { parseAs: "string", bodyLimit: jsonBodyBytesMax }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === "") return done(null, undefined);
    try {
      done(null, JSON.parse(text) as unknown);
    } catch {
      done(new PlanktonError("EBAD_REQUEST", "Malformed JSON in request body."), undefined);
    }
  });
  // Image data (and glanceclient's Content-Type on bodiless requests): left for the handler.
  app.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));
  app.setErrorHandler(sendPlanktonError);
  app.setNotFoundHandler((request, reply) => sendPlanktonError(new PlanktonError("ENOT_FOUND"), request, reply));

  // Glance answers its root with 300 Multiple Choices, /versions with 200 (openstack-clients.md 2.1).
  app.get("/", async (request, reply) => reply.code(300).type("application/json").send(versionsDocument(imageBaseUrl(request))));
  app.get("/versions", async (request, reply) => reply.type("application/json").send(versionsDocument(imageBaseUrl(request))));
  // glanceclient asks its (versioned) catalog endpoint: `{catalog url}/versions`.
  app.get("/v2/versions", async (request, reply) => reply.type("application/json").send(versionsDocument(imageBaseUrl(request))));

  // `/v2/v2`: glanceclient appends `/v2/…` to the catalog URL, which is `{base}/image/v2`
  // (identity/catalog.ts, so the SDK skips discovery): it asks `/image/v2/v2/schemas/image`.
  for (const prefix of ["/v2", "/v2/v2"]) {
    await app.register(
      async (v2) => {
        requireImageToken(v2, options.tokens);
        v2ImageRoutes(v2, { plankton, imageBaseUrl });
        v2DataRoutes(v2, plankton);
        v2MemberRoutes(v2, plankton);
      },
      { prefix },
    );
  }
  for (const prefix of ["/v1", "/v1.0"]) {
    await app.register(
      async (v1) => {
        requireImageToken(v1, options.tokens);
        v1Routes(v1, plankton);
      },
      { prefix },
    );
  }
}

declare module "fastify" {
  interface FastifyRequest {
    /** The user uuid of the token's owner on the image service's /v1 and /v2 routes. */
    imageCaller: string | null;
  }
}

/** X-Auth-Token validated before the route runs; a missing or bad token is a 401 (errors.ts). */
function requireImageToken(app: FastifyInstance, tokens: TokenValidator): void {
  if (!app.hasRequestDecorator("imageCaller")) app.decorateRequest("imageCaller", null);
  app.addHook("onRequest", async (request) => {
    const header = request.headers["x-auth-token"];
    const secret = typeof header === "string" && header !== "" ? header : undefined;
    const token = secret === undefined ? undefined : await tokens.validate(secret);
    if (token === undefined) {
      request.log.info({ tokenGiven: secret !== undefined }, "image: token refused");
      throw new PlanktonError("EUNAUTHORIZED");
    }
    request.imageCaller = token.userUuid;
  });
}
