/**
 * Pithos+ metadata (synnefo.md B): accounts, groups, containers, objects, versions, sharing.
 * Tables and columns are described in db/schema.ts; the data itself lives in the engine, one
 * map per version (map_name).
 *
 * Two engine differences, both explicit branches:
 * - serial columns, as in 0001;
 * - listing order. Swift and Pithos list in UTF-8 byte order (swift.md 8, `LC_ALL=C sort`).
 *   SQLite's default BINARY collation compares UTF-8 text with memcmp: byte order already.
 *   PostgreSQL compares text in the database's collation (en_US.UTF-8 puts `a` before `B`),
 *   so names and paths are declared COLLATE "C", which compares bytes — and lets a btree
 *   index serve `path >= $1 and path < $2` range scans in that order.
 */
import { sql, type ColumnDefinitionBuilder, type Kysely } from "kysely";
import type { DatabaseEngine } from "../connect.ts";

export async function up(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void> {
  const serialType = engine === "postgres" ? "bigint" : "integer";
  const serial = (column: ColumnDefinitionBuilder): ColumnDefinitionBuilder =>
    // As commissions.serial: never reused, even after a delete.
    engine === "postgres" ? column.generatedByDefaultAsIdentity().primaryKey() : column.primaryKey().autoIncrement();
  const byteOrder = (column: ColumnDefinitionBuilder): ColumnDefinitionBuilder =>
    engine === "postgres" ? column.modifyFront(sql`collate "C"`).notNull() : column.notNull();

  await db.schema
    .createTable("pithos_accounts")
    .addColumn("account", "text", (column) => byteOrder(column).primaryKey())
    .addColumn("meta", "text", (column) => column.notNull().defaultTo("{}"))
    .addColumn("quota_bytes", "bigint")
    .addColumn("created_at", "bigint", (column) => column.notNull())
    .addColumn("modified_at", "bigint", (column) => column.notNull())
    .addCheckConstraint("pithos_accounts_quota_check", sql`quota_bytes is null or quota_bytes >= 0`)
    .execute();

  await db.schema
    .createTable("pithos_groups")
    .addColumn("account", "text", (column) => column.notNull().references("pithos_accounts.account").onDelete("cascade"))
    .addColumn("name", "text", (column) => byteOrder(column))
    .addColumn("member", "text", (column) => column.notNull())
    .addPrimaryKeyConstraint("pithos_groups_pk", ["account", "name", "member"])
    .execute();
  // "Which groups is this user in?": accessFor and listSharedWithMe.
  await db.schema.createIndex("pithos_groups_member").on("pithos_groups").column("member").execute();

  await db.schema
    .createTable("pithos_containers")
    .addColumn("id", serialType, serial)
    .addColumn("account", "text", (column) => column.notNull().references("pithos_accounts.account"))
    .addColumn("name", "text", (column) => byteOrder(column))
    .addColumn("versioning", "text", (column) => column.notNull().defaultTo("auto"))
    .addColumn("quota_bytes", "bigint")
    .addColumn("meta", "text", (column) => column.notNull().defaultTo("{}"))
    .addColumn("object_count", "bigint", (column) => column.notNull().defaultTo(0))
    .addColumn("bytes_used", "bigint", (column) => column.notNull().defaultTo(0))
    .addColumn("created_at", "bigint", (column) => column.notNull())
    .addColumn("modified_at", "bigint", (column) => column.notNull())
    .addUniqueConstraint("pithos_containers_account_name_unique", ["account", "name"])
    .addCheckConstraint("pithos_containers_versioning_check", sql`versioning in ('auto', 'none')`)
    .addCheckConstraint("pithos_containers_quota_check", sql`quota_bytes is null or quota_bytes >= 0`)
    .addCheckConstraint("pithos_containers_usage_check", sql`object_count >= 0 and bytes_used >= 0`)
    .execute();

  await db.schema
    .createTable("pithos_objects")
    .addColumn("id", serialType, serial)
    .addColumn("container_id", "bigint", (column) => column.notNull().references("pithos_containers.id").onDelete("cascade"))
    .addColumn("path", "text", (column) => byteOrder(column))
    .addColumn("uuid", "text", (column) => column.notNull())
    .addColumn("public_token", "text")
    // The listing index: (container_id, path) in byte order.
    .addUniqueConstraint("pithos_objects_container_path_unique", ["container_id", "path"])
    .addUniqueConstraint("pithos_objects_uuid_unique", ["uuid"])
    .addUniqueConstraint("pithos_objects_public_token_unique", ["public_token"])
    .execute();

  await db.schema
    .createTable("pithos_sharing")
    .addColumn("object_id", "bigint", (column) => column.notNull().references("pithos_objects.id").onDelete("cascade"))
    .addColumn("access", "text", (column) => column.notNull())
    .addColumn("grantee", "text", (column) => column.notNull())
    .addPrimaryKeyConstraint("pithos_sharing_pk", ["object_id", "access", "grantee"])
    .addCheckConstraint("pithos_sharing_access_check", sql`access in ('read', 'write')`)
    .execute();
  await db.schema.createIndex("pithos_sharing_grantee").on("pithos_sharing").column("grantee").execute();

  await db.schema
    .createTable("pithos_versions")
    .addColumn("serial", serialType, serial)
    .addColumn("object_id", "bigint", (column) => column.notNull().references("pithos_objects.id").onDelete("cascade"))
    .addColumn("state", "text", (column) => column.notNull())
    .addColumn("map_name", "text", (column) => column.notNull())
    .addColumn("size_bytes", "bigint", (column) => column.notNull())
    .addColumn("content_hash", "text", (column) => column.notNull())
    .addColumn("etag", "text", (column) => column.notNull())
    .addColumn("content_type", "text", (column) => column.notNull())
    .addColumn("content_encoding", "text")
    .addColumn("content_disposition", "text")
    .addColumn("manifest", "text")
    .addColumn("slo_manifest", "text")
    .addColumn("meta", "text", (column) => column.notNull().defaultTo("{}"))
    .addColumn("delete_at", "bigint")
    .addColumn("modified_at", "bigint", (column) => column.notNull())
    .addColumn("modified_by", "text", (column) => column.notNull())
    .addColumn("ended_at", "bigint")
    .addCheckConstraint("pithos_versions_state_check", sql`state in ('current', 'history', 'deleted')`)
    .addCheckConstraint(
      "pithos_versions_ended_check",
      sql`(state = 'current' and ended_at is null) or (state <> 'current' and ended_at is not null)`,
    )
    .addCheckConstraint("pithos_versions_size_check", sql`size_bytes >= 0`)
    .execute();
  // At most one current version per object; both engines have partial unique indexes. The
  // predicate is literal SQL: PostgreSQL takes no parameters in DDL.
  await db.schema
    .createIndex("pithos_versions_one_current")
    .unique()
    .on("pithos_versions")
    .column("object_id")
    .where(sql<boolean>`state = 'current'`)
    .execute();
  await db.schema.createIndex("pithos_versions_object_serial").on("pithos_versions").columns(["object_id", "serial"]).execute();
  // "Does any version still use this map?" after removing versions.
  await db.schema.createIndex("pithos_versions_map_name").on("pithos_versions").column("map_name").execute();
  // The expirer's scan: current versions with an X-Delete-At, soonest first.
  await db.schema
    .createIndex("pithos_versions_delete_at")
    .on("pithos_versions")
    .column("delete_at")
    .where(sql<boolean>`state = 'current' and delete_at is not null`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ["pithos_versions", "pithos_sharing", "pithos_objects", "pithos_containers", "pithos_groups", "pithos_accounts"]) {
    await db.schema.dropTable(table).execute();
  }
}
