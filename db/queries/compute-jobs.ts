/**
 * The compute job queue (compute/README.md "Jobs"): durable rows in the metadata database
 * instead of a message broker.
 *
 *   enqueue ──► queued (held) ──release──► queued ──claim──► running ──finish──► done | failed
 *                 │                  ▲   (job + server state, one transaction)
 *                 │                  └── resume at start-up (a crash left it running)
 *                 └── a DELETE cancels it (failed, "cancelled") and queues itself
 *
 * Rules, checked under the server's row lock (FOR UPDATE on PostgreSQL; SQLite's BEGIN
 * IMMEDIATE serialises writers) and backed by partial unique indexes (0004):
 * - one active job per server: an action while a job is queued or running is ECONFLICT;
 * - DELETE wins: it cancels a queued job and waits, queued, behind a running one;
 * - a job whose API call still reserves quota is `held`: queued, not claimable, so a worker
 *   never runs it before the reservation is known to succeed (released) or fail (withdrawn);
 * - a claim moves one job queued → running with the transition guarded in the UPDATE's WHERE,
 *   and never while another job of the same server runs: two workers (processes) cannot both
 *   take a job, nor run two jobs of one server.
 */
import type { Transaction } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError, isUniqueViolation } from "../errors.ts";
import type { ComputeJobAction, ComputeTaskState, ComputeVmState, Database } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger } from "./limits.ts";
import { claimCandidatesMax, jobFromRow, serverFromRow, serverPatchColumns, type ComputeJob, type ComputeServer, type ComputeServerPatch } from "./compute-common.ts";

/** What a cancelled job's error says (delete.ts compensates cancelled jobs by it). */
export const jobCancelledError = "cancelled: the server is being deleted";

export interface EnqueueJobInput {
  serverId: string;
  action: Exclude<ComputeJobAction, "create">;
  args?: Record<string, unknown>;
  /**
   * The task_state the server shows while the job waits and runs; null for the volume jobs,
   * which Nova runs with none (the server stays ACTIVE or SHUTOFF; the job still blocks others).
   */
  taskState: ComputeTaskState | null;
  /** vm_states the action is allowed in (ECONFLICT otherwise); DELETE ignores it. */
  allowedVmStates?: readonly ComputeVmState[];
  /** The action as Nova names it in its conflict message (`os-stop`, `reboot`…). */
  actionName?: string;
  /** Queued held: the caller reserves quota, then releases or withdraws the job. */
  held?: boolean;
}

export interface EnqueuedJob {
  job: ComputeJob;
  server: ComputeServer;
  /** Jobs a DELETE cancelled (they were queued). */
  cancelled: ComputeJob[];
  /** DELETE only: a delete was already queued or running; `job` is that one. */
  existing: boolean;
}

/**
 * Queues an action's job and sets the server's task_state, in one transaction. ENOT_FOUND for
 * a missing or deleted server; ECONFLICT (with Nova's message) when the server's state does
 * not allow the action or another job is queued or running.
 */
export async function enqueueComputeJob(db: MetadataDatabase, input: EnqueueJobInput, nowMs = Date.now()): Promise<EnqueuedJob> {
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, (tx) => enqueueComputeJobIn(tx, db.engine, input, nowMs));
}

/**
 * enqueueComputeJob inside the caller's transaction, for callers that write rows of their own
 * with the job (compute-attachments.ts: the attachment and its job, or neither).
 */
