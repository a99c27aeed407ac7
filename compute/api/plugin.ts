/**
 * The compute service's HTTP API as one encapsulated fastify plugin, mounted at `/compute`
 * (catalog URL `{base}/compute/v2.1`, identity/catalog.ts):
 *
 *   GET /, /v2.1[/]         version documents, no token (versions.ts)
 *   /v2.1/servers…          servers.ts, metadata.ts, actions.ts, volume-attachments.ts
 *   /v2.1/flavors…          flavors.ts
 *   /v2.1/os-keypairs…      keypairs.ts
 *   /v2.1/images…           images.ts: Nova's image proxy, a view of Plankton
 *   /v2.1/limits            absolute limits from identity's quotas
 *   /console/<token>        the VNC websocket (../console-proxy.ts), when a resolver is given
 *
 * Not served: networks, server groups. Unknown routes are Nova's 404
 * itemNotFound.
 *
 * Every /v2.1 route needs X-Auth-Token (checked in-process, identity/require-token.ts) and
 * negotiates a microversion (microversion.ts). Every error, 401 included, is Nova's fault
 * body (faults.ts). Bodies are JSON whatever their Content-Type says, up to
 * requestBodyBytesMax.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { User } from "../../db/index.ts";
import { authenticate, type IdentityService } from "../../identity/index.ts";
import { publicBaseUrl } from "../../identity/wire.ts";
import { consoleProxyPlugin, type ConsoleTokenResolver } from "../console-proxy.ts";
import { ComputeError } from "../errors.ts";
import type { ComputeApi } from "../model.ts";
import { actionRoutes } from "./actions.ts";
import { callerOf, type RouteContext } from "./context.ts";
import { routeNotFound, sendNovaFault } from "./faults.ts";
import { flavorRoutes } from "./flavors.ts";
import { imageRoutes } from "./images.ts";
import { requestBodyBytesMax } from "./input.ts";
import { keypairRoutes } from "./keypairs.ts";
import { metadataRoutes } from "./metadata.ts";
import { echoMicroversion, microversionMinMinor, negotiateMicroversion } from "./microversion.ts";
import { serverRoutes } from "./servers.ts";
import { versionDocument, versionsDocument } from "./versions.ts";
import { volumeAttachmentRoutes } from "./volume-attachments.ts";
import type { ApiUrls } from "./views.ts";

export interface ComputePluginOptions {
  compute: ComputeApi;
  /** Whose token it is (authenticate()). */
  identity: IdentityService;
  /** Public base URL for links, Location headers and console URLs; by default the request's own. */
  publicUrl?: string;
  /** Resolves console tokens for the websocket; without it /console is not served. */
  consoleTokens?: ConsoleTokenResolver;
  /** Which users are Nova's admins (flavor management, others' keypairs); by default none. */
  isAdmin?: (user: User) => boolean;
}

function parseJsonBody(_request: FastifyRequest, body: string | Buffer, done: (error: Error | null, body?: unknown) => void): void {
  const text = String(body);
  if (text.trim() === "") return done(null, undefined);
  try {
    done(null, JSON.parse(text) as unknown);
  } catch {
    // Nova's words for any body it cannot decode.
    done(new ComputeError("EBAD_REQUEST", "Malformed request body"), undefined);
  }
}

export async function computePlugin(app: FastifyInstance, options: ComputePluginOptions): Promise<void> {
  const mountPath = app.prefix; // `/compute`
  const urls = (request: FastifyRequest): ApiUrls => {
    const base = publicBaseUrl(request, options.publicUrl);
    return { api: `${base}${mountPath}/v2.1`, compute: `${base}${mountPath}`, image: `${base}/image` };
  };
  const context: RouteContext = { compute: options.compute, urls };
  const isAdmin = options.isAdmin ?? (() => false);

  app.removeAllContentTypeParsers();
  // curl's form default and clients that forget the header still mean JSON here.
  app.addContentTypeParser("*", { parseAs: "string", bodyLimit: requestBodyBytesMax }, parseJsonBody);
  app.setErrorHandler((error, request, reply) => sendNovaFault(error, request, reply, options.publicUrl));
  app.setNotFoundHandler((request, reply) => sendNovaFault(routeNotFound(), request, reply, options.publicUrl));
  if (!app.hasRequestDecorator("computeCaller")) app.decorateRequest("computeCaller", null);
  if (!app.hasRequestDecorator("computeMicroversion")) app.decorateRequest("computeMicroversion", microversionMinMinor);

  app.get("/", async (request) => versionsDocument(urls(request).compute));
  // Its own context, so the token hook below does not cover it; "/" in a prefixed context
  // answers both `/compute/v2.1` and `/compute/v2.1/`.
  await app.register(
    async (discovery) => {
      discovery.get("/", async (request) => versionDocument(urls(request).compute));
    },
    { prefix: "/v2.1" },
  );

  await app.register(
    async (v21) => {
      v21.addHook("onRequest", async (request, reply) => {
        const minor = negotiateMicroversion(request);
        request.computeMicroversion = minor;
        echoMicroversion(reply, minor);
        const { user } = await authenticate(options.identity, request);
        request.computeCaller = { userUuid: user.uuid, isAdmin: isAdmin(user) };
      });
      serverRoutes(v21, context);
      metadataRoutes(v21, context);
      actionRoutes(v21, context);
      volumeAttachmentRoutes(v21, context);
      flavorRoutes(v21, context);
      keypairRoutes(v21, context);
      await imageRoutes(v21, context);
      v21.get("/limits", async (request) => ({ limits: { rate: [], absolute: await options.compute.limits(callerOf(request)) } }));
    },
    { prefix: "/v2.1" },
  );

  if (options.consoleTokens !== undefined) {
    await app.register(consoleProxyPlugin, { tokens: options.consoleTokens });
  }
}
