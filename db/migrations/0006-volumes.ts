/**
 * Block-storage volumes (the Cinder v3 subset in gateways/volumes/): engine volumes with an
 * owner, a size in GiB and a lifecycle, their snapshots and metadata; and the attachments of
 * volumes to compute servers, rebuilt with a volume id and a state now that volumes exist
 * (0004's table was never written to: no API used it).
 *
 * A volume's attach status is not a column of `volumes`: it is whether a row of
 * `compute_volume_attachments` names it, and that row's state. So the volume service and the
 * compute service never disagree about it, and the unique volume_id is the invariant "attached
 * to at most one server".
 */
import { sql, type ColumnDefinitionBuilder, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  const time = (column: ColumnDefinitionBuilder): ColumnDefinitionBuilder => column.notNull();

  await db.schema
    .createTable("volumes")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("user_uuid", "text", (column) => column.notNull())
    .addColumn("name", "text", (column) => column.notNull().defaultTo(""))
    .addColumn("description", "text")
    .addColumn("size_gib", "bigint", (column) => column.notNull())
    .addColumn("status", "text", (column) => column.notNull())
    .addColumn("engine_name", "text", (column) => column.notNull())
    .addColumn("bootable", "integer", (column) => column.notNull().defaultTo(0))
    .addColumn("image_id", "text")
    .addColumn("snapshot_id", "text")
    .addColumn("source_volid", "text")
    .addColumn("created_at", "bigint", time)
    .addColumn("updated_at", "bigint", time)
    .addUniqueConstraint("volumes_engine_name_unique", ["engine_name"])
    .addCheckConstraint("volumes_size_check", sql`size_gib > 0`)
    .addCheckConstraint("volumes_bootable_check", sql`bootable in (0, 1)`)
    .addCheckConstraint(
      "volumes_status_check",
      sql`status in ('creating', 'available', 'extending', 'deleting', 'error', 'error_deleting', 'error_extending')`,
    )
    .execute();
  await db.schema.createIndex("volumes_owner").on("volumes").columns(["user_uuid", "created_at"]).execute();

  await db.schema
    .createTable("volume_metadata")
    .addColumn("volume_id", "text", (column) => column.notNull().references("volumes.id").onDelete("cascade"))
    .addColumn("key", "text", (column) => column.notNull())
    .addColumn("value", "text", (column) => column.notNull())
    .addPrimaryKeyConstraint("volume_metadata_pk", ["volume_id", "key"])
    .execute();

  await db.schema
    .createTable("volume_snapshots")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("user_uuid", "text", (column) => column.notNull())
    // No foreign key: Cinder refuses to delete a volume with snapshots; the service checks.
    .addColumn("volume_id", "text", (column) => column.notNull())
    .addColumn("name", "text", (column) => column.notNull().defaultTo(""))
    .addColumn("description", "text")
    .addColumn("size_gib", "bigint", (column) => column.notNull())
    .addColumn("status", "text", (column) => column.notNull())
    .addColumn("engine_name", "text", (column) => column.notNull())
    .addColumn("created_at", "bigint", time)
    .addColumn("updated_at", "bigint", time)
    .addUniqueConstraint("volume_snapshots_engine_name_unique", ["engine_name"])
    .addCheckConstraint("volume_snapshots_status_check", sql`status in ('creating', 'available', 'deleting', 'error', 'error_deleting')`)
    .execute();
  await db.schema.createIndex("volume_snapshots_owner").on("volume_snapshots").columns(["user_uuid", "created_at"]).execute();
  await db.schema.createIndex("volume_snapshots_volume").on("volume_snapshots").column("volume_id").execute();

  await db.schema.dropTable("compute_volume_attachments").execute();
  await db.schema
    .createTable("compute_volume_attachments")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("server_id", "text", (column) => column.notNull().references("compute_servers.id"))
    .addColumn("volume_id", "text", (column) => column.notNull().references("volumes.id"))
    .addColumn("device", "text", (column) => column.notNull())
    .addColumn("state", "text", (column) => column.notNull())
    .addColumn("created_at", "bigint", time)
    .addColumn("updated_at", "bigint", time)
    .addUniqueConstraint("compute_volume_attachments_volume_unique", ["volume_id"])
    .addUniqueConstraint("compute_volume_attachments_device_unique", ["server_id", "device"])
    .addCheckConstraint("compute_volume_attachments_state_check", sql`state in ('attaching', 'attached', 'detaching')`)
    .execute();
  await db.schema.createIndex("compute_volume_attachments_server").on("compute_volume_attachments").columns(["server_id", "created_at"]).execute();
}

/** Back to 0004's (empty) attachments table; volumes and their snapshots go. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("compute_volume_attachments").execute();
  await db.schema
    .createTable("compute_volume_attachments")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("server_id", "text", (column) => column.notNull().references("compute_servers.id").onDelete("cascade"))
    .addColumn("volume_name", "text", (column) => column.notNull())
    .addColumn("device", "text", (column) => column.notNull())
    .addColumn("created_at", "bigint", (column) => column.notNull())
    .addUniqueConstraint("compute_volume_attachments_volume_unique", ["volume_name"])
    .execute();
  await db.schema.createIndex("compute_volume_attachments_server").on("compute_volume_attachments").columns(["server_id", "created_at"]).execute();
  for (const table of ["volume_snapshots", "volume_metadata", "volumes"]) await db.schema.dropTable(table).execute();
}