export async function enqueueComputeJobIn(tx: Transaction<Database>, engine: MetadataDatabase["engine"], input: EnqueueJobInput, nowMs: number): Promise<EnqueuedJob> {
  const name = input.actionName ?? input.action;
  const server = await tx
    .selectFrom("compute_servers")
    .selectAll()
    .where("id", "=", input.serverId)
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirst();
  if (server === undefined || server.vm_state === "deleted") {
    throw new DbError("ENOT_FOUND", `Instance ${input.serverId} could not be found.`, { id: input.serverId });
  }
  const active = await activeJobsIn(tx, input.serverId);
  const cancelled: ComputeJob[] = [];
  if (input.action === "delete") {
    const deleting = active.find((job) => job.action === "delete");
    if (deleting !== undefined) return { job: deleting, server: serverFromRow(server), cancelled, existing: true };
    for (const job of active.filter((job) => job.state === "queued")) {
      await tx.updateTable("compute_jobs").set({ state: "failed", error: jobCancelledError, updated_at: nowMs }).where("id", "=", job.id).where("state", "=", "queued").execute();
      cancelled.push({ ...job, state: "failed", error: jobCancelledError, updatedAt: nowMs });
    }
  } else {
    const blocking = active[0];
    if (blocking !== undefined || server.task_state !== null) {
      const taskState = server.task_state ?? blocking?.action;
      throw new DbError("ECONFLICT", `Cannot '${name}' instance ${input.serverId} while it is in task_state ${taskState}`, {
        id: input.serverId,
        taskState,
      });
    }
    if (input.allowedVmStates !== undefined && !input.allowedVmStates.includes(server.vm_state)) {
      throw new DbError("ECONFLICT", `Cannot '${name}' instance ${input.serverId} while it is in vm_state ${server.vm_state}`, {
        id: input.serverId,
        vmState: server.vm_state,
      });
    }
  }
  const job = await tx
    .insertInto("compute_jobs")
    .values({
      server_id: input.serverId,
      action: input.action,
      args: JSON.stringify(input.args ?? {}),
      state: "queued",
      attempts: 0,
      held: input.held === true ? 1 : 0,
      error: null,
      created_at: nowMs,
      updated_at: nowMs,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  const updated = await tx
    .updateTable("compute_servers")
    .set({ task_state: input.taskState, updated_at: nowMs })
    .where("id", "=", input.serverId)
    .returningAll()
    .executeTakeFirstOrThrow();
  return { job: jobFromRow(job), server: serverFromRow(updated), cancelled, existing: false };
}

/**
 * Makes a held job claimable. False when it is no longer queued (a DELETE cancelled it while
 * its quota was being reserved: the caller gives the reservation back).
 */
export async function releaseComputeJob(db: MetadataDatabase, jobId: number, nowMs = Date.now()): Promise<boolean> {
  const result = await db.kysely.updateTable("compute_jobs").set({ held: 0, updated_at: nowMs }).where("id", "=", jobId).where("state", "=", "queued").executeTakeFirst();
  return result.numUpdatedRows === 1n;
}

/**
 * Takes back a job no worker has claimed (its quota was refused at the API): the row goes and
 * the server's task_state clears. False when a worker already took it.
 */
export async function withdrawComputeJob(db: MetadataDatabase, jobId: number, nowMs = Date.now()): Promise<boolean> {
  return inTransaction(db, async (tx) => {
    const job = await tx.deleteFrom("compute_jobs").where("id", "=", jobId).where("state", "=", "queued").returning("server_id").executeTakeFirst();
    if (job === undefined) return false;
    await tx.updateTable("compute_servers").set({ task_state: null, updated_at: nowMs }).where("id", "=", job.server_id).execute();
    return true;
  });
}

/**
 * Claims the oldest claimable queued job (queued → running, attempts + 1), or undefined. Safe
 * with several processes: the transition is guarded in the UPDATE's WHERE, so of two workers
 * racing for a job one updates a row and the other none, and tries the next candidate.
 */
export async function claimComputeJob(db: MetadataDatabase, nowMs = Date.now()): Promise<ComputeJob | undefined> {
  const candidates = await db.kysely
    .selectFrom("compute_jobs as j")
    .select("j.id")
    .where("j.state", "=", "queued")
    .where("j.held", "=", 0)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom("compute_jobs as r").select("r.id").whereRef("r.server_id", "=", "j.server_id").where("r.state", "=", "running"))))
    .orderBy("j.id")
    .limit(claimCandidatesMax)
    .execute();
  for (const { id } of candidates) {
    try {
      const claimed = await db.kysely
        .updateTable("compute_jobs")
        .set((eb) => ({ state: "running", attempts: eb("attempts", "+", 1), updated_at: nowMs }))
        .where("id", "=", id)
        .where("state", "=", "queued")
        .where("held", "=", 0)
        .where(({ not, exists, selectFrom, ref }) =>
          not(exists(selectFrom("compute_jobs as r").select("r.id").where("r.server_id", "=", ref("compute_jobs.server_id")).where("r.state", "=", "running"))),
        )
        .returningAll()
        .executeTakeFirst();
      if (claimed !== undefined) return jobFromRow(claimed);
    } catch (error) {
      // Another process started a job of the same server in between (compute_jobs_one_running).
      if (!isUniqueViolation(error)) throw error;
    }
  }
  return undefined;
}

