/**
 * Servers, their metadata and attachments. A server is created together with its `create` job
 * (one transaction: neither exists without the other); every later state change goes through
 * compute-jobs.ts. Deleted servers keep their row (vm_state `deleted`, deleted_at set):
 * `changes-since` lists them and the job history stays readable.
 */
import type { Transaction } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { ComputeTaskState, ComputeVmState, Database } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkText, checkUuid } from "./limits.ts";
import {
  checkStringRecord,
  computeNameLengthMax,
  jobFromRow,
  serverFromRow,
  serverMetadataItemsMax,
  serverMetadataKeyLengthMax,
  serverMetadataValueLengthMax,
  serverPatchColumns,
  userDataBase64LengthMax,
  type ComputeJob,
  type ComputeServer,
  type ComputeServerPatch,
} from "./compute-common.ts";

/** What a new server is made of; the rest (states, times) starts at its defaults. */
export type NewComputeServer = Pick<
  ComputeServer,
  "id" | "userUuid" | "name" | "flavorId" | "vcpus" | "ramMiB" | "diskGiB" | "imageId" | "rootVolume" | "keyName" | "publicKey" | "userData" | "bootProperties"
> & { metadata: Record<string, string> };

/**
 * The server (building, spawning) with its metadata and its queued `create` job, held: the
 * caller reserves the quota, then releases the job (releaseComputeJob) or withdraws the server.
 */
export async function createComputeServer(
  db: MetadataDatabase,
  input: NewComputeServer,
  jobArgs: Record<string, unknown>,
  nowMs = Date.now(),
): Promise<{ server: ComputeServer; job: ComputeJob }> {
  const metadata = checkMetadata(input.metadata);
  if (input.userData !== null && input.userData.length > userDataBase64LengthMax) {
    throw new DbError("EINVALID", `user_data is longer than ${userDataBase64LengthMax} characters of base64`);
  }
  const row = {
    id: checkUuid("id", input.id),
    user_uuid: checkUuid("userUuid", input.userUuid),
    name: checkText("name", input.name, computeNameLengthMax),
    flavor_id: input.flavorId,
    vcpus: checkInteger("vcpus", input.vcpus, { min: 1 }),
    ram_mib: checkInteger("ramMiB", input.ramMiB, { min: 1 }),
    disk_gib: checkInteger("diskGiB", input.diskGiB, { min: 0 }),
    image_id: input.imageId,
    root_volume: input.rootVolume,
    key_name: input.keyName,
    public_key: input.publicKey,
    user_data: input.userData,
    boot_properties: JSON.stringify(input.bootProperties),
    vm_state: "building" as const,
    task_state: "spawning" as const,
    power_state: 0,
    progress: 0,
    fault: null,
    created_at: checkInteger("nowMs", nowMs, { min: 0 }),
    updated_at: nowMs,
    launched_at: null,
    terminated_at: null,
    deleted_at: null,
  };
  return inTransaction(db, async (tx) => {
    const server = await tx.insertInto("compute_servers").values(row).returningAll().executeTakeFirstOrThrow();
    await insertMetadata(tx, row.id, metadata);
    const job = await tx
      .insertInto("compute_jobs")
      .values({ server_id: row.id, action: "create", args: JSON.stringify(jobArgs), state: "queued", attempts: 0, held: 1, error: null, created_at: nowMs, updated_at: nowMs })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { server: serverFromRow(server), job: jobFromRow(job) };
  });
}

/**
 * Undoes createComputeServer while its create job is still queued (quota refused at the API,
 * compute/quota.ts): the row goes as if never made. False when a worker already took the job
 * (then the job's own commission step decides the outcome).
 */
export async function withdrawComputeServer(db: MetadataDatabase, id: string): Promise<boolean> {
  return inTransaction(db, async (tx) => {
    const started = await tx.selectFrom("compute_jobs").select("id").where("server_id", "=", id).where("state", "!=", "queued").executeTakeFirst();
    if (started !== undefined) return false;
    const result = await tx.deleteFrom("compute_servers").where("id", "=", id).where("vm_state", "=", "building").executeTakeFirst();
    return result.numDeletedRows === 1n;
  });
}

/** The server, deleted ones too (the caller decides what a deleted one means). */
export async function getComputeServer(db: MetadataDatabase, id: string): Promise<ComputeServer | undefined> {
  const row = await db.kysely.selectFrom("compute_servers").selectAll().where("id", "=", id).executeTakeFirst();
  return row && serverFromRow(row);
}

export interface ComputeServerListOptions {
  /** One owner's; all owners' when absent (reconcile, admins). */
  userUuid?: string;
  /** Deleted servers too (changes-since; reconcile). */
  includeDeleted?: boolean;
  /** Only servers updated at or after this time. */
  changedSinceMs?: number;
  vmStates?: readonly ComputeVmState[];
}

