/**
 * Swift/Pithos GET container (swift.md 8, synnefo.md B.5 "Listing"): current versions in UTF-8
 * byte order, with prefix, delimiter roll-up, markers, limit, reverse (pithos-listing.ts), and
 * Pithos's `path`, `shared`, `public` and `until` (time travel).
 *
 * One indexed range scan per batch: pithos_objects (container_id, path) in byte order, each
 * object joined to its current version through the one-current-per-object unique index.
 */
import { directoryContentType } from "./pithos-sharing.ts";
import { sql, type ExpressionBuilder, type SqlBool, type Expression } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import type { Database } from "../schema.ts";
import { checkInteger, checkListLimit, pithosListingLimitMax } from "./limits.ts";
import { checkId, objectsWithSharing, versionFromRow, type PithosObject, type PithosVersion } from "./pithos-common.ts";
import { checkListingOptions, lowerOperator, scanListing, upperOperator, type ListingOptions, type NameRange } from "./pithos-listing.ts";

export interface ObjectListingOptions extends ListingOptions {
  /** Pithos `path=p`: prefix `p/` and delimiter `/` (overrides both). */
  path?: string;
  /** Pithos `?shared`: objects with sharing of their own or inherited from a parent. */
  sharedOnly?: boolean;
  /** Pithos `?public`: objects with a public token. */
  publicOnly?: boolean;
  /**
   * Pithos `until=`: the versions that were current at this time (ms), instead of now. Only
   * what is still stored: versions removed under versioning `none` or purged are gone.
   */
  untilMs?: number;
}

export type ObjectListingEntry =
  | { kind: "object"; path: string; object: PithosObject; version: PithosVersion }
  | { kind: "subdir"; subdir: string };

type Objects = ExpressionBuilder<Database & { o: Database["pithos_objects"]; v: Database["pithos_versions"] }, "o" | "v">;

/** Swift GET container. A container that does not exist lists as empty. */
export async function listObjects(
  db: MetadataDatabase,
  containerId: number,
  options: ObjectListingOptions = {},
  nowMs = Date.now(),
): Promise<ObjectListingEntry[]> {
  const id = checkId("containerId", containerId);
  checkListingOptions(options);
  const limit = checkListLimit(options.limit, pithosListingLimitMax);
  const at = options.untilMs === undefined ? checkInteger("nowMs", nowMs, { min: 0 }) : checkInteger("untilMs", options.untilMs, { min: 0 });
  const listing: ListingOptions =
    options.path === undefined ? options : { ...options, prefix: options.path === "" ? "" : `${options.path}/`, delimiter: "/" };

  const fetch = (range: NameRange, reverse: boolean, rowsMax: number) =>
    db.kysely
      .selectFrom("pithos_objects as o")
      .innerJoin("pithos_versions as v", "v.object_id", "o.id")
      .selectAll("v")
      .select(["o.id", "o.container_id", "o.path", "o.uuid", "o.public_token"])
      .where("o.container_id", "=", id)
      .$if(range.lower !== undefined, (query) => query.where("o.path", lowerOperator(range.lower!), range.lower!.value))
      .$if(range.upper !== undefined, (query) => query.where("o.path", upperOperator(range.upper!), range.upper!.value))
      .where((eb) => (options.untilMs === undefined ? currentAt(eb, at) : currentUntil(eb, at)))
      .$if(options.publicOnly === true, (query) => query.where("o.public_token", "is not", null))
      .$if(options.sharedOnly === true, (query) => query.where((eb) => sharedHere(eb)))
      .orderBy("o.path", reverse ? "desc" : "asc")
      .limit(rowsMax)
      .execute();

  const entries = await scanListing(fetch, (row) => row.path, listing, limit);
  const objects = await objectsWithSharing(
    db.kysely,
    entries.flatMap((entry) => (entry.kind === "row" ? [entry.row] : [])),
  );
  const byId = new Map(objects.map((object) => [object.id, object]));
  return entries.map((entry) =>
    entry.kind === "subdir"
      ? entry
      : { kind: "object", path: entry.name, object: byId.get(entry.row.id)!, version: versionFromRow({ ...entry.row, object_id: entry.row.id }) },
  );
}

/** The current version, unless expired. */
function currentAt(eb: Objects, nowMs: number): Expression<SqlBool> {
  return eb.and([eb("v.state", "=", "current"), eb.or([eb("v.delete_at", "is", null), eb("v.delete_at", ">", nowMs)])]);
}

/** The version whose [modified_at, ended_at) span holds the time, unless expired by then. */
function currentUntil(eb: Objects, untilMs: number): Expression<SqlBool> {
  return eb.and([
    eb("v.modified_at", "<=", untilMs),
    eb.or([eb("v.ended_at", "is", null), eb("v.ended_at", ">", untilMs)]),
    eb.or([eb("v.delete_at", "is", null), eb("v.delete_at", ">", untilMs)]),
  ]);
}

/**
 * `o` has sharing of its own, or a parent of it that is a directory object has (`a` or `a/`
 * for `a/b`; pithos-sharing.ts effectiveSharing applies the same rule, parentsOf the same
 * prefixes in JavaScript). Both engines count length and substr in characters.
 */
function sharedHere(eb: Objects): Expression<SqlBool> {
  const path = sql.ref("o.path");
  const parent = sql.ref("p.path");
  return eb.exists(
    eb
      .selectFrom("pithos_objects as p")
      .innerJoin("pithos_sharing as s", "s.object_id", "p.id")
      .select("s.object_id")
      .whereRef("p.container_id", "=", "o.container_id")
      .where(
        sql<SqlBool>`substr(${path}, 1, length(${parent})) = ${parent} and (length(${path}) = length(${parent})
          or ((substr(${path}, length(${parent}) + 1, 1) = '/' or substr(${parent}, length(${parent}), 1) = '/')
            and exists (select 1 from pithos_versions dv where dv.object_id = p.id and dv.state = 'current'
              and dv.content_type like ${`${directoryContentType}%`})))`,
      ),
  );
}
