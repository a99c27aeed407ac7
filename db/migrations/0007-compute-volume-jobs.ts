/**
 * Two more compute job actions, `attachVolume` and `detachVolume` (compute/README.md
 * "Volumes"): a hot-plug is a job like any other state change, so the one-job-per-server
 * rule, crash resumption and the worker cover it. Only compute_jobs' CHECK on `action` changes.
 *
 * PostgreSQL drops and adds the named constraint. SQLite cannot alter a CHECK, so the table is
 * rebuilt (https://sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema
 * Changes"): a new table with the wider CHECK, the rows copied with their ids, the old one
 * dropped, the new one renamed, its indexes made again. No table references compute_jobs, so
 * foreign keys stay on. The AUTOINCREMENT counter is carried over: job ids are never reused
 * (a commission's client key names a job for ever, 0004), and a withdrawn job's id may be
 * above every id still in the table.
 */
import { sql, type ColumnDefinitionBuilder, type Kysely } from "kysely";
import type { DatabaseEngine } from "../connect.ts";

const actionsBefore = ["create", "start", "stop", "reboot", "resize", "createImage", "delete"];
const actionsAfter = [...actionsBefore, "attachVolume", "detachVolume"];

function actionCheck(actions: readonly string[]) {
  return sql`action in (${sql.join(actions.map((action) => sql.lit(action)))})`;
}

export async function up(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void> {
  await setActions(db, engine, actionsAfter);
}

/** Jobs of the new actions go first (the narrower CHECK would refuse them). */
export async function down(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void> {
  await sql`delete from compute_jobs where action in ('attachVolume', 'detachVolume')`.execute(db);
  await setActions(db, engine, actionsBefore);
}

async function setActions(db: Kysely<unknown>, engine: DatabaseEngine, actions: readonly string[]): Promise<void> {
  if (engine === "postgres") {
    await db.schema.alterTable("compute_jobs").dropConstraint("compute_jobs_action_check").execute();
    await db.schema.alterTable("compute_jobs").addCheckConstraint("compute_jobs_action_check", actionCheck(actions)).execute();
    return;
  }
  const sequence = await sql<{ seq: number }>`select seq from sqlite_sequence where name = 'compute_jobs'`.execute(db);
  await createJobsTable(db, "compute_jobs_rebuilt", actions);
  await sql`insert into compute_jobs_rebuilt (id, server_id, action, args, state, attempts, held, error, created_at, updated_at)
    select id, server_id, action, args, state, attempts, held, error, created_at, updated_at from compute_jobs`.execute(db);
  await db.schema.dropTable("compute_jobs").execute();
  await db.schema.alterTable("compute_jobs_rebuilt").renameTo("compute_jobs").execute();
  const seq = sequence.rows[0]?.seq;
  if (seq !== undefined) {
    await sql`update sqlite_sequence set seq = max(seq, ${seq}) where name = 'compute_jobs'`.execute(db);
    await sql`insert into sqlite_sequence (name, seq) select 'compute_jobs', ${seq} where not exists (select 1 from sqlite_sequence where name = 'compute_jobs')`.execute(db);
  }
  await createJobsIndexes(db);
}

/** 0004's compute_jobs on SQLite, with `actions` in the CHECK. */
async function createJobsTable(db: Kysely<unknown>, name: string, actions: readonly string[]): Promise<void> {
  const flag = (column: ColumnDefinitionBuilder): ColumnDefinitionBuilder => column.notNull().defaultTo(0);
  await db.schema
    .createTable(name)
    .addColumn("id", "integer", (column) => column.primaryKey().autoIncrement())
    .addColumn("server_id", "text", (column) => column.notNull().references("compute_servers.id").onDelete("cascade"))
    .addColumn("action", "text", (column) => column.notNull())
    .addColumn("args", "text", (column) => column.notNull().defaultTo("{}"))
    .addColumn("state", "text", (column) => column.notNull())
    .addColumn("attempts", "integer", flag)
    .addColumn("held", "integer", flag)
    .addColumn("error", "text")
    .addColumn("created_at", "bigint", (column) => column.notNull())
    .addColumn("updated_at", "bigint", (column) => column.notNull())
    .addCheckConstraint("compute_jobs_state_check", sql`state in ('queued', 'running', 'done', 'failed') and held in (0, 1)`)
    .addCheckConstraint("compute_jobs_action_check", actionCheck(actions))
    .execute();
}

/** 0004's indexes of compute_jobs (dropped with the old table on SQLite). */
async function createJobsIndexes(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex("compute_jobs_server").on("compute_jobs").columns(["server_id", "id"]).execute();
  await db.schema.createIndex("compute_jobs_one_queued").on("compute_jobs").column("server_id").unique().where(sql<boolean>`state = 'queued'`).execute();
  await db.schema.createIndex("compute_jobs_one_running").on("compute_jobs").column("server_id").unique().where(sql<boolean>`state = 'running'`).execute();
  await db.schema.createIndex("compute_jobs_state_id").on("compute_jobs").columns(["state", "id"]).execute();
}
