/**
 * What each job does (compute/README.md "Jobs"), step by step. Every step is idempotent, so a
 * job interrupted anywhere — by a crash, a killed process — is simply run again from the top:
 *
 *   create       reserve (same key: same commission) → clone unless the volume exists →
 *                driver.start (starting a running instance does nothing) → accept → active
 *   start/stop   driver.start / driver.stop → active / stopped
 *   reboot       driver.reboot soft or hard → active
 *   resize       reserve the deltas → stop → start with the new figures if it ran → accept
 *   createImage  completeFreeze (resumable) → the image is active; the server is unchanged
 *   attachVolume driver.attachDisk (plugged already, or not running: nothing) → attached
 *   detachVolume driver.detachDisk (not there: nothing) → the attachment row goes
 *   delete       destroy → drop the attachments (volumes available) → delete the root volume →
 *                give up cancelled freezes → release quota → deleted
 *
 * A step that fails runs the action's compensation (each idempotent too) and the job ends
 * `failed` with the server's new state; which state is in `failure()` below. `testPause()`
 * (the end of the file) is a test hook: test/vm/compute-crash.test.ts kills the process between
 * named steps with it.
 */
import { access, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  completeVolumeAttach,
  completeVolumeDetach,
  finishComputeJob,
  getComputeServer,
  getComputeVolumeAttachment,
  jobCancelledError,
  listComputeJobs,
  removeServerVolumeAttachments,
  restoreVolumeAttachment,
  undoVolumeAttach,
  updateComputeServer,
  type ComputeJob,
  type ComputeServer,
  type JobOutcome,
  type MetadataDatabase,
  type Provision,
  type VolumeJobArgs,
} from "../db/index.ts";
import type { Engine } from "../engine/engine.ts";
import { isEngineError } from "../engine/errors.ts";
import { resolveImage, type PlanktonService } from "../gateways/plankton/index.ts";
import { attachedDisk, instanceSpec } from "./boot.ts";
import type { HypervisorDriver } from "./driver.ts";
import { isComputeError } from "./errors.ts";
import { acceptReserved, rejectReserved, releaseServer, reserve } from "./quota.ts";

/** The freeze functions of gateways/plankton/freeze.ts (injected: tests stub them). */
export interface FreezeFunctions {
  beginFreeze(plankton: PlanktonService, options: { owner: string; name: string; properties?: Record<string, string> }): Promise<{ imageId: string }>;
  completeFreeze(
    plankton: PlanktonService,
    engine: Engine,
    options: { imageId: string; owner: string; volume: string; snapshot: (snapshotName: string) => Promise<void>; onProgress?: (doneBlocks: number, totalBlocks: number) => void },
  ): Promise<unknown>;
  failFreeze(plankton: PlanktonService, imageId: string): Promise<void>;
}

