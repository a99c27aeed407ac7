/**
 * Keystone v2.0 tokens, as Astakos served them to kamaki (synnefo.md D.1):
 *
 *   POST /v2.0/tokens {"auth":{"passwordCredentials":{"username","password"},"tenantName"?}}
 *                     {"auth":{"token":{"id"},"tenantName"?}}
 *                     no auth at all → the catalog only (Astakos), no token
 *   → 200 {"access":{"token":{id,expires,issued_at,tenant},"user":{…},"serviceCatalog":[…]}}
 *
 * Astakos's "password" was the user's API token, with the user's uuid as the name; a
 * Keystone v2 client sends the real password. Both are accepted: the password is tried as a
 * password, then as a token of that user.
 */
import type { FastifyInstance } from "fastify";
import type { TokenRecord, User } from "../db/index.ts";
import { v2Catalog } from "./catalog.ts";
import { IdentityError, unauthorized } from "./errors.ts";
import type { IdentityService, Session } from "./service.ts";
import { keystoneTime, publicBaseUrl } from "./wire.ts";

export interface KeystoneV2Options {
  service: IdentityService;
  publicUrl: string | undefined;
  region: string;
  bodyLimitBytes: number;
}

const v2BodySchema = {
  type: "object",
  properties: {
    auth: {
      type: "object",
      properties: {
        passwordCredentials: {
          type: "object",
          required: ["username", "password"],
          properties: { username: { type: "string", maxLength: 255 }, password: { type: "string", maxLength: 1024 } },
        },
        token: { type: "object", required: ["id"], properties: { id: { type: "string", maxLength: 512 } } },
        tenantName: { type: "string", maxLength: 255 },
        tenantId: { type: "string", maxLength: 255 },
      },
    },
  },
} as const;

interface V2Body {
  auth?: {
    passwordCredentials?: { username: string; password: string };
    token?: { id: string };
    tenantName?: string;
    tenantId?: string;
  };
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function v2Access(user: User, token: TokenRecord, secret: string, baseUrl: string, region: string): unknown {
  const tenant = { id: user.uuid, name: user.name };
  return {
    access: {
      token: { id: secret, expires: keystoneTime(token.expiresAt), issued_at: keystoneTime(token.issuedAt), tenant },
      user: { id: user.uuid, name: user.name, username: user.name, roles: [{ id: "member", name: "member" }], roles_links: [], projects: [user.uuid] },
      serviceCatalog: v2Catalog(baseUrl, user.uuid, region),
      metadata: { is_admin: 0, roles: ["member"] },
    },
  };
}

export async function keystoneV2Routes(app: FastifyInstance, options: KeystoneV2Options): Promise<void> {
  const { service, region } = options;

  // Astakos answered an empty body with the catalog alone; allow a body-less POST.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, text, done) => {
    const body = text as string;
    if (body.trim() === "") return done(null, {});
    try {
      done(null, JSON.parse(body));
    } catch (error) {
      done(new IdentityError("EBAD_REQUEST", `Malformed JSON in request body: ${(error as Error).message}`), undefined);
    }
  });

  app.post<{ Body: V2Body | undefined }>("/tokens", { schema: { body: v2BodySchema }, bodyLimit: options.bodyLimitBytes }, async (request) => {
    const baseUrl = publicBaseUrl(request, options.publicUrl);
    const auth = request.body?.auth;
    if (auth === undefined || (auth.passwordCredentials === undefined && auth.token === undefined)) {
      return { access: { serviceCatalog: v2Catalog(baseUrl, "", region).filter((entry) => (entry as { type: string }).type !== "object-store") } };
    }
    let session: Session;
    if (auth.passwordCredentials !== undefined) {
      const { username, password } = auth.passwordCredentials;
      const who = uuidPattern.test(username) ? { id: username } : { name: username };
      session = await loginWithPasswordOrToken(service, who, password);
    } else {
      session = await service.loginWithToken(auth.token!.id);
    }
    const project = auth.tenantId !== undefined ? { id: auth.tenantId } : auth.tenantName !== undefined ? tenantRef(auth.tenantName) : undefined;
    service.checkProjectScope(session.user, project);
    return v2Access(session.user, session.token, session.secret!, baseUrl, region);
  });
}

/** Astakos's tenantName was the project uuid; Keystone's is a name. */
function tenantRef(tenantName: string): { id?: string; name?: string } {
  return uuidPattern.test(tenantName) ? { id: tenantName } : { name: tenantName };
}

async function loginWithPasswordOrToken(service: IdentityService, who: { id?: string; name?: string }, password: string): Promise<Session> {
  try {
    return await service.loginWithPassword(who, password);
  } catch (error) {
    if (!(error instanceof IdentityError) || error.code !== "EUNAUTHORIZED") throw error;
    // Astakos style: the "password" is one of the user's tokens.
    const check = await service.checkToken(password);
    const user = check.status === "valid" ? await service.findUser(who) : undefined;
    if (check.status !== "valid" || user?.uuid !== check.user.uuid) throw unauthorized();
    return service.loginWithToken(password);
  }
}
