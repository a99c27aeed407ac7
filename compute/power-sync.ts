/**
 * The power-state sync (Nova's `_sync_power_states`): while `okeanos serve` runs, every
 * server the database says is active or stopped, with no job under way, is compared with the
 * hypervisor now and then, and the database follows what it sees — a guest that powered
 * itself off is SHUTOFF, a QEMU that crashed or was killed is SHUTOFF, a server started behind
 * our back is ACTIVE. Reconcile (reconcile.ts) does the same once at start-up, and more; this
 * is the part that is safe to repeat while jobs run, so nothing else runs here: builds,
 * deletes and missing volumes stay reconcile's and the jobs'.
 *
 * Safe against a job starting meanwhile: every update is guarded on the state read (vm_state
 * and a null task_state), and queueing a job sets task_state in the same transaction.
 */
import { listComputeServers, updateComputeServer } from "../db/index.ts";
import type { StepContext } from "./steps.ts";

/**
 * Between two syncs. Nova's default is 10 minutes; a guest's own shutdown should show in
 * `server list` sooner than that, and one status call per server costs a pid-file read.
 */
export const powerSyncIntervalMsDefault = 30_000;

export type PowerSyncContext = Pick<StepContext, "db" | "driver" | "logger" | "now">;

/** One pass; returns the ids whose state changed, with what was done. */
export async function syncPowerStates(context: PowerSyncContext): Promise<Record<string, string>> {
  const changed: Record<string, string> = {};
  for (const server of await listComputeServers(context.db, { includeDeleted: false })) {
    if (server.taskState !== null || (server.vmState !== "active" && server.vmState !== "stopped")) continue;
    try {
      const status = await context.driver.status(server.id);
      const running = status.power === "running" || status.power === "paused";
      const guard = { vmState: server.vmState, taskState: null };
      if (server.vmState === "active" && !running) {
        if ((await updateComputeServer(context.db, server.id, { vmState: "stopped", powerState: 4 }, context.now(), guard)) !== undefined) changed[server.id] = "active, not running → stopped";
      } else if (server.vmState === "stopped" && running) {
        if ((await updateComputeServer(context.db, server.id, { vmState: "active", powerState: 1 }, context.now(), guard)) !== undefined) changed[server.id] = "stopped, running → active";
      }
    } catch (error) {
      context.logger.warn({ err: error, server: server.id }, "power-state sync: status failed");
    }
  }
  if (Object.keys(changed).length > 0) context.logger.info({ changed }, "power-state sync");
  return changed;
}
