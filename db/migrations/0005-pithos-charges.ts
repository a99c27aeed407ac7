/**
 * What each Pithos+ version was charged to its owner's `object-store.diskspace` quota
 * (gateways/pithos/quota.ts). Usually its size; less for an image frozen from a volume, which
 * is charged only the blocks its hashing stored anew (gateways/plankton/freeze.ts). An
 * overwrite or a delete releases what the replaced version was charged, not its size, so usage
 * no longer drifts down when a cheaply charged version goes.
 *
 * Existing versions were charged their size (the only rule before this column): the backfill.
 * On SQLite, ADD COLUMN with NOT NULL needs a default and takes a column CHECK (tested against
 * the existing rows); on PostgreSQL the range check is a table constraint. Both: 0 until the
 * backfill, which runs in the same migration transaction.
 */
import { sql, type Kysely } from "kysely";
import type { DatabaseEngine } from "../connect.ts";

export async function up(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void> {
  await db.schema
    .alterTable("pithos_versions")
    .addColumn("charged_bytes", "bigint", (column) => {
      const required = column.notNull().defaultTo(0);
      return engine === "sqlite" ? required.check(sql`charged_bytes >= 0 and charged_bytes <= size_bytes`) : required;
    })
    .execute();
  await sql`update pithos_versions set charged_bytes = size_bytes`.execute(db);
  if (engine === "postgres") {
    await db.schema
      .alterTable("pithos_versions")
      .addCheckConstraint("pithos_versions_charged_check", sql`charged_bytes >= 0 and charged_bytes <= size_bytes`)
      .execute();
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("pithos_versions").dropColumn("charged_bytes").execute();
}