export interface Logger {
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

export interface StepContext {
  db: MetadataDatabase;
  engine: Engine;
  plankton: PlanktonService;
  driver: HypervisorDriver;
  nbd: { socketPath: string; snapshot(volume: string, snapshotName: string): Promise<void> };
  stateDir: string;
  graceMs: number;
  logger: Logger;
  freeze: FreezeFunctions;
  now(): number;
}

export interface CreateArgs {
  imageId: string;
  rootSizeBytes: number;
  provisions: Provision[];
}
export interface RebootArgs {
  hard: boolean;
}
export interface ResizeArgs {
  flavorId: string;
  vcpus: number;
  ramMiB: number;
  provisions: Provision[];
}
export interface CreateImageArgs {
  imageId: string;
}

/**
 * Claims made by a crash loop get no further: a job claimed this many times (a crash on every
 * run of it) fails with its compensation instead of crashing the service at every start.
 */
export const jobAttemptsMax = 5;
/**
 * Deleting a volume right after its QEMU exits can meet the NBD export still closing it
 * (engine/nbd/exports.ts: the last connection's release flushes and unlocks); the export
 * closes within its flush, so ten tries 200 ms apart are plenty.
 */
const volumeLockedRetries = 10;
const volumeLockedRetryMs = 200;

/** Runs the job to its end and records the outcome with the server's new state. */
export async function runJob(context: StepContext, job: ComputeJob): Promise<void> {
  const server = await getComputeServer(context.db, job.serverId);
  if (server === undefined) {
    await finishComputeJob(context.db, job.id, { state: "failed", error: "the server is gone" }, context.now());
    return;
  }
  let outcome: JobOutcome;
  try {
    if (job.attempts > jobAttemptsMax) throw new Error(`gave up after ${jobAttemptsMax} attempts (the service stopped during each)`);
    outcome = await perform(context, job, server);
  } catch (error) {
    context.logger.warn({ err: error, job: job.id, action: job.action, server: server.id }, "compute job failed");
    outcome = await failure(context, job, server, error);
  }
  await finishComputeJob(context.db, job.id, outcome, context.now());
}

async function perform(context: StepContext, job: ComputeJob, server: ComputeServer): Promise<JobOutcome> {
  const { driver, graceMs } = context;
  switch (job.action) {
    case "create":
      return create(context, job, server);
    case "start":
      await driver.start(await instanceSpec(bootContext(context), server));
      return { state: "done", server: { vmState: "active", powerState: 1, fault: null } };
    case "stop":
      await driver.stop(server.id, { graceMs });
      return { state: "done", server: { vmState: "stopped", powerState: 4 } };
    case "reboot": {
      const { hard } = job.args as unknown as RebootArgs;
      await driver.reboot(await instanceSpec(bootContext(context), server), hard ? "hard" : "soft", { graceMs });
      return { state: "done", server: { vmState: "active", powerState: 1, fault: null } };
    }
    case "resize":
      return resize(context, job, server);
    case "createImage": {
      const { imageId } = job.args as unknown as CreateImageArgs;
      await context.freeze.completeFreeze(context.plankton, context.engine, {
        imageId,
        owner: server.userUuid,
        volume: server.rootVolume,
        snapshot: (snapshotName) => context.nbd.snapshot(server.rootVolume, snapshotName),
      });
      return { state: "done" };
    }
    case "attachVolume":
      return attachVolume(context, job, server);
    case "detachVolume":
      return detachVolume(context, job, server);
    case "delete":
      return destroy(context, job, server);
  }
}

async function create(context: StepContext, job: ComputeJob, server: ComputeServer): Promise<JobOutcome> {
  const args = job.args as unknown as CreateArgs;
  await reserve(context.db, server.id, job.id, `create server ${server.id}`, args.provisions);
  await testPause("create.reserved", server.id);
  if (!(await context.engine.maps.exists(server.rootVolume))) {
    const image = await resolveImage(context.db, args.imageId, server.userUuid);
    await context.engine.clone(image.mapName, server.rootVolume, { sizeBytes: Math.max(args.rootSizeBytes, image.sizeBytes) });
  }
  await testPause("create.cloned", server.id);
  await updateComputeServer(context.db, server.id, { progress: 50 }, context.now());
  await context.driver.start(await instanceSpec(bootContext(context), server));
  await testPause("create.started", server.id);
  await acceptReserved(context.db, server.id, job.id);
  return { state: "done", server: { vmState: "active", powerState: 1, progress: 100, launchedAt: context.now(), fault: null } };
}

async function resize(context: StepContext, job: ComputeJob, server: ComputeServer): Promise<JobOutcome> {
  const args = job.args as unknown as ResizeArgs;
  if (args.provisions.length > 0) await reserve(context.db, server.id, job.id, `resize server ${server.id}`, args.provisions);
  // vm_state is still the one before the resize (the finish writes the new one): a replay
  // after a crash between stop and start starts the server again.
  const running = server.vmState === "active";
  await context.driver.stop(server.id, { graceMs: context.graceMs });
  if (running) await context.driver.start(await instanceSpec(bootContext(context), server, args));
  await acceptReserved(context.db, server.id, job.id);
  return {
    state: "done",
    server: { flavorId: args.flavorId, vcpus: args.vcpus, ramMiB: args.ramMiB, vmState: running ? "active" : "stopped", powerState: running ? 1 : 4 },
  };
}

/**
 * Plugs the attachment's disk into the running instance (a stopped one gets it at its next
 * start) and marks it attached. A replay plugs nothing twice (attachDisk is idempotent).
 */
async function attachVolume(context: StepContext, job: ComputeJob, server: ComputeServer): Promise<JobOutcome> {
  const { attachmentId } = job.args as unknown as VolumeJobArgs;
  const attachment = await getComputeVolumeAttachment(context.db, attachmentId);
  if (attachment === undefined) throw new Error(`attachment ${attachmentId} is gone`);
  await context.driver.attachDisk(server.id, attachedDisk(bootContext(context), attachment));
  await testPause("attach.plugged", server.id);
  await completeVolumeAttach(context.db, attachmentId, context.now());
  return { state: "done" };
}

/** Takes the disk out of the running instance, then the attachment goes: the volume is available. */
async function detachVolume(context: StepContext, job: ComputeJob, server: ComputeServer): Promise<JobOutcome> {
  const { attachmentId } = job.args as unknown as VolumeJobArgs;
  if ((await getComputeVolumeAttachment(context.db, attachmentId)) !== undefined) {
    await context.driver.detachDisk(server.id, attachmentId);
    await testPause("detach.unplugged", server.id);
    await completeVolumeDetach(context.db, attachmentId);
  }
  return { state: "done" };
}

/**
 * A failed attach is undone (the disk out again if it got in, the row gone: the volume is
 * available); should the guest not give the disk back, the volume stays attached. A failed
 * detach leaves the volume attached. Either way the server is as it was (Nova: ACTIVE).
 */
async function failVolumeJob(context: StepContext, job: ComputeJob, server: ComputeServer): Promise<void> {
  const { attachmentId } = job.args as unknown as VolumeJobArgs;
  if (job.action === "attachVolume") {
    try {
      await context.driver.detachDisk(server.id, attachmentId);
    } catch (error) {
      context.logger.warn({ err: error, job: job.id, server: server.id }, "a failed attach's disk could not be taken out: the volume stays attached");
      await restoreVolumeAttachment(context.db, attachmentId, context.now());
      return;
    }
    await undoVolumeAttach(context.db, attachmentId);
  } else {
    await restoreVolumeAttachment(context.db, attachmentId, context.now());
  }
}

async function destroy(context: StepContext, job: ComputeJob, server: ComputeServer): Promise<JobOutcome> {
  await testPause("delete.begun", server.id);
  await context.driver.destroy(server.id);
  await testPause("delete.destroyed", server.id);
  // Nova detaches a deleted server's volumes and keeps them (delete_on_termination is false
  // for attached volumes): with no QEMU left, the rows simply go.
  await removeServerVolumeAttachments(context.db, server.id);
  await deleteVolume(context, server.rootVolume);
  await testPause("delete.volume-deleted", server.id);
  for (const cancelled of await listComputeJobs(context.db, server.id)) {
    if (cancelled.action === "createImage" && cancelled.error === jobCancelledError) {
      await context.freeze.failFreeze(context.plankton, (cancelled.args as unknown as CreateImageArgs).imageId);
    }
  }
  await releaseServer(context.db, server.id, job.id);
  const now = context.now();
  return { state: "done", server: { vmState: "deleted", taskState: null, powerState: 0, deletedAt: now, terminatedAt: now } };
}

/** The compensation of a failed job, and the server's state after it. */
async function failure(context: StepContext, job: ComputeJob, server: ComputeServer, error: unknown): Promise<JobOutcome> {
  const message = error instanceof Error ? error.message : String(error);
  const fault = { code: isComputeError(error, "EQUOTA") ? 403 : 500, message, createdAt: context.now() };
  const failed = (patch: JobOutcome["server"]): JobOutcome => ({ state: "failed", error: message, server: patch });
  try {
    switch (job.action) {
      case "create":
        await context.driver.destroy(server.id);
        await deleteVolume(context, server.rootVolume);
        await rejectReserved(context.db, server.id, job.id);
        return failed({ vmState: "error", powerState: 0, fault });
      case "resize":
        await rejectReserved(context.db, server.id, job.id);
        return failed({ vmState: "error", powerState: await powerOf(context, server.id), fault });
      case "createImage":
        // Nova: a failed snapshot deletes the image and leaves the server as it was.
        await context.freeze.failFreeze(context.plankton, (job.args as unknown as CreateImageArgs).imageId);
        return failed({});
      case "attachVolume":
      case "detachVolume":
        await failVolumeJob(context, job, server);
        return failed({});
      default:
        return failed({ vmState: "error", powerState: await powerOf(context, server.id), fault });
    }
  } catch (compensation) {
    context.logger.error({ err: compensation, job: job.id, server: server.id }, "compute job compensation failed");
    // A volume job's server was never touched: reconcile settles the attachment left behind.
    if (job.action === "attachVolume" || job.action === "detachVolume") return failed({});
    // Otherwise the server is in error; reconcile and a DELETE clean up.
    return failed({ vmState: "error", fault });
  }
}

async function powerOf(context: StepContext, id: string): Promise<number> {
  const status = await context.driver.status(id).catch(() => undefined);
  return status === undefined ? 0 : status.power === "running" ? 1 : 4;
}

/** Deletes the volume; gone already is fine; a lock held by a closing export is waited out. */
export async function deleteVolume(context: Pick<StepContext, "engine">, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await context.engine.delete(name);
      return;
    } catch (error) {
      if (isEngineError(error, "ENOT_FOUND")) return;
      if (!isEngineError(error, "EVOLUME_LOCKED") || attempt >= volumeLockedRetries) throw error;
      await sleep(volumeLockedRetryMs);
    }
  }
}

