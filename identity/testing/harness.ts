/** A fastify app with identity mounted as serve mounts it, over a test database, with a settable clock. */
import Fastify, { type FastifyInstance } from "fastify";
import { createUser, type MetadataDatabase, type User } from "../../db/index.ts";
import { hashPassword } from "../password.ts";
import { identityPlugin, swiftAuthPlugin, type IdentityPluginOptions } from "../plugin.ts";
import { IdentityService } from "../service.ts";
import type { LoginThrottleOptions } from "../throttle.ts";

/** scrypt at 2^4: the same code path, microseconds instead of ~50 ms per hash. */
export const testCostLog2 = 4;

export interface IdentityHarness {
  app: FastifyInstance;
  service: IdentityService;
  clock: { nowMs: number };
  addUser(name: string, password: string, state?: "active" | "disabled"): Promise<User>;
}

export async function identityHarness(
  db: MetadataDatabase,
  throttle: LoginThrottleOptions = {},
  plugin: Pick<IdentityPluginOptions, "serviceUsers"> = {},
): Promise<IdentityHarness> {
  const clock = { nowMs: Date.UTC(2030, 0, 1) };
  const service = new IdentityService({ db, now: () => clock.nowMs, throttle, tokenTtlMs: 3_600_000 });
  const app = Fastify({ routerOptions: { ignoreTrailingSlash: true } });
  await app.register(identityPlugin, { ...plugin, service, prefix: "/identity" });
  await app.register(swiftAuthPlugin, { service, prefix: "/auth" });
  await app.ready();
  return {
    app,
    service,
    clock,
    async addUser(name, password, state = "active") {
      return createUser(db, { name, email: `${name}@example.org`, state, passwordHash: await hashPassword(password, { costLog2: testCostLog2 }) }, clock.nowMs);
    },
  };
}

export function passwordAuth(user: { name?: string; id?: string }, password: string, scope?: object): Record<string, unknown> {
  return {
    auth: {
      identity: { methods: ["password"], password: { user: { ...user, password, domain: { name: "Default" } } } },
      ...(scope !== undefined && { scope }),
    },
  };
}
