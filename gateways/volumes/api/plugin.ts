/**
 * The block-storage (Cinder v3) API as one encapsulated fastify plugin, mounted at `/volume`
 * (catalog URL `{base}/volume/v3/{project_id}`, identity/catalog.ts, types `block-storage` and
 * `volumev3`):
 *
 *   GET /                        version list, 300, no token (versions.ts)
 *   GET /v3, /v3/                the same list, 200, no token (the SDK's discovery)
 *   /v3/{project_id}/volumes…    volumes.ts (+ metadata), actions.ts
 *   /v3/{project_id}/snapshots…  snapshots.ts
 *   /v3/{project_id}/limits, /types…, /os-availability-zone   misc.ts
 *
 * Every /v3/{project_id} route needs X-Auth-Token (identity, in-process) whose project is the
 * URL's (else Cinder's 400 "Malformed request url"), and negotiates a microversion
 * (microversion.ts). Every error is Cinder's fault body (faults.ts); a 401 is
 * keystonemiddleware's. Bodies are JSON whatever their Content-Type says, up to
 * requestBodyBytesMax. serve/ stamps each answer with its `X-OpenStack-Request-Id`, which
 * OSC prints beside an error.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { authenticate, type IdentityService } from "../../../identity/index.ts";
import { publicBaseUrl } from "../../../identity/wire.ts";
import { VolumeError } from "../errors.ts";
import type { VolumeService } from "../service.ts";
import { actionRoutes } from "./actions.ts";
import type { RouteContext } from "./context.ts";
import { routeNotFound, sendCinderFault } from "./faults.ts";
import { requestBodyBytesMax } from "./input.ts";
import { echoMicroversion, negotiateMicroversion } from "./microversion.ts";
import { miscRoutes } from "./misc.ts";
import { snapshotRoutes } from "./snapshots.ts";
import { versionsDocument } from "./versions.ts";
import type { ApiUrls } from "./views.ts";
import { volumeRoutes } from "./volumes.ts";

export interface VolumePluginOptions {
  volumes: VolumeService;
  /** Whose token it is (authenticate()). */
  identity: IdentityService;
  /** Public base URL for links; by default the request's own. */
  publicUrl?: string;
}

/** Cinder's CONF.project_id_regex: a project id in a URL is hex and dashes. */
const projectIdPattern = /^[0-9a-f-]+$/;

function parseJsonBody(_request: FastifyRequest, body: string | Buffer, done: (error: Error | null, body?: unknown) => void): void {
  const text = String(body);
  if (text.trim() === "") return done(null, undefined);
  try {
    done(null, JSON.parse(text) as unknown);
  } catch {
    // Cinder's words for any body it cannot decode (wsgi.py _process_stack).
    done(new VolumeError("EBAD_REQUEST", "Malformed request body"), undefined);
  }
}

export async function volumePlugin(app: FastifyInstance, options: VolumePluginOptions): Promise<void> {
  const mountPath = app.prefix; // `/volume`
  const volumeUrl = (request: FastifyRequest): string => `${publicBaseUrl(request, options.publicUrl)}${mountPath}`;
  const urls = (request: FastifyRequest): ApiUrls => {
    const project = (request.params as Record<string, string | undefined>)["project_id"] ?? "";
    return { api: `${volumeUrl(request)}/v3/${project}`, bookmark: `${volumeUrl(request)}/${project}` };
  };
  const context: RouteContext = { volumes: options.volumes, urls };

  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string", bodyLimit: requestBodyBytesMax }, parseJsonBody);
  app.setErrorHandler((error, request, reply) => sendCinderFault(error, request, reply, options.publicUrl));
  app.setNotFoundHandler((request, reply) => sendCinderFault(routeNotFound(), request, reply, options.publicUrl));
  if (!app.hasRequestDecorator("volumeCaller")) app.decorateRequest("volumeCaller", null);

  app.get("/", async (request, reply) => reply.code(300).send(versionsDocument(volumeUrl(request))));
  // Its own context, so the token hook below does not cover it; "/" in a prefixed context
  // answers both `/volume/v3` and `/volume/v3/`.
  await app.register(
    async (discovery) => {
      discovery.get("/", async (request) => versionsDocument(volumeUrl(request)));
    },
    { prefix: "/v3" },
  );

  await app.register(
    async (v3) => {
      v3.addHook("onRequest", async (request, reply) => {
        const project = (request.params as Record<string, string | undefined>)["project_id"] ?? "";
        if (!projectIdPattern.test(project)) throw routeNotFound();
        const minor = negotiateMicroversion(request);
        echoMicroversion(reply, minor);
        const { user } = await authenticate(options.identity, request);
        // Our identity's project is the user (one project per user, its uuid).
        if (project !== user.uuid) throw new VolumeError("EBAD_REQUEST", "Malformed request url");
        request.volumeCaller = user.uuid;
      });
      volumeRoutes(v3, context);
      actionRoutes(v3, context);
      snapshotRoutes(v3, context);
      miscRoutes(v3, context);
    },
    { prefix: "/v3/:project_id" },
  );
}
