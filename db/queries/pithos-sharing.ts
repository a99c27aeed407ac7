/**
 * Pithos+ sharing and public links (synnefo.md B.5).
 *
 * `X-Object-Sharing: read=u1,acct:group,*;write=u3` is stored as pithos_sharing rows, one
 * per entry. An object without sharing of its own inherits the nearest parent's, where the
 * parents of `a/b/c` are `a/b/`, `a/b`, `a/`, `a` (Pithos's access_inherit; a parent is any
 * object at that path, usually an application/directory marker). Write implies read.
 *
 *   accessFor(user, a/b/c):  owner? ─► own sharing of a/b/c ─► a/b/ ─► a/b ─► a/ ─► a ─► none
 *                                           (first one that has any sharing decides)
 *
 * A public object has a token (`/pithos/public/<token>`) that reads its current version; the
 * token gives no access to any other path (Pithos 0.17 fix).
 */
import { randomInt } from "node:crypto";
import type { Transaction } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError, isUniqueViolation } from "../errors.ts";
import type { Database } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkListLimit, checkUuid, pithosGroupNameLengthMax, pithosListingLimitMax, pithosSharingEntriesMax } from "./limits.ts";
import {
  checkAccount,
  checkId,
  checkObjectPath,
  loadSharing,
  locateObject,
  type LocatedObject,
  type PithosSharing,
} from "./pithos-common.ts";
import { compareNames } from "./pithos-listing.ts";

export type PithosAccess = "owner" | "write" | "read" | "none";

/**
 * Replaces the object's own sharing; null (or both lists empty) removes it. Entries are user
 * uuids, `<account uuid>:<group>` or `*`. ENOT_FOUND unless the object has a current version.
 */
export async function setSharing(db: MetadataDatabase, objectId: number, sharing: PithosSharing | null): Promise<PithosSharing | null> {
  const id = checkId("objectId", objectId);
  const read = checkGrantees("read", sharing?.read ?? []);
  const write = checkGrantees("write", sharing?.write ?? []);
  if (read.length + write.length > pithosSharingEntriesMax) {
    throw new DbError("EINVALID", `sharing has at most ${pithosSharingEntriesMax} entries`, { entries: read.length + write.length });
  }
  return inTransaction(db, async (tx) => {
    await lockLiveObject(tx, db.engine, id);
    await tx.deleteFrom("pithos_sharing").where("object_id", "=", id).execute();
    const rows = [
      ...read.map((grantee) => ({ object_id: id, access: "read" as const, grantee })),
      ...write.map((grantee) => ({ object_id: id, access: "write" as const, grantee })),
    ];
    if (rows.length > 0) await tx.insertInto("pithos_sharing").values(rows).execute();
    return rows.length === 0 ? null : { read, write };
  });
}

/** Pithos+ directory objects: the only parents whose sharing their children inherit. */
export const directoryContentType = "application/directory";

export interface EffectiveSharing {
  sharing: PithosSharing;
  /** The object the sharing is set on: `path` itself or a parent (X-Object-Shared-By). */
  objectId: number;
  path: string;
}

/**
 * The sharing that applies at `path` (which need not exist), undefined when none does: the
 * object's own, else that of the nearest parent that is a directory object (current version
 * of type `application/directory`), as Pithos+ inherits it (synnefo.md B.5). A plain file's
 * sharing is its own: sharing `a` does not open `a/b`.
 */
