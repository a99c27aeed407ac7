/**
 * What identity does, apart from any wire format: log in with a password or a token, validate
 * a token, revoke one. The Keystone v3, v2.0 and Swift v1 routes are thin encoders over this.
 *
 * Projects: as in Astakos, every user has a base project whose id is the user's uuid (and
 * here, whose name is the user's name). Every token is scoped to it; a request scoped to any
 * other project is refused as Keystone refuses a project the user has no role on (401).
 */
import {
  getUser,
  getUserByName,
  issueToken,
  lookupToken,
  revokeToken,
  tokenTtlMsDefault,
  type MetadataDatabase,
  type TokenRecord,
  type User,
} from "../db/index.ts";
import { IdentityError, unauthorized } from "./errors.ts";
import { passwordLengthMax, verifyAgainstDummy, verifyPassword } from "./password.ts";
import { LoginThrottle, type LoginThrottleOptions } from "./throttle.ts";

/** The one domain; Keystone's default domain, which is what clients send by default. */
export const defaultDomain = { id: "default", name: "Default" } as const;

export interface Session {
  user: User;
  token: TokenRecord;
  /** The secret: only set when the session was just issued. */
  secret?: string;
  methods: string[];
}

export interface IdentityServiceOptions {
  db: MetadataDatabase;
  tokenTtlMs?: number;
  throttle?: LoginThrottleOptions;
  now?: () => number;
}

export type TokenCheck =
  | { status: "valid"; user: User; token: TokenRecord }
  | { status: "unknown" | "expired" | "revoked" | "user-disabled" };

export class IdentityService {
  readonly db: MetadataDatabase;
  readonly tokenTtlMs: number;
  readonly throttle: LoginThrottle;
  readonly now: () => number;

  constructor(options: IdentityServiceOptions) {
    this.db = options.db;
    this.tokenTtlMs = options.tokenTtlMs ?? tokenTtlMsDefault;
    this.now = options.now ?? Date.now;
    this.throttle = new LoginThrottle({ now: this.now, ...options.throttle });
  }

  /** A user by name or by uuid (Astakos clients send the uuid as the user name). */
  async findUser(nameOrId: { name?: string; id?: string }): Promise<User | undefined> {
    if (nameOrId.id !== undefined) return getUser(this.db, nameOrId.id.toLowerCase());
    if (nameOrId.name !== undefined) return getUserByName(this.db, nameOrId.name);
    return undefined;
  }

  /**
   * Password login. Every failure is the same 401 whatever the cause (no such user, wrong
   * password, disabled user), and costs the same scrypt time, so no answer tells whether the
   * name exists. Throttled per name given.
   */
  async loginWithPassword(who: { name?: string; id?: string }, password: string): Promise<Session> {
    const throttleKey = who.id ?? who.name ?? "";
    const retryAfterSeconds = this.throttle.retryAfterSeconds(throttleKey);
    if (retryAfterSeconds > 0) {
      throw new IdentityError("ETOO_MANY_ATTEMPTS", "Too many failed login attempts for this user; try again later.", { retryAfterSeconds });
    }
    if (password.length > passwordLengthMax) throw new IdentityError("EBAD_REQUEST", `password longer than ${passwordLengthMax} characters`);
    const user = await this.findUser(who);
    const ok =
      user?.passwordHash !== undefined && user.passwordHash !== null
        ? await verifyPassword(password, user.passwordHash)
        : await verifyAgainstDummy(password);
    if (!ok || user === undefined || user.state !== "active") {
      this.throttle.recordFailure(throttleKey);
      throw unauthorized();
    }
    this.throttle.recordSuccess(throttleKey);
    return this.#issue(user, ["password"], this.tokenTtlMs);
  }

  /**
   * Token login (Keystone's "token" method): a new token for the same user that expires when
   * the presented one does, so re-scoping never extends a session (keystone token_model).
   */
  async loginWithToken(secret: string): Promise<Session> {
    const check = await this.checkToken(secret);
    if (check.status !== "valid") throw unauthorized();
    return this.#issue(check.user, ["token"], check.token.expiresAt - this.now());
  }

  async checkToken(secret: string): Promise<TokenCheck> {
    return lookupToken(this.db, secret, this.now());
  }

  async revoke(secret: string): Promise<boolean> {
    return revokeToken(this.db, secret, this.now());
  }

  /** Refuses a scope naming any project but the user's own. */
  checkProjectScope(user: User, project: { id?: string; name?: string } | undefined): void {
    if (project === undefined) return;
    const matches = project.id !== undefined ? project.id.toLowerCase() === user.uuid : project.name === user.name;
    if (!matches) throw unauthorized(`User ${user.uuid} has no access to project ${project.id ?? project.name}`);
  }

  async #issue(user: User, methods: string[], ttlMs: number): Promise<Session> {
    const issued = await issueToken(this.db, user.uuid, { ttlMs: Math.max(1, Math.trunc(ttlMs)), nowMs: this.now() });
    return { user, token: issued.record, secret: issued.token, methods };
  }
}
