/**
 * The compute API plugin alone, over a FakeCompute, with three token holders (alice, bob,
 * admin) known to a stand-in identity: the HTTP layer's unit tests, by fastify inject.
 *
 *   const h = await computeHarness();
 *   const answer = await h.request("GET", "/compute/v2.1/servers", { token: "alice" });
 */
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from "fastify";
import type { MetadataDatabase, TokenRecord, User } from "../../../db/index.ts";
import { IdentityService } from "../../../identity/index.ts";
import type { TokenCheck } from "../../../identity/service.ts";
import { computePlugin, type ComputePluginOptions } from "../index.ts";
import { FakeCompute } from "./fake-compute.ts";

export const testUsers = {
  alice: "a11ce000-0000-4000-8000-000000000001",
  bob: "b0b00000-0000-4000-8000-000000000002",
  admin: "ad000000-0000-4000-8000-000000000003",
} as const;
export type TestUserName = keyof typeof testUsers;

/** An IdentityService whose tokens are the user names; the database is never touched. */
class TestIdentity extends IdentityService {
  constructor() {
    super({ db: {} as MetadataDatabase });
  }

  override async checkToken(secret: string): Promise<TokenCheck> {
    if (!Object.hasOwn(testUsers, secret)) return { status: "unknown" };
    const name = secret as TestUserName;
    const user: User = { uuid: testUsers[name], name, email: null, state: "active", passwordHash: null, createdAt: 0, updatedAt: 0 };
    const token: TokenRecord = { tokenHash: `hash-${name}`, userUuid: user.uuid, issuedAt: 0, expiresAt: Number.MAX_SAFE_INTEGER, revokedAt: null };
    return { status: "valid", user, token };
  }
}

export interface RequestOptions {
  /** Whose token; null sends none. alice by default. */
  token?: TestUserName | "bogus" | null;
  json?: unknown;
  /** A raw body (sent as application/json unless headers say otherwise). */
  payload?: string;
  headers?: Record<string, string>;
}

export interface ComputeHarness {
  app: FastifyInstance;
  fake: FakeCompute;
  request(method: string, path: string, options?: RequestOptions): Promise<LightMyRequestResponse>;
}

export interface HarnessOptions extends Partial<Omit<ComputePluginOptions, "compute" | "identity" | "consoleTokens">> {
  /** Serve /compute/console with the fake's one-use tokens. */
  consoleProxy?: boolean;
}

export async function computeHarness(harnessOptions: HarnessOptions = {}): Promise<ComputeHarness> {
  const fake = new FakeCompute();
  const { consoleProxy, ...options } = harnessOptions;
  // As serve builds its server (serve/server.ts): trailing slashes ignored, 1 MiB default limit.
  const app = Fastify({ routerOptions: { ignoreTrailingSlash: true }, bodyLimit: 1024 * 1024 });
  await app.register(computePlugin, {
    compute: fake,
    identity: new TestIdentity(),
    isAdmin: (user) => user.name === "admin",
    ...options,
    ...(consoleProxy === true && { consoleTokens: fake }),
    prefix: "/compute",
  });
  await app.ready();
  const request = (method: string, path: string, requestOptions: RequestOptions = {}) => {
    const headers: Record<string, string> = { host: "cloud.test:8080", ...requestOptions.headers };
    const token = requestOptions.token === undefined ? "alice" : requestOptions.token;
    if (token !== null) headers["x-auth-token"] = token;
    let payload: string | undefined = requestOptions.payload;
    if (requestOptions.json !== undefined) payload = JSON.stringify(requestOptions.json);
    if (payload !== undefined && !Object.keys(headers).some((key) => key.toLowerCase() === "content-type")) headers["content-type"] = "application/json";
    return app.inject({ method: method as "GET", url: path, headers, ...(payload !== undefined && { payload }) });
  };
  return { app, fake, request };
}

/** The answer must be Nova's fault body: one key, the fault name, with code and message. */
export function expectFault(answer: LightMyRequestResponse, status: number, fault: string): string {
  if (answer.statusCode !== status) throw new Error(`expected ${status} ${fault}, got ${answer.statusCode}: ${answer.body}`);
  const body = answer.json() as Record<string, { code?: unknown; message?: unknown }>;
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== fault) throw new Error(`expected a ${fault} body, got ${answer.body}`);
  const inner = body[fault]!;
  if (inner.code !== status || typeof inner.message !== "string" || inner.message === "") throw new Error(`malformed fault body ${answer.body}`);
  return inner.message;
}
