/**
 * The compute service (Cyclades, issue 8): flavors, keypairs, servers with their metadata and
 * extra volume attachments, and the durable job table that drives every server state change
 * (compute/README.md "Jobs"). Tables and columns are described in db/schema.ts.
 *
 * Two partial unique indexes hold the job table's invariant on both engines, whatever a buggy
 * or racing caller does: at most one `queued` and at most one `running` job per server (a
 * DELETE may wait queued behind the running job it does not cancel).
 */
import { sql, type ColumnDefinitionBuilder, type Kysely } from "kysely";
import type { DatabaseEngine } from "../connect.ts";

export async function up(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void> {
  const flag = (column: ColumnDefinitionBuilder): ColumnDefinitionBuilder => column.notNull().defaultTo(0);
  const time = (column: ColumnDefinitionBuilder): ColumnDefinitionBuilder => column.notNull();

  await db.schema
    .createTable("compute_flavors")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("name", "text", (column) => column.notNull())
    .addColumn("vcpus", "integer", (column) => column.notNull())
    .addColumn("ram_mib", "bigint", (column) => column.notNull())
    .addColumn("disk_gib", "bigint", (column) => column.notNull())
    .addColumn("is_public", "integer", (column) => column.notNull().defaultTo(1))
    .addColumn("disabled", "integer", flag)
    .addColumn("description", "text")
    .addColumn("extra_specs", "text", (column) => column.notNull().defaultTo("{}"))
    .addColumn("created_at", "bigint", time)
    .addUniqueConstraint("compute_flavors_name_unique", ["name"])
    .addCheckConstraint("compute_flavors_figures_check", sql`vcpus > 0 and ram_mib > 0 and disk_gib >= 0`)
    .addCheckConstraint("compute_flavors_flags_check", sql`is_public in (0, 1) and disabled in (0, 1)`)
    .execute();

  await db.schema
    .createTable("compute_keypairs")
    .addColumn("user_uuid", "text", (column) => column.notNull())
    .addColumn("name", "text", (column) => column.notNull())
    .addColumn("public_key", "text", (column) => column.notNull())
    .addColumn("fingerprint", "text", (column) => column.notNull())
    .addColumn("type", "text", (column) => column.notNull().defaultTo("ssh"))
    .addColumn("created_at", "bigint", time)
    .addPrimaryKeyConstraint("compute_keypairs_pk", ["user_uuid", "name"])
    .addCheckConstraint("compute_keypairs_type_check", sql`type in ('ssh', 'x509')`)
    .execute();

  await db.schema
    .createTable("compute_servers")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("user_uuid", "text", (column) => column.notNull())
    .addColumn("name", "text", (column) => column.notNull())
    // No foreign key: a flavor may be deleted while servers made from it live on (Nova keeps
    // the figures on the instance, as vcpus/ram_mib/disk_gib do here).
    .addColumn("flavor_id", "text", (column) => column.notNull())
    .addColumn("vcpus", "integer", (column) => column.notNull())
    .addColumn("ram_mib", "bigint", (column) => column.notNull())
    .addColumn("disk_gib", "bigint", (column) => column.notNull())
    .addColumn("image_id", "text")
    .addColumn("root_volume", "text", (column) => column.notNull())
    .addColumn("key_name", "text")
    .addColumn("public_key", "text")
    .addColumn("user_data", "text")
    .addColumn("boot_properties", "text", (column) => column.notNull().defaultTo("{}"))
    .addColumn("vm_state", "text", (column) => column.notNull())
    .addColumn("task_state", "text")
    .addColumn("power_state", "integer", flag)
    .addColumn("progress", "integer", flag)
    .addColumn("fault", "text")
    .addColumn("created_at", "bigint", time)
    .addColumn("updated_at", "bigint", time)
    .addColumn("launched_at", "bigint")
    .addColumn("terminated_at", "bigint")
    .addColumn("deleted_at", "bigint")
    .addCheckConstraint("compute_servers_vm_state_check", sql`vm_state in ('building', 'active', 'stopped', 'error', 'deleted')`)
    .addCheckConstraint(
      "compute_servers_task_state_check",
      sql`task_state is null or task_state in ('spawning', 'powering-on', 'powering-off', 'rebooting', 'rebooting_hard', 'resize_prep', 'image_snapshot', 'deleting')`,
    )
    .addCheckConstraint("compute_servers_figures_check", sql`vcpus > 0 and ram_mib > 0 and disk_gib >= 0 and progress between 0 and 100`)
    .execute();
  // "My servers" (list, quota views) and reconcile's walk over the live ones.
  await db.schema.createIndex("compute_servers_user").on("compute_servers").columns(["user_uuid", "created_at"]).execute();
  await db.schema.createIndex("compute_servers_vm_state").on("compute_servers").column("vm_state").execute();

  await db.schema
    .createTable("compute_server_metadata")
    .addColumn("server_id", "text", (column) => column.notNull().references("compute_servers.id").onDelete("cascade"))
    .addColumn("key", "text", (column) => column.notNull())
    .addColumn("value", "text", (column) => column.notNull())
    .addPrimaryKeyConstraint("compute_server_metadata_pk", ["server_id", "key"])
    .execute();

  await db.schema
    .createTable("compute_jobs")
    .addColumn("id", engine === "postgres" ? "bigint" : "integer", (column) =>
      // Ids order jobs (oldest first) and are never reused: a client key `compute:<server>:<id>`
      // names one job's commission forever (0001's reasoning for commission serials).
      engine === "postgres" ? column.generatedByDefaultAsIdentity().primaryKey() : column.primaryKey().autoIncrement(),
    )
    .addColumn("server_id", "text", (column) => column.notNull().references("compute_servers.id").onDelete("cascade"))
    .addColumn("action", "text", (column) => column.notNull())
    .addColumn("args", "text", (column) => column.notNull().defaultTo("{}"))
    .addColumn("state", "text", (column) => column.notNull())
    .addColumn("attempts", "integer", flag)
    // 1 while the API call that queued it is still reserving its quota: not claimable yet
    // (compute-jobs.ts), so a worker never runs a job whose reservation may yet be refused.
    .addColumn("held", "integer", flag)
    .addColumn("error", "text")
    .addColumn("created_at", "bigint", time)
    .addColumn("updated_at", "bigint", time)
    .addCheckConstraint("compute_jobs_state_check", sql`state in ('queued', 'running', 'done', 'failed') and held in (0, 1)`)
    .addCheckConstraint(
      "compute_jobs_action_check",
      sql`action in ('create', 'start', 'stop', 'reboot', 'resize', 'createImage', 'delete')`,
    )
    .execute();
  await db.schema.createIndex("compute_jobs_server").on("compute_jobs").columns(["server_id", "id"]).execute();
  await db.schema
    .createIndex("compute_jobs_one_queued")
    .on("compute_jobs")
    .column("server_id")
    .unique()
    .where(sql<boolean>`state = 'queued'`)
    .execute();
  await db.schema
    .createIndex("compute_jobs_one_running")
    .on("compute_jobs")
    .column("server_id")
    .unique()
    .where(sql<boolean>`state = 'running'`)
    .execute();
  // The worker's claim and start-up scans: queued and running jobs, oldest first.
  await db.schema.createIndex("compute_jobs_state_id").on("compute_jobs").columns(["state", "id"]).execute();

  // Extra engine volumes attached to a server (`os-volume_attachments`); the API comes later.
  await db.schema
    .createTable("compute_volume_attachments")
    .addColumn("id", "text", (column) => column.primaryKey())
    .addColumn("server_id", "text", (column) => column.notNull().references("compute_servers.id").onDelete("cascade"))
    .addColumn("volume_name", "text", (column) => column.notNull())
    .addColumn("device", "text", (column) => column.notNull())
    .addColumn("created_at", "bigint", time)
    .addUniqueConstraint("compute_volume_attachments_volume_unique", ["volume_name"])
    .execute();
  await db.schema.createIndex("compute_volume_attachments_server").on("compute_volume_attachments").columns(["server_id", "created_at"]).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ["compute_volume_attachments", "compute_jobs", "compute_server_metadata", "compute_servers", "compute_keypairs", "compute_flavors"]) {
    await db.schema.dropTable(table).execute();
  }
}