export function bootContext(context: StepContext): { db: MetadataDatabase; engine: Engine; socketPath: string; stateDir: string } {
  return { db: context.db, engine: context.engine, socketPath: context.nbd.socketPath, stateDir: context.stateDir };
}

// ── TEST HOOK: pause points, for test/vm/compute-crash.test.ts only ──────────────────────

/**
 * TEST HOOK. With OKEANOS_COMPUTE_TEST_PAUSE_DIR set (test/vm/compute-crash.test.ts sets it
 * for the `okeanos serve` it kills; nothing else does), a job reaching pause point P while a
 * file named P exists in that directory writes `P.reached` there (holding the server's id)
 * and waits until the file P is removed: the test arms a point, waits for `.reached` and
 * kills the process exactly between two steps. Unset: one environment lookup per point.
 */
export const testPauseDirVariable = "OKEANOS_COMPUTE_TEST_PAUSE_DIR";
/** Between the steps of create, delete, attachVolume and detachVolume (the table in the header), named after the step just done. */
export type TestPausePoint =
  | "create.reserved"
  | "create.cloned"
  | "create.started"
  | "delete.begun"
  | "delete.destroyed"
  | "delete.volume-deleted"
  | "attach.plugged"
  | "detach.unplugged";
/** How often a paused job looks whether its pause file is gone. */
const testPausePollMs = 50;

async function testPause(point: TestPausePoint, serverId: string): Promise<void> {
  const dir = process.env[testPauseDirVariable];
  if (dir === undefined || dir === "") return;
  const armed = join(dir, point);
  const present = () => access(armed).then(() => true, () => false);
  if (!(await present())) return;
  // Written whole, then renamed: the test must never read a half-written id.
  await writeFile(`${armed}.reached.partial`, serverId);
  await rename(`${armed}.reached.partial`, `${armed}.reached`);
  while (await present()) await sleep(testPausePollMs);
}
