/**
 * The one HTTP server: every service is an encapsulated plugin mounted at its prefix.
 *
 *   /identity/…     identity (Keystone v3, v2.0)       identity/plugin.ts
 *   /identity/account/v1.0/…  Astakos quotas, commissions  identity/quotas.ts
 *   /auth/v1.0      Swift v1 auth                       identity/plugin.ts
 *   /object-store/… the object store (Swift + Pithos+)  gateways/pithos/plugin.ts
 *   /public/{token} published objects, no auth          gateways/pithos/public.ts
 *   /image/…        images (Glance v2, Plankton v1)     gateways/plankton/plugin.ts
 *   /compute/…      compute (Nova v2.1) and VNC consoles compute/api/plugin.ts
 *   /volume/…       block storage (Cinder v3)           gateways/volumes/api/plugin.ts
 *   /healthz        200 when the database answers
 *   /metrics        Prometheus text format              metrics.ts
 *
 * Logs are pino (fastify's), one line per request with its id; each response carries the id
 * as X-Openstack-Request-Id, as OpenStack services do, so a client's error can be found in
 * the log.
 *
 * What fastify and Node's HTTP parser refuse before any plugin runs (a URL that is no valid
 * percent-encoding, an over-long path parameter, unreadable or oversized request heads) is
 * answered in the convention of the API the URL names (framework-errors.ts).
 */
import { randomUUID } from "node:crypto";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from "fastify";
import { sql } from "kysely";
import type { MetadataDatabase } from "../db/index.ts";
import { IdentityService, identityPlugin, localTokenValidator, swiftAuthPlugin, type IdentityServiceOptions } from "../identity/index.ts";
import { objectStoreUrlRewriter, pithosPlugin, publicPlugin, type PithosService } from "../gateways/pithos/index.ts";
import { planktonPlugin } from "../gateways/plankton/index.ts";
import { volumePlugin, type VolumeService } from "../gateways/volumes/index.ts";
import { computePlugin } from "../compute/api/index.ts";
import type { ConsoleTokenResolver } from "../compute/console-proxy.ts";
import type { ComputeApi } from "../compute/model.ts";
import { answerClientError, pathParameterBytesMax, sendFrameworkError } from "./framework-errors.ts";
import { HttpMetrics } from "./metrics.ts";

/**
 * Bytes of any request body unless a route says otherwise. Identity's routes allow 16 KiB;
 * object uploads will stream and set their own.
 */
export const requestBodyBytesMaxDefault = 1024 * 1024;

export interface ServerOptions {
  db: MetadataDatabase;
  /** The public base URL for catalogs and version documents; by default each request's own. */
  publicUrl?: string;
  region?: string;
  logger?: FastifyServerOptions["logger"];
  /** A pino logger already made (okeanos serve shares it with compute's job worker); wins over `logger`. */
  loggerInstance?: FastifyBaseLogger;
  tokenTtlMs?: number;
  throttle?: IdentityServiceOptions["throttle"];
  now?: () => number;
  /** Users whose tokens may issue and resolve quota commissions (identity/quotas.ts). */
  serviceUsers?: readonly string[];
  /** The object store over the engine; without it /object-store, /public and /image are not served. */
  pithos?: PithosService;
  /** The compute service; without it /compute is not served (no QEMU on this host). */
  compute?: ComputeApi & ConsoleTokenResolver;
  /** Block-storage volumes over the engine; without it /volume is not served. */
  volumes?: VolumeService;
}

export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.loggerInstance !== undefined ? { loggerInstance: options.loggerInstance } : { logger: options.logger ?? false }),
    genReqId: () => `req-${randomUUID()}`,
    bodyLimit: requestBodyBytesMaxDefault,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: pathParameterBytesMax },
    rewriteUrl: objectStoreUrlRewriter("/object-store"),
    frameworkErrors: (error, request, reply) => void sendFrameworkError(error, request as FastifyRequest, reply as FastifyReply),
    // Node's parser errors: fastify binds the handler to the instance (its logger is this.log).
    clientErrorHandler(error, socket) {
      answerClientError(error, socket, (this as unknown as FastifyInstance).log);
    },
  });
  // Swift's server-side copy and Pithos+'s move are their own verbs (swift.md 9).
  app.addHttpMethod("COPY", { hasBody: true });
  app.addHttpMethod("MOVE", { hasBody: true });
  const identity = new IdentityService({
    db: options.db,
    ...(options.tokenTtlMs !== undefined && { tokenTtlMs: options.tokenTtlMs }),
    ...(options.throttle !== undefined && { throttle: options.throttle }),
    ...(options.now !== undefined && { now: options.now }),
  });
  app.decorate("identity", identity);
  app.addHook("onSend", async (request, reply) => {
    reply.header("x-openstack-request-id", request.id);
  });
  const metrics = new HttpMetrics();
  metrics.install(app);
  app.decorate("metrics", metrics);

  app.get("/healthz", async (_request, reply) => {
    await sql`select 1`.execute(options.db.kysely);
    return reply.type("text/plain").send("ok\n");
  });

  const pluginOptions = { service: identity, ...(options.publicUrl !== undefined && { publicUrl: options.publicUrl }), ...(options.region !== undefined && { region: options.region }) };
  await app.register(identityPlugin, { ...pluginOptions, serviceUsers: options.serviceUsers ?? [], prefix: "/identity" });
  await app.register(swiftAuthPlugin, { ...pluginOptions, prefix: "/auth" });
  if (options.pithos !== undefined) {
    const pithosOptions = { service: options.pithos, tokens: localTokenValidator(identity), ...(options.publicUrl !== undefined && { publicUrl: options.publicUrl }) };
    await app.register(pithosPlugin, { ...pithosOptions, prefix: "/object-store" });
    await app.register(publicPlugin, { service: options.pithos, prefix: "/public" });
    // Images are Pithos+ files: the image service needs the object store.
    await app.register(planktonPlugin, { ...pithosOptions, prefix: "/image" });
  }
  if (options.volumes !== undefined) {
    await app.register(volumePlugin, { volumes: options.volumes, identity, ...(options.publicUrl !== undefined && { publicUrl: options.publicUrl }), prefix: "/volume" });
  }
  if (options.compute !== undefined) {
    const serviceUsers = new Set(options.serviceUsers ?? []);
    await app.register(computePlugin, {
      compute: options.compute,
      consoleTokens: options.compute,
      identity,
      // Nova's admins: the service users (by name or uuid) may manage flavors and see every server.
      isAdmin: (user) => serviceUsers.has(user.name) || serviceUsers.has(user.uuid),
      ...(options.publicUrl !== undefined && { publicUrl: options.publicUrl }),
      prefix: "/compute",
    });
  }
  return app;
}

declare module "fastify" {
  interface FastifyInstance {
    /** The identity service, for plugins that check tokens in-process (identity/require-token.ts). */
    identity: IdentityService;
    /** /metrics: more collectors can be added (okeanos serve adds the NBD server's volume I/O). */
    metrics: HttpMetrics;
  }
}
