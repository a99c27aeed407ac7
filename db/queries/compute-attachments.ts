/**
 * Volumes attached to servers (Nova's os-volume_attachments; compute/README.md "Volumes"). A
 * row of compute_volume_attachments is the attachment and, for the volume service, the
 * volume's attach status (migration 0006): no row = available.
 *
 *   beginVolumeAttach ──► attaching ──completeVolumeAttach──► attached ──beginVolumeDetach──► detaching
 *          │ (+ attachVolume job)  └──undoVolumeAttach──► (no row)      (+ detachVolume job)   │
 *          │                                                   completeVolumeDetach ──► (no row)
 *          │                                                   undoVolumeDetach ──► attached
 *   removeServerVolumeAttachments: a deleted server's rows go, whatever their state.
 *
 * Begin functions write the row and queue the job in one transaction (neither exists without
 * the other) and lock in one order: the volume row first, then the server's
 * (gateways/volumes' delete and extend lock the volume first too), so attach and delete of
 * one volume never deadlock and never both pass their checks. The one-job-per-server rule
 * (compute-jobs.ts) refuses an attach or detach while another job waits; a DELETE cancels a
 * queued one and removes the rows itself. Complete and undo functions are idempotent (a job
 * replayed after a crash calls them again).
 *
 * Guest devices: vda is the root disk and vdb the NoCloud seed (compute/qemu/args.ts), so
 * attachments take /dev/vdc onwards; the name is a hint, as in Nova (the guest's kernel names
 * disks in the order it finds them; the volume id as the disk's serial is what is stable).
 */
import { randomUUID } from "node:crypto";
import type { Transaction } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { ComputeAttachmentState, ComputeVmState, Database } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkUuid } from "./limits.ts";
import type { ComputeJob } from "./compute-common.ts";
import { enqueueComputeJobIn } from "./compute-jobs.ts";

/** The first guest device an attachment may take: vda is the root disk, vdb the seed. */
export const attachmentDeviceLetterFirst = "c";
/**
 * Volumes one server may have attached: compute/qemu/args.ts extraDisksMax (each is a PCI
 * slot of pc's bus), so /dev/vdc to /dev/vdr.
 */
export const attachmentsPerServerMax = 16;
/** Nova's check_instance_state for attach_volume and detach_volume, in our vm_states. */
export const attachAllowedVmStates: readonly ComputeVmState[] = ["active", "stopped"];

/** Nova's schema pattern for `device` (schemas/volumes.py): /dev/ then an optional x, a letter, d, then letters and digits. */
const novaDevicePattern = /^(\/dev\/x?[a-z]?d?)([a-z]+)[0-9]*$/;

export interface ComputeVolumeAttachment {
  id: string;
  serverId: string;
  volumeId: string;
  /** The engine volume the NBD server exports (`volume-<id>`). */
  volumeName: string;
  device: string;
  state: ComputeAttachmentState;
  createdAt: number;
  updatedAt: number;
}

/** An attachVolume or detachVolume job's args. */
export interface VolumeJobArgs {
  attachmentId: string;
  volumeId: string;
}

export interface BeginAttachInput {
  serverId: string;
  volumeId: string;
  /** Nova's `device`, a hint; absent or null: the next free one. */
  device?: string | null;
}

/** The device a request names, as /dev/vdX, or EINVALID (Nova's InvalidDevicePath, 400). */
export function requestedDevice(device: string): string {
  const match = novaDevicePattern.exec(device);
  const letters = match?.[2];
  // Any bus prefix Nova's schema allows (sd, xvd, hd, vd) is a virtio disk here: the letter counts.
  if (letters === undefined || letters.length !== 1 || letters < attachmentDeviceLetterFirst || letters > lastDeviceLetter()) {
    throw new DbError("EINVALID", `The supplied device path (${device}) is invalid.`, { device });
  }
  return `/dev/vd${letters}`;
}

function lastDeviceLetter(): string {
  return String.fromCharCode(attachmentDeviceLetterFirst.charCodeAt(0) + attachmentsPerServerMax - 1);
}

/**
 * Records the attachment (attaching) and queues its attachVolume job, in one transaction.
 * ENOT_FOUND: server missing or deleted, volume missing or not the server owner's.
 * ECONFLICT: another job waits or runs, the server's state forbids it, the device is taken.
 * EINVALID: the volume is not available (Nova's InvalidVolume, 400), a bad device name.
 * EQUOTA_EXCEEDED: attachmentsPerServerMax reached (Nova's TooManyDiskDevices, 403).
 */