export async function effectiveSharing(db: MetadataDatabase, containerId: number, path: string): Promise<EffectiveSharing | undefined> {
  const id = checkId("containerId", containerId);
  const own = checkObjectPath(path);
  const candidates = [own, ...parentsOf(path)];
  const rows = await db.kysely
    .selectFrom("pithos_objects as o")
    .select(["o.id", "o.path"])
    .where("o.container_id", "=", id)
    .where("o.path", "in", candidates)
    .where(({ exists, selectFrom }) => exists(selectFrom("pithos_sharing as s").select("s.object_id").whereRef("s.object_id", "=", "o.id")))
    .where((eb) =>
      eb.or([
        eb("o.path", "=", own),
        eb.exists(
          eb
            .selectFrom("pithos_versions as v")
            .select("v.serial")
            .whereRef("v.object_id", "=", "o.id")
            .where("v.state", "=", "current")
            .where("v.content_type", "like", `${directoryContentType}%`),
        ),
      ]),
    )
    .execute();
  const nearest = rows.sort((a, b) => b.path.length - a.path.length)[0];
  if (nearest === undefined) return undefined;
  const sharing = (await loadSharing(db.kysely, [nearest.id])).get(nearest.id)!;
  return { sharing, objectId: nearest.id, path: nearest.path };
}

/** `a/b/c` → `a/b/`, `a/b`, `a/`, `a`: the paths a sharing is inherited from, nearest first. */
export function parentsOf(path: string): string[] {
  const parents: string[] = [];
  for (let at = path.lastIndexOf("/", path.length - 2); at >= 0; at = at === 0 ? -1 : path.lastIndexOf("/", at - 1)) {
    parents.push(path.slice(0, at + 1));
    if (at > 0) parents.push(path.slice(0, at));
  }
  return [...new Set(parents)]; // `a//b` reaches `a/` twice
}

/**
 * What `userUuid` may do at `path` of `ownerAccount`'s container: the owner everything, others
 * what the effective sharing grants them directly, through `*`, or through a group
 * `<account>:<group>` they are a member of.
 */
export async function accessFor(
  db: MetadataDatabase,
  userUuid: string,
  ownerAccount: string,
  containerId: number,
  path: string,
): Promise<PithosAccess> {
  const user = checkUuid("userUuid", userUuid);
  const owner = checkAccount(ownerAccount);
  const container = await db.kysely
    .selectFrom("pithos_containers")
    .select("account")
    .where("id", "=", checkId("containerId", containerId))
    .executeTakeFirst();
  if (container === undefined) throw new DbError("ENOT_FOUND", `no container ${containerId}`, { containerId });
  if (container.account !== owner) throw new DbError("EINVALID", `container ${containerId} is not ${owner}'s`, { containerId, ownerAccount });
  if (user === owner) return "owner";
  const effective = await effectiveSharing(db, containerId, path);
  if (effective === undefined) return "none";
  const grantees = new Set(await granteesOf(db, user));
  if (effective.sharing.write.some((entry) => grantees.has(entry))) return "write";
  if (effective.sharing.read.some((entry) => grantees.has(entry))) return "read";
  return "none";
}

/** The sharing entries that name this user: their uuid, `*`, and `<account>:<group>` of their groups. */
async function granteesOf(db: MetadataDatabase, user: string): Promise<string[]> {
  const groups = await db.kysely.selectFrom("pithos_groups").select(["account", "name"]).where("member", "=", user).execute();
  return [user, "*", ...groups.map((group) => `${group.account}:${group.name}`)];
}

export interface SharingAccount {
  account: string;
  modifiedAt: number;
}

/**
 * Pithos `GET /v1`: the accounts (other than the user's) that share something with the user
 * — directly, through a group, or with everyone (`*`) — in byte order, after `marker`.
 */
export async function listSharedWithMe(
  db: MetadataDatabase,
  userUuid: string,
  options: { marker?: string; limit?: number } = {},
): Promise<SharingAccount[]> {
  const user = checkUuid("userUuid", userUuid);
  const limit = checkListLimit(options.limit, pithosListingLimitMax);
  const grantees = await granteesOf(db, user);
  const rows = await db.kysely
    .selectFrom("pithos_accounts as a")
    .select(["a.account", "a.modified_at"])
    .where("a.account", "<>", user)
    .where(({ exists, selectFrom }) =>
      exists(
        selectFrom("pithos_sharing as s")
          .innerJoin("pithos_objects as o", "o.id", "s.object_id")
          .innerJoin("pithos_containers as c", "c.id", "o.container_id")
          .select("s.object_id")
          .whereRef("c.account", "=", "a.account")
          .where("s.grantee", "in", grantees),
      ),
    )
    .$if(options.marker !== undefined, (query) => query.where("a.account", ">", options.marker!))
    .orderBy("a.account")
    .limit(limit)
    .execute();
  return rows.map((row) => ({ account: row.account, modifiedAt: row.modified_at }));
}

