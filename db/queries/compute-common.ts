/**
 * The compute service's records (camelCase, parsed JSON) and the named limits its query
 * functions apply. Nova's own limits where it has them (nova/api/validation/parameter_types.py,
 * nova/conf/quota.py), so a request Nova accepts is accepted here.
 */
import type { Selectable } from "kysely";
import { DbError } from "../errors.ts";
import type {
  ComputeFlavorsTable,
  ComputeJobAction,
  ComputeJobState,
  ComputeJobsTable,
  ComputeKeypairsTable,
  ComputeServersTable,
  ComputeTaskState,
  ComputeVmState,
} from "../schema.ts";
import { checkText } from "./limits.ts";

/** Nova's `name` parameter type: 1 to 255 characters (servers, flavors, keypairs). */
export const computeNameLengthMax = 255;
/** Nova's metadata_items quota default. */
export const serverMetadataItemsMax = 128;
/** Nova's metadata key and value: at most 255 characters each. */
export const serverMetadataKeyLengthMax = 255;
export const serverMetadataValueLengthMax = 255;
/** Nova's user_data limit: 65535 bytes of base64 text. */
export const userDataBase64LengthMax = 65_535;
/** An OpenSSH RSA-16384 public key is ~2.8 KB; 16 KiB is room for any real key and comment. */
export const publicKeyLengthMax = 16 * 1024;
/** Nova's key_pairs quota default. */
export const keypairsPerUserMax = 100;
/** Flavor figures a JS number holds exactly and QEMU accepts: 4096 vCPUs, 16 TiB RAM, 1 PiB disk. */
export const flavorVcpusMax = 4096;
export const flavorRamMiBMax = 16 * 1024 * 1024;
export const flavorDiskGiBMax = 1024 * 1024;
/** Jobs one claim looks at before giving up for this round (others are blocked or taken). */
export const claimCandidatesMax = 16;

export interface ComputeFlavor {
  id: string;
  name: string;
  vcpus: number;
  ramMiB: number;
  diskGiB: number;
  isPublic: boolean;
  disabled: boolean;
  description: string | null;
  extraSpecs: Record<string, string>;
  createdAt: number;
}

export interface ComputeKeypair {
  userUuid: string;
  name: string;
  publicKey: string;
  fingerprint: string;
  type: "ssh" | "x509";
  createdAt: number;
}

export interface ComputeServerFault {
  code: number;
  message: string;
  createdAt: number;
}

export interface ComputeServer {
  id: string;
  userUuid: string;
  name: string;
  flavorId: string;
  vcpus: number;
  ramMiB: number;
  diskGiB: number;
  imageId: string | null;
  rootVolume: string;
  keyName: string | null;
  publicKey: string | null;
  /** Base64 text as received, or null. */
  userData: string | null;
  bootProperties: Record<string, string>;
  vmState: ComputeVmState;
  taskState: ComputeTaskState | null;
  powerState: number;
  progress: number;
  fault: ComputeServerFault | null;
  createdAt: number;
  updatedAt: number;
  launchedAt: number | null;
  terminatedAt: number | null;
  deletedAt: number | null;
}

export interface ComputeJob {
  id: number;
  serverId: string;
  action: ComputeJobAction;
  args: Record<string, unknown>;
  state: ComputeJobState;
  attempts: number;
  /** Queued, but not claimable until its API call releases it (quota reserved). */
  held: boolean;
  error: string | null;
  createdAt: number;
  updatedAt: number;
}

/** The server columns a job or reconcile may change. */
export interface ComputeServerPatch {
  name?: string;
  flavorId?: string;
  vcpus?: number;
  ramMiB?: number;
  diskGiB?: number;
  vmState?: ComputeVmState;
  taskState?: ComputeTaskState | null;
  powerState?: number;
  progress?: number;
  fault?: ComputeServerFault | null;
  launchedAt?: number | null;
  terminatedAt?: number | null;
  deletedAt?: number | null;
}