export async function beginVolumeAttach(
  db: MetadataDatabase,
  input: BeginAttachInput,
  nowMs = Date.now(),
): Promise<{ attachment: ComputeVolumeAttachment; job: ComputeJob }> {
  checkInteger("nowMs", nowMs, { min: 0 });
  const serverId = checkUuid("serverId", input.serverId);
  const wanted = input.device === undefined || input.device === null ? undefined : requestedDevice(input.device);
  const id = randomUUID();
  return inTransaction(db, async (tx) => {
    const volume = await lockVolume(tx, db.engine, input.volumeId);
    const { job, server } = await enqueueComputeJobIn(
      tx,
      db.engine,
      {
        serverId,
        action: "attachVolume",
        args: { attachmentId: id, volumeId: input.volumeId } satisfies VolumeJobArgs,
        taskState: null,
        allowedVmStates: attachAllowedVmStates,
        actionName: "attach_volume",
      },
      nowMs,
    );
    if (volume === undefined || volume.user_uuid !== server.userUuid) throw volumeNotFound(input.volumeId);
    const attached = await tx.selectFrom("compute_volume_attachments").select(["server_id", "state"]).where("volume_id", "=", volume.id).executeTakeFirst();
    if (volume.status !== "available" || attached !== undefined) {
      const status = attached === undefined ? volume.status : attached.state === "attached" ? "in-use" : attached.state;
      throw new DbError("EINVALID", `Invalid volume: volume ${volume.id} status must be 'available'. Currently in '${status}'`, { status });
    }
    const taken = new Set((await tx.selectFrom("compute_volume_attachments").select("device").where("server_id", "=", serverId).execute()).map((row) => row.device));
    if (wanted !== undefined && taken.has(wanted)) throw new DbError("ECONFLICT", `The supplied device path (${wanted}) is in use.`, { device: wanted });
    const device = wanted ?? nextFreeDevice(taken);
    if (device === undefined) {
      throw new DbError("EQUOTA_EXCEEDED", `The maximum allowed number of disk devices (${attachmentsPerServerMax}) to attach to a single instance has been exceeded.`, {
        limit: attachmentsPerServerMax,
      });
    }
    const row = { id, server_id: serverId, volume_id: volume.id, device, state: "attaching" as const, created_at: nowMs, updated_at: nowMs };
    await tx.insertInto("compute_volume_attachments").values(row).execute();
    return { attachment: fromRow({ ...row, engine_name: volume.engine_name }), job };
  });
}

/**
 * Marks the volume detaching and queues its detachVolume job, in one transaction.
 * ENOT_FOUND: server or volume missing (or not the server owner's), or the volume is not
 * attached to this server (Nova: `volume_id not found: X`). ECONFLICT as for attach.
 * EINVALID: the attachment is still attaching or already detaching (Nova's InvalidVolume).
 */