/** Newest first, as Nova lists (created_at desc, then id). */
export async function listComputeServers(db: MetadataDatabase, options: ComputeServerListOptions = {}): Promise<ComputeServer[]> {
  const { userUuid, changedSinceMs, vmStates } = options;
  const rows = await db.kysely
    .selectFrom("compute_servers")
    .selectAll()
    .$if(userUuid !== undefined, (query) => query.where("user_uuid", "=", userUuid!))
    .$if(options.includeDeleted !== true, (query) => query.where("vm_state", "!=", "deleted"))
    .$if(changedSinceMs !== undefined, (query) => query.where("updated_at", ">=", changedSinceMs!))
    .$if(vmStates !== undefined && vmStates.length > 0, (query) => query.where("vm_state", "in", vmStates!))
    .orderBy("created_at", "desc")
    .orderBy("id", "desc")
    .execute();
  return rows.map(serverFromRow);
}

/**
 * Changes the server's columns. `expect` guards the change (reconcile: only if nothing moved
 * meanwhile); returns the server after, or undefined when it is missing or the guard failed.
 */
export async function updateComputeServer(
  db: MetadataDatabase,
  id: string,
  patch: ComputeServerPatch,
  nowMs = Date.now(),
  expect: { vmState?: ComputeVmState; taskState?: ComputeTaskState | null } = {},
): Promise<ComputeServer | undefined> {
  const row = await db.kysely
    .updateTable("compute_servers")
    .set({ ...serverPatchColumns(patch), updated_at: checkInteger("nowMs", nowMs, { min: 0 }) })
    .where("id", "=", id)
    .$if(expect.vmState !== undefined, (query) => query.where("vm_state", "=", expect.vmState!))
    .$if(expect.taskState !== undefined, (query) => (expect.taskState === null ? query.where("task_state", "is", null) : query.where("task_state", "=", expect.taskState!)))
    .returningAll()
    .executeTakeFirst();
  return row && serverFromRow(row);
}

export async function getComputeServerMetadata(db: MetadataDatabase, id: string): Promise<Record<string, string>> {
  const rows = await db.kysely.selectFrom("compute_server_metadata").select(["key", "value"]).where("server_id", "=", id).orderBy("key").execute();
  return Object.fromEntries(rows.map((row) => [row.key, row.value]));
}

/**
 * Merges `metadata` into the server's (or replaces it whole); the result. ENOT_FOUND for a
 * missing or deleted server, EINVALID past serverMetadataItemsMax items in all.
 */
export async function setComputeServerMetadata(
  db: MetadataDatabase,
  id: string,
  metadata: Record<string, string>,
  replace: boolean,
  nowMs = Date.now(),
): Promise<Record<string, string>> {
  const checked = checkMetadata(metadata);
  return inTransaction(db, async (tx) => {
    await lockLiveServer(tx, db.engine, id);
    if (replace) await tx.deleteFrom("compute_server_metadata").where("server_id", "=", id).execute();
    else if (Object.keys(checked).length > 0) await tx.deleteFrom("compute_server_metadata").where("server_id", "=", id).where("key", "in", Object.keys(checked)).execute();
    await insertMetadata(tx, id, checked);
    const rows = await tx.selectFrom("compute_server_metadata").select(["key", "value"]).where("server_id", "=", id).orderBy("key").execute();
    if (rows.length > serverMetadataItemsMax) throw new DbError("EQUOTA_EXCEEDED", `Quota exceeded for metadata_items: at most ${serverMetadataItemsMax}`, { limit: serverMetadataItemsMax });
    await tx.updateTable("compute_servers").set({ updated_at: nowMs }).where("id", "=", id).execute();
    return Object.fromEntries(rows.map((row) => [row.key, row.value]));
  });
}

/** ENOT_FOUND for a missing server or key. */
export async function deleteComputeServerMetadata(db: MetadataDatabase, id: string, key: string, nowMs = Date.now()): Promise<void> {
  await inTransaction(db, async (tx) => {
    await lockLiveServer(tx, db.engine, id);
    const result = await tx.deleteFrom("compute_server_metadata").where("server_id", "=", id).where("key", "=", key).executeTakeFirst();
    if (result.numDeletedRows === 0n) throw new DbError("ENOT_FOUND", `Metadata item was not found`, { key });
    await tx.updateTable("compute_servers").set({ updated_at: nowMs }).where("id", "=", id).execute();
  });
}

async function lockLiveServer(tx: Transaction<Database>, engine: MetadataDatabase["engine"], id: string): Promise<void> {
  const row = await tx
    .selectFrom("compute_servers")
    .select("vm_state")
    .where("id", "=", id)
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirst();
  if (row === undefined || row.vm_state === "deleted") throw new DbError("ENOT_FOUND", `Instance ${id} could not be found.`, { id });
}

async function insertMetadata(tx: Transaction<Database>, id: string, metadata: Record<string, string>): Promise<void> {
  const rows = Object.entries(metadata).map(([key, value]) => ({ server_id: id, key, value }));
  if (rows.length > 0) await tx.insertInto("compute_server_metadata").values(rows).execute();
}

function checkMetadata(metadata: Record<string, string>): Record<string, string> {
  return checkStringRecord("metadata", metadata, serverMetadataKeyLengthMax, serverMetadataValueLengthMax, serverMetadataItemsMax);
}