export function flavorFromRow(row: Selectable<ComputeFlavorsTable>): ComputeFlavor {
  return {
    id: row.id,
    name: row.name,
    vcpus: row.vcpus,
    ramMiB: row.ram_mib,
    diskGiB: row.disk_gib,
    isPublic: row.is_public === 1,
    disabled: row.disabled === 1,
    description: row.description,
    extraSpecs: JSON.parse(row.extra_specs) as Record<string, string>,
    createdAt: row.created_at,
  };
}

export function keypairFromRow(row: Selectable<ComputeKeypairsTable>): ComputeKeypair {
  return {
    userUuid: row.user_uuid,
    name: row.name,
    publicKey: row.public_key,
    fingerprint: row.fingerprint,
    type: row.type,
    createdAt: row.created_at,
  };
}

export function serverFromRow(row: Selectable<ComputeServersTable>): ComputeServer {
  return {
    id: row.id,
    userUuid: row.user_uuid,
    name: row.name,
    flavorId: row.flavor_id,
    vcpus: row.vcpus,
    ramMiB: row.ram_mib,
    diskGiB: row.disk_gib,
    imageId: row.image_id,
    rootVolume: row.root_volume,
    keyName: row.key_name,
    publicKey: row.public_key,
    userData: row.user_data,
    bootProperties: JSON.parse(row.boot_properties) as Record<string, string>,
    vmState: row.vm_state,
    taskState: row.task_state,
    powerState: row.power_state,
    progress: row.progress,
    fault: row.fault === null ? null : (JSON.parse(row.fault) as ComputeServerFault),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    launchedAt: row.launched_at,
    terminatedAt: row.terminated_at,
    deletedAt: row.deleted_at,
  };
}

export function jobFromRow(row: Selectable<ComputeJobsTable>): ComputeJob {
  return {
    id: row.id,
    serverId: row.server_id,
    action: row.action,
    args: JSON.parse(row.args) as Record<string, unknown>,
    state: row.state,
    attempts: row.attempts,
    held: row.held === 1,
    error: row.error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A patch as columns (only the fields given). */
export function serverPatchColumns(patch: ComputeServerPatch): Partial<Selectable<ComputeServersTable>> {
  const columns: Partial<Selectable<ComputeServersTable>> = {};
  if (patch.name !== undefined) columns.name = checkText("name", patch.name, computeNameLengthMax);
  if (patch.flavorId !== undefined) columns.flavor_id = patch.flavorId;
  if (patch.vcpus !== undefined) columns.vcpus = patch.vcpus;
  if (patch.ramMiB !== undefined) columns.ram_mib = patch.ramMiB;
  if (patch.diskGiB !== undefined) columns.disk_gib = patch.diskGiB;
  if (patch.vmState !== undefined) columns.vm_state = patch.vmState;
  if (patch.taskState !== undefined) columns.task_state = patch.taskState;
  if (patch.powerState !== undefined) columns.power_state = patch.powerState;
  if (patch.progress !== undefined) columns.progress = patch.progress;
  if (patch.fault !== undefined) columns.fault = patch.fault === null ? null : JSON.stringify(patch.fault);
  if (patch.launchedAt !== undefined) columns.launched_at = patch.launchedAt;
  if (patch.terminatedAt !== undefined) columns.terminated_at = patch.terminatedAt;
  if (patch.deletedAt !== undefined) columns.deleted_at = patch.deletedAt;
  return columns;
}

/** A {key: value} of strings, or EINVALID. */
export function checkStringRecord(what: string, value: unknown, keyLengthMax: number, valueLengthMax: number, itemsMax: number): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new DbError("EINVALID", `${what} must be an object of strings`);
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > itemsMax) throw new DbError("EINVALID", `${what} has more than ${itemsMax} items`, { items: entries.length });
  for (const [key, item] of entries) {
    checkText(`${what} key`, key, keyLengthMax);
    if (typeof item !== "string" || item.length > valueLengthMax) {
      throw new DbError("EINVALID", `${what} value of ${key} must be a string of at most ${valueLengthMax} characters`, { key });
    }
  }
  return Object.fromEntries(entries) as Record<string, string>;
}