export async function beginVolumeDetach(
  db: MetadataDatabase,
  input: { serverId: string; volumeId: string },
  nowMs = Date.now(),
): Promise<{ attachment: ComputeVolumeAttachment; job: ComputeJob }> {
  checkInteger("nowMs", nowMs, { min: 0 });
  const serverId = checkUuid("serverId", input.serverId);
  return inTransaction(db, async (tx) => {
    const volume = await lockVolume(tx, db.engine, input.volumeId);
    const row = volume === undefined ? undefined : await tx.selectFrom("compute_volume_attachments").selectAll().where("volume_id", "=", volume.id).executeTakeFirst();
    const { job, server } = await enqueueComputeJobIn(
      tx,
      db.engine,
      {
        serverId,
        action: "detachVolume",
        args: { attachmentId: row?.id ?? "", volumeId: input.volumeId } satisfies VolumeJobArgs,
        taskState: null,
        allowedVmStates: attachAllowedVmStates,
        actionName: "detach_volume",
      },
      nowMs,
    );
    if (volume === undefined || volume.user_uuid !== server.userUuid) throw volumeNotFound(input.volumeId);
    if (row === undefined || row.server_id !== serverId) throw new DbError("ENOT_FOUND", `volume_id not found: ${input.volumeId}`, { volumeId: input.volumeId });
    if (row.state !== "attached") {
      throw new DbError("EINVALID", `Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach. Currently: ${row.state}`, {
        state: row.state,
      });
    }
    const updated = await tx
      .updateTable("compute_volume_attachments")
      .set({ state: "detaching", updated_at: nowMs })
      .where("id", "=", row.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return { attachment: fromRow({ ...updated, engine_name: volume.engine_name }), job };
  });
}

/** attaching → attached. True when the row is attached now (also if it was); false when it is gone. */
export async function completeVolumeAttach(db: MetadataDatabase, attachmentId: string, nowMs = Date.now()): Promise<boolean> {
  await db.kysely.updateTable("compute_volume_attachments").set({ state: "attached", updated_at: nowMs }).where("id", "=", attachmentId).where("state", "=", "attaching").execute();
  const row = await db.kysely.selectFrom("compute_volume_attachments").select("state").where("id", "=", attachmentId).executeTakeFirst();
  return row?.state === "attached";
}

/** A failed attach: the row goes (the volume is available again). Idempotent. */
export async function undoVolumeAttach(db: MetadataDatabase, attachmentId: string): Promise<void> {
  await db.kysely.deleteFrom("compute_volume_attachments").where("id", "=", attachmentId).where("state", "=", "attaching").execute();
}

/** A finished detach: the row goes (the volume is available again). Idempotent. */
export async function completeVolumeDetach(db: MetadataDatabase, attachmentId: string): Promise<void> {
  await db.kysely.deleteFrom("compute_volume_attachments").where("id", "=", attachmentId).where("state", "=", "detaching").execute();
}

/** A failed detach, or an attach whose disk could not be taken out again: the row is attached. Idempotent. */
export async function restoreVolumeAttachment(db: MetadataDatabase, attachmentId: string, nowMs = Date.now()): Promise<void> {
  await db.kysely.updateTable("compute_volume_attachments").set({ state: "attached", updated_at: nowMs }).where("id", "=", attachmentId).where("state", "!=", "attached").execute();
}

/** A deleted server's attachments, whatever their state: its volumes are available again (never deleted). */
export async function removeServerVolumeAttachments(db: MetadataDatabase, serverId: string): Promise<number> {
  const result = await db.kysely.deleteFrom("compute_volume_attachments").where("server_id", "=", serverId).executeTakeFirst();
  return Number(result.numDeletedRows);
}

export async function getComputeVolumeAttachment(db: MetadataDatabase, id: string): Promise<ComputeVolumeAttachment | undefined> {
  const row = await db.kysely
    .selectFrom("compute_volume_attachments as a")
    .innerJoin("volumes as v", "v.id", "a.volume_id")
    .selectAll("a")
    .select("v.engine_name")
    .where("a.id", "=", id)
    .executeTakeFirst();
  return row && fromRow(row);
}

/** A server's attachments in attachment order (created_at, then id), every state. */
export async function listServerVolumeAttachments(db: MetadataDatabase, serverId: string): Promise<ComputeVolumeAttachment[]> {
  const rows = await db.kysely
    .selectFrom("compute_volume_attachments as a")
    .innerJoin("volumes as v", "v.id", "a.volume_id")
    .selectAll("a")
    .select("v.engine_name")
    .where("a.server_id", "=", serverId)
    .orderBy("a.created_at")
    .orderBy("a.id")
    .execute();
  return rows.map(fromRow);
}

async function lockVolume(tx: Transaction<Database>, engine: MetadataDatabase["engine"], volumeId: string) {
  if (typeof volumeId !== "string" || volumeId === "") return undefined;
  return tx
    .selectFrom("volumes")
    .select(["id", "user_uuid", "status", "engine_name"])
    .where("id", "=", volumeId)
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirst();
}

function volumeNotFound(volumeId: string): DbError {
  return new DbError("ENOT_FOUND", `Volume ${volumeId} could not be found.`, { id: volumeId });
}

/** The lowest free /dev/vdX from vdc, or undefined when all attachmentsPerServerMax are taken. */
function nextFreeDevice(taken: ReadonlySet<string>): string | undefined {
  for (let index = 0; index < attachmentsPerServerMax; index++) {
    const device = `/dev/vd${String.fromCharCode(attachmentDeviceLetterFirst.charCodeAt(0) + index)}`;
    if (!taken.has(device)) return device;
  }
  return undefined;
}

function fromRow(row: {
  id: string;
  server_id: string;
  volume_id: string;
  engine_name: string;
  device: string;
  state: ComputeAttachmentState;
  created_at: number;
  updated_at: number;
}): ComputeVolumeAttachment {
  return {
    id: row.id,
    serverId: row.server_id,
    volumeId: row.volume_id,
    volumeName: row.engine_name,
    device: row.device,
    state: row.state,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
