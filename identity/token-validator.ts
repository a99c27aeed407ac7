/**
 * Token validation as the services see it: "whose token is this, until when?" — answered
 * in-process from the database (`localTokenValidator`, what `okeanos serve` uses) or over HTTP
 * by a service deployed apart from identity (`RemoteTokenValidator`: Keystone v3's
 * `GET /v3/auth/tokens` with the service's own token in X-Auth-Token and the caller's in
 * X-Subject-Token, as keystonemiddleware's auth_token does).
 *
 * The remote validator caches answers (lru-cache): a valid token until the earlier of its
 * expiry and `cacheTtlMs` (so a revocation is seen within that time, keystonemiddleware's
 * `token_cache_time` trade-off), an invalid one for `negativeCacheTtlMs` (so a client
 * retrying a bad token does not hammer identity).
 */
import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { IdentityService } from "./service.ts";

export interface ValidatedToken {
  userUuid: string;
  userName: string;
  expiresAtMs: number;
}

export interface TokenValidator {
  /** The token's owner, or undefined for an unknown, expired or revoked token or a disabled user. */
  validate(secret: string): Promise<ValidatedToken | undefined>;
}

export function localTokenValidator(service: IdentityService): TokenValidator {
  return {
    async validate(secret) {
      const check = await service.checkToken(secret);
      if (check.status !== "valid") return undefined;
      return { userUuid: check.user.uuid, userName: check.user.name, expiresAtMs: check.token.expiresAt };
    },
  };
}

/** keystonemiddleware's default token_cache_time: 300 s. */
export const remoteCacheTtlMsDefault = 300_000;
/** Long enough to absorb a retry storm, short enough that a just-issued token is not refused for long. */
export const remoteNegativeCacheTtlMsDefault = 5_000;
/** Cached tokens at most: ~200 bytes each, 10 000 active clients in ~2 MiB. */
export const remoteCacheEntriesMax = 10_000;

export interface RemoteTokenValidatorOptions {
  /** Identity's v3 base URL, e.g. `https://cloud.example.org/identity/v3`. */
  identityUrl: string;
  /** A token of the service's own user, sent as X-Auth-Token. */
  serviceToken: string;
  cacheTtlMs?: number;
  negativeCacheTtlMs?: number;
  fetch?: typeof fetch;
  now?: () => number;
}

export class RemoteTokenValidator implements TokenValidator {
  readonly #options: Required<Omit<RemoteTokenValidatorOptions, "fetch" | "now">>;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  // Keyed by the token's SHA-256: the cache never holds a usable secret.
  readonly #cache = new LRUCache<string, { token: ValidatedToken | undefined; untilMs: number }>({ max: remoteCacheEntriesMax });

  constructor(options: RemoteTokenValidatorOptions) {
    this.#options = {
      identityUrl: options.identityUrl.replace(/\/+$/, ""),
      serviceToken: options.serviceToken,
      cacheTtlMs: options.cacheTtlMs ?? remoteCacheTtlMsDefault,
      negativeCacheTtlMs: options.negativeCacheTtlMs ?? remoteNegativeCacheTtlMsDefault,
    };
    this.#fetch = options.fetch ?? fetch;
    this.#now = options.now ?? Date.now;
  }

  async validate(secret: string): Promise<ValidatedToken | undefined> {
    const key = createHash("sha256").update(secret).digest("hex");
    const now = this.#now();
    const cached = this.#cache.get(key);
    if (cached !== undefined && cached.untilMs > now) return cached.token;
    const token = await this.#ask(secret);
    const untilMs = token === undefined ? now + this.#options.negativeCacheTtlMs : Math.min(token.expiresAtMs, now + this.#options.cacheTtlMs);
    this.#cache.set(key, { token, untilMs });
    return token;
  }

  async #ask(secret: string): Promise<ValidatedToken | undefined> {
    const response = await this.#fetch(`${this.#options.identityUrl}/auth/tokens?nocatalog`, {
      headers: { "x-auth-token": this.#options.serviceToken, "x-subject-token": secret, accept: "application/json" },
    });
    // Keystone: 404 for a bad subject token; 401 means *our* token is bad — an operator's problem.
    if (response.status === 404) return undefined;
    if (response.status === 401) throw new Error(`identity at ${this.#options.identityUrl} refused the service token (401): renew it`);
    if (response.status !== 200) throw new Error(`identity at ${this.#options.identityUrl} answered ${response.status} to a token validation`);
    const body = (await response.json()) as { token?: { user?: { id?: unknown; name?: unknown }; expires_at?: unknown } };
    const user = body.token?.user;
    const expiresAtMs = typeof body.token?.expires_at === "string" ? Date.parse(body.token.expires_at) : Number.NaN;
    if (typeof user?.id !== "string" || typeof user.name !== "string" || Number.isNaN(expiresAtMs)) {
      throw new Error(`identity at ${this.#options.identityUrl} sent a token document without user or expiry`);
    }
    return { userUuid: user.id, userName: user.name, expiresAtMs };
  }
}
