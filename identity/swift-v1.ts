/**
 * Swift's v1 auth (swift tempauth, docs "Auth"): `GET /auth/v1.0` with X-Auth-User and
 * X-Auth-Key (or X-Storage-User / X-Storage-Pass) → 200 with X-Storage-Url, X-Auth-Token
 * (and X-Storage-Token, its old name) and X-Auth-Token-Expires in seconds. The user may be
 * written `account:user` as tempauth wants; here the account is the user's own project, so
 * `alice:alice` and `alice` are the same login.
 */
import type { FastifyInstance } from "fastify";
import { catalogServices, serviceUrl } from "./catalog.ts";
import { IdentityError, unauthorized } from "./errors.ts";
import type { IdentityService } from "./service.ts";
import { publicBaseUrl, singleHeader } from "./wire.ts";

export interface SwiftV1Options {
  service: IdentityService;
  publicUrl: string | undefined;
}

const objectStore = catalogServices.find((service) => service.type === "object-store")!;

export async function swiftV1Routes(app: FastifyInstance, options: SwiftV1Options): Promise<void> {
  const { service } = options;
  app.get("/v1.0", async (request, reply) => {
    const userHeader = singleHeader(request, "x-auth-user") ?? singleHeader(request, "x-storage-user");
    const key = singleHeader(request, "x-auth-key") ?? singleHeader(request, "x-storage-pass");
    if (userHeader === undefined || key === undefined) throw unauthorized();
    const colon = userHeader.indexOf(":");
    const [account, name] = colon < 0 ? [undefined, userHeader] : [userHeader.slice(0, colon), userHeader.slice(colon + 1)];
    if (name === "") throw new IdentityError("EBAD_REQUEST", "X-Auth-User names no user");
    const session = await service.loginWithPassword({ name }, key);
    if (account !== undefined && account !== session.user.name && account !== session.user.uuid) throw unauthorized();
    const expiresInSeconds = Math.max(0, Math.floor((session.token.expiresAt - service.now()) / 1000));
    return reply
      .code(200)
      .header("x-storage-url", serviceUrl(publicBaseUrl(request, options.publicUrl), objectStore, session.user.uuid))
      .header("x-auth-token", session.secret!)
      .header("x-storage-token", session.secret!)
      .header("x-auth-token-expires", String(expiresInSeconds))
      .send();
  });
}
