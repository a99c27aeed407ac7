/**
 * The object store as one encapsulated fastify plugin, mounted at `/object-store`:
 *
 *   GET  /info                         capabilities, no auth (swift.md 9)
 *   GET  /v1                           accounts that share with the caller (Pithos+)
 *   *    /v1/{account}[/{container}[/{object}]]   account.ts, container.ts, object-*.ts
 *
 * One wildcard route per level instead of fastify's parametric routes: object names may hold
 * any byte sequence, a trailing `/` and `%2F`, which only a split of the raw path keeps exact
 * (swift.md 11.3). Bodies are never parsed by fastify: handlers read the request stream
 * themselves, so uploads of any size stream in fixed memory.
 *
 * Every response carries X-Trans-Id / X-Openstack-Request-Id and Date; errors are Swift's
 * small HTML bodies (wire/errors.ts), 401 with Www-Authenticate.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { TokenValidator } from "../../identity/index.ts";
import { accountRoutes, sharingAccounts } from "./account.ts";
import { containerRoutes } from "./container.ts";
import { authenticateRequest, type PithosContext } from "./context.ts";
import { sendPithosError } from "./http-errors.ts";
import { objectRoutes } from "./object.ts";
import type { PithosService } from "./service.ts";
import { PithosError } from "./wire/errors.ts";
import { capabilities } from "./wire/info.ts";
import { parseObjectStorePath } from "./wire/names.ts";
import { transId } from "./wire/timestamps.ts";

/**
 * Object names may hold escapes that are not UTF-8 (`%ff`: Swift's 412) or not escapes at all
 * (`100%zz`: a literal `%`, as Python's unquote leaves it). fastify's router decodes the path
 * before any route runs and answers such URLs with its own 400. The server's rewriteUrl hook
 * (serve/server.ts) sends them to a placeholder path of ours and keeps the request's real URL
 * here, for dispatch to parse with Swift's rules.
 */
const realUrls = new WeakMap<object, string>();
const placeholderPath = "/v1/-";

/** For fastify's `rewriteUrl`: the URL to route, given the request's (object store under `prefix`). */
export function objectStoreUrlRewriter(prefix: string): (request: { url?: string }) => string {
  return (request) => {
    const url = request.url ?? "/";
    if (!url.startsWith(`${prefix}/`)) return url;
    const queryStart = url.indexOf("?");
    try {
      decodeURIComponent(url.slice(0, queryStart < 0 ? url.length : queryStart));
      return url;
    } catch {
      realUrls.set(request, url);
      return `${prefix}${placeholderPath}`;
    }
  };
}

export interface PithosPluginOptions {
  service: PithosService;
  /** Who a token belongs to: identity in-process, or a RemoteTokenValidator when deployed apart. */
  tokens: TokenValidator;
  /** Public base URL (for public links); by default the request's own. */
  publicUrl?: string;
}

type Handler = (context: PithosContext) => Promise<FastifyReply>;
type MethodTable = Partial<Record<string, Handler>>;

export async function pithosPlugin(app: FastifyInstance, options: PithosPluginOptions): Promise<void> {
  // Handlers stream request bodies themselves (request.raw); fastify must not read them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));
  app.setErrorHandler(sendPithosError);
  // A path of ours with a method we do not route (PATCH, PROPFIND…) is 405, as Swift answers.
  app.setNotFoundHandler((request, reply) =>
    sendPithosError(new PithosError(request.url.startsWith(`${app.prefix}/v1`) ? "EMETHOD_NOT_ALLOWED" : "ENOT_FOUND"), request, reply),
  );
  // Swift's transaction id in both headers (swift.md 2); this hook runs after serve's, which
  // sets X-Openstack-Request-Id to fastify's request id (the log has both).
  app.addHook("onSend", async (request, reply) => {
    const id = transId();
    request.log.debug({ transId: id }, "object-store: transaction id");
    reply.header("x-trans-id", id).header("x-openstack-request-id", id);
  });

  app.get("/info", async (_request, reply) => reply.type("application/json; charset=utf-8").send(JSON.stringify(capabilities())));

  const levels: Record<"account" | "container" | "object", MethodTable> = {
    account: accountRoutes,
    container: containerRoutes,
    object: objectRoutes,
  };
  const prefixLength = app.prefix.length;
  const dispatch = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const url = realUrls.get(request.raw) ?? request.raw.url ?? "/";
    const queryStart = url.indexOf("?");
    const rawPath = url.slice(prefixLength, queryStart < 0 ? url.length : queryStart);
    const query = new URLSearchParams(queryStart < 0 ? "" : url.slice(queryStart + 1));
    const path = parseObjectStorePath(rawPath);
    const caller = await authenticateRequest(options.tokens, request, query, path.account);
    if (path.kind === "root") {
      if (request.method !== "GET" && request.method !== "HEAD") throw new PithosError("EMETHOD_NOT_ALLOWED");
      return sharingAccounts(request, reply, options.service, caller, query);
    }
    // Accounts are users: a name that is no user's uuid holds nothing.
    if (path.accountUuid === undefined) throw new PithosError("ENOT_FOUND");
    const handler: Handler | undefined = levels[path.kind][request.method];
    if (handler === undefined) throw new PithosError("EMETHOD_NOT_ALLOWED");
    return handler({
      request,
      reply,
      service: options.service,
      caller,
      account: path.accountUuid,
      containerName: path.container,
      objectPath: path.object,
      query,
      publicUrl: options.publicUrl,
    });
  };
  // `/v1` and `/v1.0`, both valid_api_versions in /info (wire/names.ts checks the version).
  for (const url of ["/v1", "/v1/*", "/v1.0", "/v1.0/*"]) {
    app.route({ method: ["GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "MOVE"], url, exposeHeadRoute: false, handler: dispatch });
  }
}
