/**
 * What the driver needs to start a server, rebuilt from the database each time (driver.ts
 * InstanceSpec): the root disk and attached volumes as exports of the serving process's NBD
 * server, the NoCloud seed, and — for images with Glance's direct-kernel-boot properties
 * (kernel_id, ramdisk_id, os_command_line) — the kernel and initrd as local files.
 *
 * Attached volumes: the attachments `attached` or `detaching`, not `attaching`. A detach is
 * not done until its job removes the row (a failed one leaves the volume attached), so until
 * then the guest keeps the disk at every start. An attach is done when its job marks the row
 * attached; before that only the job itself plugs the disk (a stopped server gets it at its
 * next start), so a start never hands a guest a disk whose attach may yet fail and be undone.
 * No other job of the server runs meanwhile anyway (one job per server).
 *
 * Kernels are Plankton images too; each is streamed once to `<stateDir>/kernels/<image id>`
 * (a temporary name, fsync, rename: a crash never leaves a half file under the final name)
 * and reused by every server booting it.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { access, mkdir, open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { listServerVolumeAttachments, type ComputeServer, type ComputeVolumeAttachment, type MetadataDatabase } from "../db/index.ts";
import type { Engine } from "../engine/engine.ts";
import { isPlanktonError, resolveImage } from "../gateways/plankton/index.ts";
import type { AttachedDisk, InstanceSpec, KernelBoot, NbdDisk } from "./driver.ts";
import { ComputeError } from "./errors.ts";

/** Glance's direct-kernel-boot image properties, copied to the server at create. */
export const bootPropertyNames = ["kernel_id", "ramdisk_id", "os_command_line"] as const;
/** RFC 1123: a host name label is at most 63 characters. */
export const hostnameLengthMax = 63;

export interface BootContext {
  db: MetadataDatabase;
  engine: Engine;
  socketPath: string;
  stateDir: string;
}

/** The boot properties of an image's properties (the others are not the server's). */
export function bootProperties(properties: Record<string, string>): Record<string, string> {
  return Object.fromEntries(bootPropertyNames.filter((name) => properties[name] !== undefined).map((name) => [name, properties[name]!]));
}

/**
 * Nova's sanitize_hostname: lowercase, runs of anything but [a-z0-9-] become one `-`, no
 * leading or trailing `-`, at most 63 characters; empty → `server-<first 8 of the id>`.
 */
export function hostnameOf(name: string, id: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-{2,}/g, "-")
    .slice(0, hostnameLengthMax)
    .replace(/^-+|-+$/g, "");
  return cleaned === "" ? `server-${id.slice(0, 8)}` : cleaned;
}

export async function instanceSpec(context: BootContext, server: ComputeServer, figures: { vcpus: number; ramMiB: number } = server): Promise<InstanceSpec> {
  const disk = (exportName: string): NbdDisk => ({ socketPath: context.socketPath, exportName });
  const attachments = (await listServerVolumeAttachments(context.db, server.id)).filter((attachment) => attachment.state !== "attaching");
  const kernel = await kernelBoot(context, server);
  return {
    id: server.id,
    name: server.name,
    vcpus: figures.vcpus,
    ramMiB: figures.ramMiB,
    rootDisk: disk(server.rootVolume),
    extraDisks: attachments.map((attachment) => attachedDisk(context, attachment)),
    seed: {
      instanceId: server.id,
      hostname: hostnameOf(server.name, server.id),
      sshAuthorizedKeys: server.publicKey === null ? [] : [server.publicKey],
      ...(server.userData !== null && { userData: Buffer.from(server.userData, "base64") }),
    },
    ...(kernel !== undefined && { kernel }),
  };
}

/** An attachment as the driver plugs it: named by the attachment, the volume id as its serial. */
export function attachedDisk(context: Pick<BootContext, "socketPath">, attachment: ComputeVolumeAttachment): AttachedDisk {
  return { socketPath: context.socketPath, exportName: attachment.volumeName, id: attachment.id, serial: attachment.volumeId, device: attachment.device };
}

async function kernelBoot(context: BootContext, server: ComputeServer): Promise<KernelBoot | undefined> {
  const { kernel_id: kernelId, ramdisk_id: ramdiskId, os_command_line: commandLine } = server.bootProperties;
  if (kernelId === undefined || kernelId === "") return undefined;
  const kernelPath = await imageFile(context, kernelId, server.userUuid);
  const initrdPath = ramdiskId === undefined || ramdiskId === "" ? undefined : await imageFile(context, ramdiskId, server.userUuid);
  return { kernelPath, ...(initrdPath !== undefined && { initrdPath }), ...(commandLine !== undefined && { commandLine }) };
}

/** The image's data as a local file, fetched once. */
async function imageFile(context: BootContext, imageId: string, viewer: string): Promise<string> {
  const dir = join(context.stateDir, "kernels");
  const path = join(dir, imageId.replaceAll("/", "_"));
  if (await exists(path)) return path;
  const resolved = await resolveImage(context.db, imageId, viewer).catch((error: unknown) => {
    if (isPlanktonError(error)) throw new ComputeError("EBAD_REQUEST", `Kernel or ramdisk image ${imageId}: ${error.message}`, { cause: error });
    throw error;
  });
  await mkdir(dir, { recursive: true });
  const temporary = `${path}.${randomBytes(6).toString("hex")}.part`;
  try {
    const reader = await context.engine.openFile(resolved.mapName);
    await pipeline(reader.stream(0, reader.sizeBytes), createWriteStream(temporary));
    const handle = await open(temporary, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  return path;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
