/**
 * Identity as two encapsulated fastify plugins, each with its own routes, schemas, error
 * mapping (errors.ts: Keystone's JSON error body) and 404:
 *
 *   identityPlugin   mount at /identity   GET /            version list (300)
 *                                         GET /v3          v3 version document
 *                                         /v3/auth/tokens  keystone-v3.ts
 *                                         GET /v2.0, POST /v2.0/tokens   keystone-v2.ts
 *                                         /account/v1.0/…  quotas.ts (Astakos's quota API, its
 *                                                          own error body: astakos-errors.ts)
 *   swiftAuthPlugin  mount at /auth       GET /v1.0        swift-v1.ts
 *
 * Both share one IdentityService (the database and the login throttle).
 */
import type { FastifyInstance } from "fastify";
import { regionDefault } from "./catalog.ts";
import { IdentityError, sendKeystoneError } from "./errors.ts";
import { keystoneV2Routes } from "./keystone-v2.ts";
import { keystoneV3Routes } from "./keystone-v3.ts";
import { quotaRoutes } from "./quotas.ts";
import type { IdentityService } from "./service.ts";
import { swiftV1Routes } from "./swift-v1.ts";
import { v2Version, v3Version, versionList } from "./versions.ts";
import { publicBaseUrl } from "./wire.ts";

/** A token request is a few hundred bytes; 16 KiB bounds what we parse from anyone. */
export const authBodyBytesMax = 16 * 1024;

export interface IdentityPluginOptions {
  service: IdentityService;
  /** The server's public base URL (`https://cloud.example.org`); by default the request's own. */
  publicUrl?: string;
  region?: string;
  /** Names or uuids of the users whose tokens are service credentials (quotas.ts). */
  serviceUsers?: readonly string[];
}

function keystoneErrors(app: FastifyInstance): void {
  app.setErrorHandler(sendKeystoneError);
  app.setNotFoundHandler((request, reply) =>
    sendKeystoneError(new IdentityError("ENOT_FOUND", `The resource could not be found: ${request.method} ${request.url}`), request, reply),
  );
}

export async function identityPlugin(app: FastifyInstance, options: IdentityPluginOptions): Promise<void> {
  const { service, publicUrl } = options;
  const region = options.region ?? regionDefault;
  keystoneErrors(app);

  app.get("/", async (request, reply) => reply.code(300).send(versionList(publicBaseUrl(request, publicUrl))));

  await app.register(
    async (v3) => {
      v3.get("/", async (request) => ({ version: v3Version(publicBaseUrl(request, publicUrl)) }));
      await keystoneV3Routes(v3, { service, publicUrl, region, bodyLimitBytes: authBodyBytesMax });
    },
    { prefix: "/v3" },
  );
  await app.register(
    async (v2) => {
      v2.get("/", async (request) => ({ version: v2Version(publicBaseUrl(request, publicUrl)) }));
      await keystoneV2Routes(v2, { service, publicUrl, region, bodyLimitBytes: authBodyBytesMax });
    },
    { prefix: "/v2.0" },
  );
  await app.register(async (account) => quotaRoutes(account, { service, serviceUsers: options.serviceUsers ?? [] }), { prefix: "/account/v1.0" });
}

export async function swiftAuthPlugin(app: FastifyInstance, options: IdentityPluginOptions): Promise<void> {
  keystoneErrors(app);
  await swiftV1Routes(app, { service: options.service, publicUrl: options.publicUrl });
}
