/**
 * Keystone v3 token API (api-ref identity v3 "Authentication and token management"):
 *
 *   POST   /v3/auth/tokens   password | token methods      → 201, X-Subject-Token, {token}
 *   GET    /v3/auth/tokens   X-Auth-Token + X-Subject-Token → 200 {token}   (HEAD: 200)
 *   DELETE /v3/auth/tokens   X-Auth-Token + X-Subject-Token → 204
 *
 * Keystone's statuses: a failed login or a bad X-Auth-Token is 401; a bad X-Subject-Token
 * (unknown, expired, revoked) is 404 "Could not find token".
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { TokenRecord, User } from "../db/index.ts";
import { v3Catalog } from "./catalog.ts";
import { IdentityError, unauthorized } from "./errors.ts";
import { defaultDomain, type IdentityService, type Session } from "./service.ts";
import { keystoneTime, publicBaseUrl, singleHeader } from "./wire.ts";

export interface KeystoneV3Options {
  service: IdentityService;
  publicUrl: string | undefined;
  region: string;
  /** Bytes of a token request body: a password login is ~300; 16 KiB leaves room, bounds parsing. */
  bodyLimitBytes: number;
}

const nameOrId = {
  type: "object",
  properties: { id: { type: "string", maxLength: 255 }, name: { type: "string", maxLength: 255 } },
} as const;

const authBodySchema = {
  type: "object",
  required: ["auth"],
  properties: {
    auth: {
      type: "object",
      required: ["identity"],
      properties: {
        identity: {
          type: "object",
          required: ["methods"],
          properties: {
            methods: { type: "array", minItems: 1, maxItems: 4, items: { type: "string", maxLength: 64 } },
            password: {
              type: "object",
              required: ["user"],
              properties: {
                user: {
                  type: "object",
                  required: ["password"],
                  properties: {
                    id: { type: "string", maxLength: 255 },
                    name: { type: "string", maxLength: 255 },
                    password: { type: "string", maxLength: 1024 },
                    domain: nameOrId,
                  },
                },
              },
            },
            token: { type: "object", required: ["id"], properties: { id: { type: "string", maxLength: 512 } } },
          },
        },
        scope: {
          anyOf: [
            { type: "string", enum: ["unscoped"] },
            { type: "object", properties: { project: { type: "object", properties: { ...nameOrId.properties, domain: nameOrId } } } },
          ],
        },
      },
    },
  },
} as const;

interface NameOrId {
  id?: string;
  name?: string;
}

interface AuthBody {
  auth: {
    identity: {
      methods: string[];
      password?: { user: NameOrId & { password: string; domain?: NameOrId } };
      token?: { id: string };
    };
    scope?: "unscoped" | { project?: NameOrId & { domain?: NameOrId } };
  };
}

function checkDomain(domain: NameOrId | undefined): void {
  if (domain === undefined) return;
  const ok = domain.id !== undefined ? domain.id === defaultDomain.id : domain.name === undefined || domain.name === defaultDomain.name;
  if (!ok) throw unauthorized();
}

export function v3TokenBody(user: User, token: TokenRecord, methods: string[], baseUrl: string, region: string): unknown {
  const project = { id: user.uuid, name: user.name, domain: defaultDomain };
  return {
    token: {
      methods,
      expires_at: keystoneTime(token.expiresAt),
      issued_at: keystoneTime(token.issuedAt),
      // Keystone's audit id identifies a token in logs without revealing it.
      audit_ids: [Buffer.from(token.tokenHash.slice(0, 32), "hex").toString("base64url")],
      user: { id: user.uuid, name: user.name, domain: defaultDomain, password_expires_at: null },
      project,
      is_domain: false,
      roles: [{ id: "member", name: "member" }],
      catalog: v3Catalog(baseUrl, project.id, region),
    },
  };
}

export async function keystoneV3Routes(app: FastifyInstance, options: KeystoneV3Options): Promise<void> {
  const { service, region } = options;

  /** The caller's X-Auth-Token, which must be valid (401 otherwise). */
  const authorize = async (request: FastifyRequest): Promise<void> => {
    const secret = singleHeader(request, "x-auth-token");
    if (secret === undefined || (await service.checkToken(secret)).status !== "valid") throw unauthorized();
  };

  const subjectToken = (request: FastifyRequest): string => {
    const secret = singleHeader(request, "x-subject-token");
    if (secret === undefined) throw new IdentityError("EBAD_REQUEST", "Expecting to find X-Subject-Token in request.");
    return secret;
  };

  const notFound = (): IdentityError => new IdentityError("ENOT_FOUND", "Could not find token.");

  app.post<{ Body: AuthBody }>("/auth/tokens", { schema: { body: authBodySchema }, bodyLimit: options.bodyLimitBytes }, async (request, reply) => {
    const { identity, scope } = request.body.auth;
    let session: Session;
    if (identity.methods.includes("password")) {
      if (identity.password === undefined) throw new IdentityError("EBAD_REQUEST", "Invalid input for field 'identity': password method without password");
      const { user } = identity.password;
      if (user.id === undefined && user.name === undefined) throw new IdentityError("EBAD_REQUEST", "Invalid input for field 'user': id or name required");
      checkDomain(user.domain);
      session = await service.loginWithPassword(user.id !== undefined ? { id: user.id } : { name: user.name! }, user.password);
    } else if (identity.methods.includes("token")) {
      if (identity.token === undefined) throw new IdentityError("EBAD_REQUEST", "Invalid input for field 'identity': token method without token");
      session = await service.loginWithToken(identity.token.id);
    } else {
      throw unauthorized(`Unsupported authentication method: ${identity.methods.join(", ")}`);
    }
    if (typeof scope === "object" && scope.project !== undefined) {
      checkDomain(scope.project.domain);
      service.checkProjectScope(session.user, scope.project);
    }
    const baseUrl = publicBaseUrl(request, options.publicUrl);
    reply.code(201).header("x-subject-token", session.secret!);
    return v3TokenBody(session.user, session.token, session.methods, baseUrl, region);
  });

  app.get("/auth/tokens", async (request) => {
    await authorize(request);
    const check = await service.checkToken(subjectToken(request));
    if (check.status !== "valid") throw notFound();
    // Methods are not stored with a token; "password" is how every session here begins.
    return v3TokenBody(check.user, check.token, ["password"], publicBaseUrl(request, options.publicUrl), region);
  });

  app.delete("/auth/tokens", async (request, reply) => {
    await authorize(request);
    if (!(await service.revoke(subjectToken(request)))) throw notFound();
    return reply.code(204).send();
  });

  /** GET /v3/auth/catalog: the caller's catalog (api-ref "Get service catalog"). */
  app.get("/auth/catalog", async (request) => {
    const secret = singleHeader(request, "x-auth-token");
    const check = secret === undefined ? undefined : await service.checkToken(secret);
    if (check?.status !== "valid") throw unauthorized();
    return { catalog: v3Catalog(publicBaseUrl(request, options.publicUrl), check.user.uuid, region), links: { self: request.url } };
  });
}