/**
 * Jobs a crash left `running`, re-claimed by the process starting up (attempts + 1), oldest
 * first. One serving process per host runs the jobs of its servers (the QEMU processes are
 * local), so a running job at start-up belongs to nobody alive. Held jobs are released: the
 * call that held one died with its process, and the job's own first step reserves the same
 * quota under the same key (over quota, the job fails like a refused build).
 */
export async function resumeComputeJobs(db: MetadataDatabase, nowMs = Date.now()): Promise<ComputeJob[]> {
  await db.kysely.updateTable("compute_jobs").set({ held: 0, updated_at: nowMs }).where("state", "=", "queued").where("held", "=", 1).execute();
  const rows = await db.kysely
    .updateTable("compute_jobs")
    .set((eb) => ({ attempts: eb("attempts", "+", 1), updated_at: nowMs }))
    .where("state", "=", "running")
    .returningAll()
    .execute();
  return rows.map(jobFromRow).sort((a, b) => a.id - b.id);
}

export interface JobOutcome {
  state: "done" | "failed";
  error?: string | null;
  /** The server's new state. task_state clears unless the patch says, or a DELETE waits. */
  server?: ComputeServerPatch;
}

/**
 * Finishes a running job with the server's new state, in one transaction. A DELETE queued
 * behind it keeps the server's task_state `deleting`. False when the job was not running
 * (finished already: a replay).
 */
export async function finishComputeJob(db: MetadataDatabase, jobId: number, outcome: JobOutcome, nowMs = Date.now()): Promise<boolean> {
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    const job = await tx
      .updateTable("compute_jobs")
      .set({ state: outcome.state, error: outcome.error ?? null, updated_at: nowMs })
      .where("id", "=", jobId)
      .where("state", "=", "running")
      .returning(["server_id", "action"])
      .executeTakeFirst();
    if (job === undefined) return false;
    const deleteWaits =
      job.action !== "delete" &&
      (await tx.selectFrom("compute_jobs").select("id").where("server_id", "=", job.server_id).where("action", "=", "delete").where("state", "=", "queued").executeTakeFirst()) !== undefined;
    const patch: ComputeServerPatch = { taskState: null, ...outcome.server, ...(deleteWaits && { taskState: "deleting" as const }) };
    await tx.updateTable("compute_servers").set({ ...serverPatchColumns(patch), updated_at: nowMs }).where("id", "=", job.server_id).execute();
    return true;
  });
}

export async function getComputeJob(db: MetadataDatabase, id: number): Promise<ComputeJob | undefined> {
  const row = await db.kysely.selectFrom("compute_jobs").selectAll().where("id", "=", id).executeTakeFirst();
  return row && jobFromRow(row);
}

/** A server's jobs, oldest first. */
export async function listComputeJobs(db: MetadataDatabase, serverId: string): Promise<ComputeJob[]> {
  const rows = await db.kysely.selectFrom("compute_jobs").selectAll().where("server_id", "=", serverId).orderBy("id").execute();
  return rows.map(jobFromRow);
}

/** Queued and running jobs, of one server or of all. */
export async function activeComputeJobs(db: MetadataDatabase, serverId?: string): Promise<ComputeJob[]> {
  const rows = await db.kysely
    .selectFrom("compute_jobs")
    .selectAll()
    .where("state", "in", ["queued", "running"])
    .$if(serverId !== undefined, (query) => query.where("server_id", "=", serverId!))
    .orderBy("id")
    .execute();
  return rows.map(jobFromRow);
}

async function activeJobsIn(tx: Transaction<Database>, serverId: string): Promise<ComputeJob[]> {
  const rows = await tx.selectFrom("compute_jobs").selectAll().where("server_id", "=", serverId).where("state", "in", ["queued", "running"]).orderBy("id").execute();
  return rows.map(jobFromRow);
}
