/**
 * Plankton's image registrations (synnefo.md C): one row per image, keyed by the uuid of the
 * Pithos+ object that holds its data. Tables and columns are described in db/schema.ts.
 *
 * The uuid is not a foreign key: pithos_objects.uuid changes when a file is deleted (a later
 * write at that path is a new object, pithos-versions.ts deleteIn), and the image must then
 * disappear with its file, not follow the path. Queries join on the uuid and a current version,
 * so a registration whose file is gone reads as absent (Plankton kept image metadata in the
 * file's own attributes, which went with the file).
 *
 * Flags are integers 0/1 with CHECKs, the same on both engines (SQLite has no boolean type).
 * Sortable text is COLLATE "C" on PostgreSQL, byte order as on SQLite (0002's reason).
 */
import { sql, type ColumnDefinitionBuilder, type Kysely } from "kysely";
import type { DatabaseEngine } from "../connect.ts";

export async function up(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void> {
  const byteOrder = (column: ColumnDefinitionBuilder): ColumnDefinitionBuilder =>
    engine === "postgres" ? column.modifyFront(sql`collate "C"`) : column;
  const flag = (column: ColumnDefinitionBuilder): ColumnDefinitionBuilder => column.notNull().defaultTo(0);

  await db.schema
    .createTable("plankton_images")
    .addColumn("uuid", "text", (column) => byteOrder(column).primaryKey())
    .addColumn("name", "text", byteOrder)
    .addColumn("disk_format", "text", byteOrder)
    .addColumn("container_format", "text", byteOrder)
    .addColumn("status", "text", (column) => byteOrder(column).notNull())
    .addColumn("min_disk", "bigint", (column) => column.notNull().defaultTo(0))
    .addColumn("min_ram", "bigint", (column) => column.notNull().defaultTo(0))
    .addColumn("protected", "integer", flag)
    .addColumn("os_hidden", "integer", flag)
    .addColumn("checksum", "text")
    .addColumn("created_at", "bigint", (column) => column.notNull())
    .addColumn("updated_at", "bigint", (column) => column.notNull())
    .addColumn("properties", "text", (column) => column.notNull().defaultTo("{}"))
    .addColumn("tags", "text", (column) => column.notNull().defaultTo("[]"))
    .addColumn("owner", "text", (column) => column.notNull())
    .addColumn("created_by_upload", "integer", flag)
    .addCheckConstraint("plankton_images_status_check", sql`status in ('queued', 'saving', 'active', 'killed', 'deleted')`)
    .addCheckConstraint("plankton_images_min_check", sql`min_disk >= 0 and min_ram >= 0`)
    .addCheckConstraint(
      "plankton_images_flags_check",
      sql`protected in (0, 1) and os_hidden in (0, 1) and created_by_upload in (0, 1)`,
    )
    .execute();
  // "My images" (listing, quotas) and find-by-name (`openstack image show NAME`, resolveImage).
  await db.schema.createIndex("plankton_images_owner").on("plankton_images").column("owner").execute();
  await db.schema.createIndex("plankton_images_name").on("plankton_images").column("name").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("plankton_images").execute();
}