/** Characters of a public token: Pithos's default, 16 of [0-9a-zA-Z] (≈ 95 bits). */
const publicTokenAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
export const publicTokenLength = 16;
/** A collision among 62^16 tokens is already unlikely; three in a row is a bug. */
const publicTokenAttemptsMax = 3;

export function newPublicToken(): string {
  let token = "";
  for (let i = 0; i < publicTokenLength; i++) token += publicTokenAlphabet[randomInt(publicTokenAlphabet.length)];
  return token;
}

/**
 * `X-Object-Public: true|false`. Returns the token (the existing one if already public) or
 * null. ENOT_FOUND unless the object has a current version.
 */
export async function setPublic(db: MetadataDatabase, objectId: number, isPublic: boolean): Promise<string | null> {
  const id = checkId("objectId", objectId);
  for (let attempt = 1; ; attempt++) {
    try {
      // One transaction per attempt: a unique violation aborts it on PostgreSQL.
      return await inTransaction(db, async (tx) => {
        const token = await lockLiveObject(tx, db.engine, id);
        if (!isPublic) {
          await tx.updateTable("pithos_objects").set({ public_token: null }).where("id", "=", id).execute();
          return null;
        }
        if (token !== null) return token;
        const fresh = newPublicToken();
        await tx.updateTable("pithos_objects").set({ public_token: fresh }).where("id", "=", id).execute();
        return fresh;
      });
    } catch (error) {
      if (!isUniqueViolation(error) || attempt >= publicTokenAttemptsMax) throw error;
    }
  }
}

/** `/pithos/public/<token>`: the object's current version, undefined if none (or expired). */
export async function getByPublicToken(db: MetadataDatabase, token: string, nowMs = Date.now()): Promise<LocatedObject | undefined> {
  if (typeof token !== "string" || token.length !== publicTokenLength) return undefined;
  return locateObject(db.kysely, "public_token", token, nowMs);
}

/** Locks the object's row; ENOT_FOUND unless it has a current version. Returns its token. */
async function lockLiveObject(tx: Transaction<Database>, engine: MetadataDatabase["engine"], objectId: number): Promise<string | null> {
  const row = await tx
    .selectFrom("pithos_objects")
    .select("public_token")
    .where("id", "=", objectId)
    .where(({ exists, selectFrom }) =>
      exists(selectFrom("pithos_versions").select("serial").where("object_id", "=", objectId).where("state", "=", "current")),
    )
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirst();
  if (row === undefined) throw new DbError("ENOT_FOUND", `no object ${objectId}`, { objectId });
  return row.public_token;
}

// eslint-disable-next-line no-control-regex
const groupEntryPattern = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):([^\s,;:=*/\u0000-\u001f\u007f]+)$/u;

function checkGrantees(access: string, entries: unknown): string[] {
  if (!Array.isArray(entries)) throw new DbError("EINVALID", `sharing.${access} must be a list`, { [access]: entries });
  const checked = entries.map((entry: unknown) => {
    if (entry === "*") return entry;
    const group = typeof entry === "string" ? groupEntryPattern.exec(entry) : null;
    if (group !== null && group[2]!.length <= pithosGroupNameLengthMax) return entry as string;
    return checkUuid(`sharing.${access}`, entry);
  });
  return [...new Set(checked)].sort(compareNames);
}
