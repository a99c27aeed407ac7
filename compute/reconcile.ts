/**
 * Start-up reconciliation (compute/README.md; synnefo.md E.2 step 4 without the separate
 * command): before the worker runs, every server's database state is compared with what the
 * hypervisor and the engine say, and the database or the host is repaired.
 *
 *   server (no job waiting)   hypervisor / engine             repair
 *   active                    not running                     stopped (Nova's power-state sync)
 *   stopped                   running                         active (the observed power wins)
 *   active | stopped          root volume missing             error, with a fault
 *   building                  no create job left              the build's compensation → error
 *   any, task_state set       no job                          task_state cleared
 *   deleted                   instance or volume left         destroyed / deleted
 *   (no live row)             an instance driver.list() knows destroyed
 *   any, attachment attaching no job                          disk taken out, row gone (available);
 *                                                             the guest keeps it: attached
 *   any, attachment detaching no job                          attached (detach again to retry)
 *
 * Servers with a queued or running job are left to it: the worker resumes running jobs.
 * Each repair is guarded on the state it read, so a server a CLI changed meanwhile is kept.
 */
import {
  activeComputeJobs,
  getComputeServer,
  listComputeServers,
  listServerVolumeAttachments,
  restoreVolumeAttachment,
  undoVolumeAttach,
  updateComputeServer,
  type ComputeServer,
  type ComputeServerPatch,
} from "../db/index.ts";
import { releaseServer } from "./quota.ts";
import { deleteVolume, type StepContext } from "./steps.ts";

export interface ReconcileReport {
  /** Server id → what was done, for the log and the tests. */
  repaired: Record<string, string>;
  /** Instances without a live server, destroyed. */
  destroyedOrphans: string[];
}

export type ReconcileContext = Pick<StepContext, "db" | "engine" | "driver" | "logger" | "now">;

export async function reconcile(context: ReconcileContext): Promise<ReconcileReport> {
  const report: ReconcileReport = { repaired: {}, destroyedOrphans: [] };
  const busy = new Set((await activeComputeJobs(context.db)).map((job) => job.serverId));
  const servers = await listComputeServers(context.db, { includeDeleted: false });
  for (const server of servers) {
    if (busy.has(server.id)) continue;
    try {
      const repairs = [...(await reconcileAttachments(context, server)), await reconcileServer(context, server)].filter((what) => what !== undefined);
      if (repairs.length > 0) report.repaired[server.id] = repairs.join("; ");
    } catch (error) {
      context.logger.error({ err: error, server: server.id }, "reconciling a server failed");
    }
  }
  const live = new Set(servers.map((server) => server.id));
  for (const id of await context.driver.list()) {
    if (live.has(id)) continue;
    const row = await getComputeServer(context.db, id);
    if (row !== undefined && row.vmState !== "deleted") continue; // created since the listing
    try {
      await context.driver.destroy(id);
      if (row !== undefined) await deleteVolume(context, row.rootVolume);
      report.destroyedOrphans.push(id);
    } catch (error) {
      context.logger.error({ err: error, instance: id }, "destroying an orphan instance failed");
    }
  }
  if (Object.keys(report.repaired).length > 0 || report.destroyedOrphans.length > 0) context.logger.info({ ...report }, "compute reconciled");
  return report;
}

/**
 * Attachments a job left half-way without the job (its compensation failed, or its rows
 * outlived it some other way): an attach is undone as a failed one is, a detach is taken
 * back to attached — the user may detach again.
 */
async function reconcileAttachments(context: ReconcileContext, server: ComputeServer): Promise<string[]> {
  const repairs: string[] = [];
  for (const attachment of await listServerVolumeAttachments(context.db, server.id)) {
    if (attachment.state === "attaching") {
      try {
        await context.driver.detachDisk(server.id, attachment.id);
        await undoVolumeAttach(context.db, attachment.id);
        repairs.push(`attach of volume ${attachment.volumeId} without a job → undone`);
      } catch (error) {
        context.logger.warn({ err: error, server: server.id, attachment: attachment.id }, "reconcile: the guest keeps a half-attached disk");
        await restoreVolumeAttachment(context.db, attachment.id, context.now());
        repairs.push(`attach of volume ${attachment.volumeId} without a job, the guest keeps it → attached`);
      }
    } else if (attachment.state === "detaching") {
      await restoreVolumeAttachment(context.db, attachment.id, context.now());
      repairs.push(`detach of volume ${attachment.volumeId} without a job → attached`);
    }
  }
  return repairs;
}

async function reconcileServer(context: ReconcileContext, server: ComputeServer): Promise<string | undefined> {
  const { db, driver } = context;
  const now = context.now();
  const guard = { vmState: server.vmState, taskState: server.taskState };
  const apply = async (patch: ComputeServerPatch, what: string) => ((await updateComputeServer(db, server.id, patch, now, guard)) === undefined ? undefined : what);

  if (server.vmState === "building") {
    // Its create job finished without the row changing cannot happen (one transaction), so
    // this is a row whose job was lost: undo what a build may have left, as a failed build does.
    await driver.destroy(server.id);
    await deleteVolume(context, server.rootVolume);
    await releaseServer(db, server.id, 0);
    const fault = { code: 500, message: "The build was interrupted and its job is gone.", createdAt: now };
    return apply({ vmState: "error", taskState: null, powerState: 0, fault }, "building without a job → error");
  }
  if (server.vmState === "error") {
    return server.taskState === null ? undefined : apply({ taskState: null }, "stale task_state cleared");
  }
  const status = await driver.status(server.id);
  const running = status.power === "running" || status.power === "paused";
  if (!(await context.engine.maps.exists(server.rootVolume))) {
    if (running) await driver.destroy(server.id);
    const fault = { code: 500, message: `The root volume ${server.rootVolume} is missing.`, createdAt: now };
    return apply({ vmState: "error", taskState: null, powerState: 0, fault }, "root volume missing → error");
  }
  if (server.vmState === "active" && !running) return apply({ vmState: "stopped", taskState: null, powerState: 4 }, "active but not running → stopped");
  if (server.vmState === "stopped" && running) return apply({ vmState: "active", taskState: null, powerState: 1 }, "stopped but running → active");
  if (server.taskState !== null) return apply({ taskState: null }, "stale task_state cleared");
  return undefined;
}
