/**
 * Identity: users, API tokens, quota resources and holdings, two-phase commissions
 * (synnefo.md D.1–D.3). Tables and constraints are described in db/schema.ts.
 *
 * Written with Kysely's schema builder only; the one engine difference (how a serial column
 * is generated) is an explicit branch. CHECK expressions are plain SQL both engines share.
 */
import { sql, type Kysely } from "kysely";
import type { DatabaseEngine } from "../connect.ts";

export async function up(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void> {
  await db.schema
    .createTable("users")
    .addColumn("uuid", "text", (column) => column.primaryKey())
    .addColumn("name", "text", (column) => column.notNull())
    .addColumn("email", "text")
    .addColumn("state", "text", (column) => column.notNull())
    .addColumn("password_hash", "text")
    .addColumn("created_at", "bigint", (column) => column.notNull())
    .addColumn("updated_at", "bigint", (column) => column.notNull())
    .addUniqueConstraint("users_name_unique", ["name"])
    .addCheckConstraint("users_state_check", sql`state in ('active', 'disabled')`)
    .execute();

  await db.schema
    .createTable("tokens")
    .addColumn("token_hash", "text", (column) => column.primaryKey())
    .addColumn("user_uuid", "text", (column) => column.notNull().references("users.uuid").onDelete("cascade"))
    .addColumn("issued_at", "bigint", (column) => column.notNull())
    .addColumn("expires_at", "bigint", (column) => column.notNull())
    .addColumn("revoked_at", "bigint")
    .execute();
  await db.schema.createIndex("tokens_user_uuid").on("tokens").column("user_uuid").execute();

  await db.schema
    .createTable("quota_resources")
    .addColumn("name", "text", (column) => column.primaryKey())
    .addColumn("description", "text", (column) => column.notNull().defaultTo(""))
    .addColumn("unit", "text", (column) => column.notNull())
    .addColumn("default_limit", "bigint", (column) => column.notNull().defaultTo(0))
    .addCheckConstraint("quota_resources_default_limit_check", sql`default_limit >= 0`)
    .execute();

  await db.schema
    .createTable("quota_holdings")
    .addColumn("user_uuid", "text", (column) => column.notNull().references("users.uuid").onDelete("cascade"))
    .addColumn("resource", "text", (column) => column.notNull().references("quota_resources.name"))
    .addColumn("quota_limit", "bigint")
    .addColumn("usage", "bigint", (column) => column.notNull().defaultTo(0))
    .addColumn("pending_increase", "bigint", (column) => column.notNull().defaultTo(0))
    .addColumn("pending_decrease", "bigint", (column) => column.notNull().defaultTo(0))
    .addPrimaryKeyConstraint("quota_holdings_pk", ["user_uuid", "resource"])
    .addCheckConstraint("quota_holdings_limit_check", sql`quota_limit is null or quota_limit >= 0`)
    .addCheckConstraint(
      "quota_holdings_usage_check",
      sql`usage >= 0 and pending_increase >= 0 and pending_decrease >= 0 and pending_decrease <= usage`,
    )
    .execute();

  await db.schema
    .createTable("commissions")
    .addColumn("serial", engine === "postgres" ? "bigint" : "integer", (column) =>
      // SQLite: INTEGER PRIMARY KEY AUTOINCREMENT never reuses a serial, even of a deleted
      // row; PostgreSQL: an identity column, likewise.
      engine === "postgres" ? column.generatedByDefaultAsIdentity().primaryKey() : column.primaryKey().autoIncrement(),
    )
    .addColumn("client_key", "text", (column) => column.notNull())
    .addColumn("name", "text", (column) => column.notNull().defaultTo(""))
    .addColumn("state", "text", (column) => column.notNull())
    .addColumn("issued_at", "bigint", (column) => column.notNull())
    .addColumn("resolved_at", "bigint")
    .addUniqueConstraint("commissions_client_key_unique", ["client_key"])
    .addCheckConstraint("commissions_state_check", sql`state in ('pending', 'accepted', 'rejected')`)
    .execute();
  await db.schema.createIndex("commissions_state_serial").on("commissions").columns(["state", "serial"]).execute();

  await db.schema
    .createTable("commission_provisions")
    .addColumn("serial", "bigint", (column) => column.notNull().references("commissions.serial").onDelete("cascade"))
    .addColumn("user_uuid", "text", (column) => column.notNull())
    .addColumn("resource", "text", (column) => column.notNull())
    .addColumn("quantity", "bigint", (column) => column.notNull())
    .addPrimaryKeyConstraint("commission_provisions_pk", ["serial", "user_uuid", "resource"])
    .addForeignKeyConstraint(
      "commission_provisions_holding_fk",
      ["user_uuid", "resource"],
      "quota_holdings",
      ["user_uuid", "resource"],
      (constraint) => constraint.onDelete("cascade"),
    )
    .addCheckConstraint("commission_provisions_quantity_check", sql`quantity <> 0`)
    .execute();
  await db.schema
    .createIndex("commission_provisions_holding")
    .on("commission_provisions")
    .columns(["user_uuid", "resource"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ["commission_provisions", "commissions", "quota_holdings", "quota_resources", "tokens", "users"]) {
    await db.schema.dropTable(table).execute();
  }
}
