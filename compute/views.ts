/**
 * Records as the compute API shows them (model.ts), and the database's refusals as the API's
 * errors: what service.ts answers with, kept apart so the service file holds only operations.
 */
import {
  getComputeServerMetadata,
  isDbError,
  listServerVolumeAttachments,
  type ComputeKeypair,
  type ComputeServer,
  type ComputeVolumeAttachment,
  type MetadataDatabase,
} from "../db/index.ts";
import { ComputeError } from "./errors.ts";
import type { Flavor, Keypair, Server, ServerStatus, VolumeAttachment } from "./model.ts";

export async function serverView(db: MetadataDatabase, server: ComputeServer): Promise<Server> {
  const metadata = server.vmState === "deleted" ? {} : await getComputeServerMetadata(db, server.id);
  const volumesAttached = server.vmState === "deleted" ? [] : (await listServerVolumeAttachments(db, server.id)).map((attachment) => attachment.volumeId);
  return {
    id: server.id,
    name: server.name,
    userUuid: server.userUuid,
    flavorId: server.flavorId,
    vcpus: server.vcpus,
    ramMiB: server.ramMiB,
    diskGiB: server.diskGiB,
    imageId: server.imageId,
    rootVolume: server.rootVolume,
    keyName: server.keyName,
    vmState: server.vmState,
    taskState: server.taskState,
    status: serverStatus(server),
    powerState: server.powerState,
    progress: server.progress,
    metadata,
    volumesAttached,
    fault: server.fault,
    createdAt: server.createdAt,
    updatedAt: server.updatedAt,
    launchedAt: server.launchedAt,
    terminatedAt: server.terminatedAt,
  };
}

/** README "States": the API status from vm_state and task_state. */
export function serverStatus(server: Pick<ComputeServer, "vmState" | "taskState">): ServerStatus {
  switch (server.vmState) {
    case "building":
      return "BUILD";
    case "active":
      if (server.taskState === "rebooting") return "REBOOT";
      if (server.taskState === "rebooting_hard") return "HARD_REBOOT";
      return server.taskState === "resize_prep" ? "RESIZE" : "ACTIVE";
    case "stopped":
      return server.taskState === "resize_prep" ? "RESIZE" : "SHUTOFF";
    case "error":
      return "ERROR";
    case "deleted":
      return "DELETED";
  }
}

export function attachmentView(attachment: ComputeVolumeAttachment): VolumeAttachment {
  return { attachmentId: attachment.id, serverId: attachment.serverId, volumeId: attachment.volumeId, device: attachment.device, state: attachment.state };
}

export function checkServerName(name: unknown): string {
  if (typeof name !== "string" || name.trim() === "" || name.length > 255) throw new ComputeError("EBAD_REQUEST", "Invalid server name: 1 to 255 characters, not only spaces.");
  return name;
}

/** Nova treats `name` as a regular expression; one that does not compile matches as text. */
/**
 * Longest `?name=` pattern we compile: server names are at most 255 characters, and a
 * pattern longer than any name it could match is a mistake or an attack.
 */
export const namePatternLengthMax = 255;

/**
 * A group followed by a quantifier (`(a+)+`, `(x|xy){2,}`): the shape that makes a
 * backtracking engine take exponential time. JavaScript's RegExp runs on the event loop, so
 * such a pattern from a client could stall every request; it is matched as plain text instead.
 */
const quantifiedGroup = /\)[*+?{]/;
/** Without nested groups, `a*a*a*…b` still costs n^k steps for k quantifiers: a few are plenty for a name filter. */
const quantifiersMax = 8;

/**
 * Nova's `?name=` is a regular expression (`re.search`). Clients look up by exact name and
 * filter the answer themselves (openstack-clients.md 3.3), so a pattern we will not compile
 * (malformed, too long, or able to backtrack without bound) falls back to a substring match:
 * every exact-name lookup still finds its server.
 */
export function nameMatcher(pattern: string): (name: string) => boolean {
  const quantifiers = pattern.match(/[*+?{]/g)?.length ?? 0;
  if (pattern.length <= namePatternLengthMax && quantifiers <= quantifiersMax && !quantifiedGroup.test(pattern)) {
    try {
      const regex = new RegExp(pattern);
      return (name) => regex.test(name);
    } catch {
      // not a JavaScript regular expression (e.g. `vm(1`): plain text below
    }
  }
  return (name) => name.includes(pattern);
}

export function serverNotFound(id: string): ComputeError {
  return new ComputeError("ENOT_FOUND", `Instance ${id} could not be found.`);
}

export function flavorView(flavor: Flavor): Flavor {
  const { id, name, vcpus, ramMiB, diskGiB, isPublic, disabled, description, extraSpecs } = flavor;
  return { id, name, vcpus, ramMiB, diskGiB, isPublic, disabled, description, extraSpecs };
}

export function keypairView(keypair: ComputeKeypair): Keypair {
  return { userUuid: keypair.userUuid, name: keypair.name, publicKey: keypair.publicKey, fingerprint: keypair.fingerprint, type: "ssh", createdAt: keypair.createdAt };
}

/** The database's refusals as the compute API's (errors.ts codes). */
export async function dbCall<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw toComputeError(error);
  }
}

export function toComputeError(error: unknown): unknown {
  if (!isDbError(error)) return error;
  switch (error.code) {
    case "ENOT_FOUND":
      return new ComputeError("ENOT_FOUND", error.message, { cause: error });
    case "ECONFLICT":
    case "EEXISTS":
      return new ComputeError("ECONFLICT", error.message, { cause: error });
    case "EINVALID":
      return new ComputeError("EBAD_REQUEST", error.message, { cause: error });
    case "EQUOTA_EXCEEDED":
      return new ComputeError("EQUOTA", error.message, { cause: error });
    default:
      return error;
  }
}
