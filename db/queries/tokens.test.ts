import { createHash } from "node:crypto";
import { expect, it } from "vitest";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith } from "../testing/fixtures.ts";
import {
  hashToken,
  issueToken,
  listUserTokens,
  lookupToken,
  purgeTokens,
  renewToken,
  revokeToken,
  revokeUserTokens,
  tokenTtlMsDefault,
  tokenTtlMsMax,
  type IssuedToken,
} from "./tokens.ts";
import { createUser, updateUser } from "./users.ts";

const t0 = 1_700_000_000_000;
const hourMs = 3_600_000;

describeEachEngine("tokens", (databases) => {
  it("are random, and stored only as their SHA-256", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    const one = await issueToken(db, alice.uuid, { nowMs: t0 });
    const two = await issueToken(db, alice.uuid, { nowMs: t0 });
    expect(one.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(one.token).not.toBe(two.token);
    expect(one.record).toEqual({
      tokenHash: createHash("sha256").update(one.token).digest("hex"),
      userUuid: alice.uuid,
      issuedAt: t0,
      expiresAt: t0 + tokenTtlMsDefault,
      revokedAt: null,
    });
    const stored = JSON.stringify(await db.kysely.selectFrom("tokens").selectAll().execute());
    expect(stored).toContain(hashToken(one.token));
    expect(stored).not.toContain(one.token);
    expect(stored).not.toContain(two.token);
  });

  it("validate until they expire", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    const { token, record } = await issueToken(db, alice.uuid, { ttlMs: hourMs, nowMs: t0 });
    expect(await lookupToken(db, token, t0)).toEqual({ status: "valid", user: alice, token: record });
    expect((await lookupToken(db, token, t0 + hourMs - 1)).status).toBe("valid");
    expect(await lookupToken(db, token, t0 + hourMs)).toEqual({ status: "expired" });
  });

  it("are unknown when garbage", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    const { token } = await issueToken(db, alice.uuid);
    for (const garbage of ["", "x", token.slice(1), token + "x", "x".repeat(10_000), hashToken(token), 42 as unknown as string]) {
      expect(await lookupToken(db, garbage)).toEqual({ status: "unknown" });
    }
  });

  it("stop validating when revoked, one by one or all of a user's", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    const bob = await createUser(db, { name: "bob" });
    const first = await issueToken(db, alice.uuid, { nowMs: t0 });
    expect(await revokeToken(db, first.token, t0 + 1)).toBe(true);
    expect(await revokeToken(db, first.token, t0 + 2)).toBe(false);
    expect(await revokeToken(db, "garbage")).toBe(false);
    expect(await lookupToken(db, first.token, t0 + 3)).toEqual({ status: "revoked" });

    const more: IssuedToken[] = [];
    for (let i = 0; i < 3; i++) more.push(await issueToken(db, alice.uuid, { nowMs: t0 + 10 + i }));
    const bobs = await issueToken(db, bob.uuid, { nowMs: t0 });
    expect((await listUserTokens(db, alice.uuid, t0 + 20)).map((r) => r.tokenHash)).toEqual(
      more.map((t) => t.record.tokenHash).reverse(),
    );
    expect(await revokeUserTokens(db, alice.uuid, t0 + 20)).toBe(3);
    for (const { token } of more) expect((await lookupToken(db, token, t0 + 21)).status).toBe("revoked");
    expect((await lookupToken(db, bobs.token, t0 + 21)).status).toBe("valid");
    expect(await listUserTokens(db, alice.uuid, t0 + 21)).toEqual([]);
  });

  it("do not validate for a disabled user", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    const { token } = await issueToken(db, alice.uuid);
    await updateUser(db, alice.uuid, { state: "disabled" });
    expect(await lookupToken(db, token)).toEqual({ status: "user-disabled" });
    expect(await renewToken(db, token)).toEqual({ status: "user-disabled" });
    await updateUser(db, alice.uuid, { state: "active" });
    expect((await lookupToken(db, token)).status).toBe("valid");
  });

  it("are renewed Astakos's way: a new token, the old one revoked", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    const old = await issueToken(db, alice.uuid, { ttlMs: hourMs, nowMs: t0 });
    const renewed = await renewToken(db, old.token, { ttlMs: 2 * hourMs, nowMs: t0 + 10 });
    if (!("token" in renewed)) throw new Error(`renewal failed: ${renewed.status}`);
    expect(renewed.token).not.toBe(old.token);
    expect(renewed.record).toMatchObject({ userUuid: alice.uuid, issuedAt: t0 + 10, expiresAt: t0 + 10 + 2 * hourMs });
    expect(await lookupToken(db, old.token, t0 + 11)).toEqual({ status: "revoked" });
    expect((await lookupToken(db, renewed.token, t0 + 11)).status).toBe("valid");
    expect(await renewToken(db, old.token, { nowMs: t0 + 12 })).toEqual({ status: "revoked" });
    expect(await renewToken(db, renewed.token, { nowMs: t0 + 10 + 2 * hourMs })).toEqual({ status: "expired" });
    expect(await renewToken(db, "garbage")).toEqual({ status: "unknown" });
  });

  it("are issued only to known users, for at most a year", async () => {
    const db = await databases.open();
    await rejectsWith(issueToken(db, "00000000-0000-4000-8000-000000000000"), "ENOT_FOUND");
    const alice = await createUser(db, { name: "alice" });
    await rejectsWith(issueToken(db, alice.uuid, { ttlMs: 0 }), "EINVALID");
    await rejectsWith(issueToken(db, alice.uuid, { ttlMs: 1.5 }), "EINVALID");
    const long = await issueToken(db, alice.uuid, { ttlMs: 100 * tokenTtlMsMax, nowMs: t0 });
    expect(long.record.expiresAt).toBe(t0 + tokenTtlMsMax);
  });

  it("are purged once expired or revoked long enough", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    const expired = await issueToken(db, alice.uuid, { ttlMs: hourMs, nowMs: t0 });
    const revoked = await issueToken(db, alice.uuid, { ttlMs: 10 * hourMs, nowMs: t0 });
    const live = await issueToken(db, alice.uuid, { ttlMs: 10 * hourMs, nowMs: t0 });
    await revokeToken(db, revoked.token, t0 + 2 * hourMs);
    expect(await purgeTokens(db, t0 + hourMs)).toBe(0);
    expect(await purgeTokens(db, t0 + 3 * hourMs)).toBe(2);
    expect(await lookupToken(db, expired.token, t0)).toEqual({ status: "unknown" });
    expect((await lookupToken(db, live.token, t0 + 3 * hourMs)).status).toBe("valid");
  });
});
