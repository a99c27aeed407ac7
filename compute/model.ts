/**
 * The compute service's records and operations as the API and the CLI see them. `service.ts`
 * implements `ComputeApi`; `api/` (Nova v2.1 over HTTP) and `cli/commands/server.ts` call it.
 * Wire shapes (Nova's JSON field names) belong to `api/`, not here.
 *
 * Errors are ComputeError values (errors.ts) with codes the API maps to Nova's faults:
 *   ENOT_FOUND → 404 itemNotFound      ECONFLICT → 409 conflictingRequest
 *   EBAD_REQUEST → 400 badRequest      EFORBIDDEN / EQUOTA → 403 forbidden
 *   ENOT_IMPLEMENTED → 501             anything else → 500 computeFault
 */

/** Nova's vm_state. */
export type VmState = "building" | "active" | "stopped" | "error" | "deleted";

/** Nova's task_state: the action a job is carrying out, null when none. */
export type TaskState =
  | "spawning"
  | "powering-on"
  | "powering-off"
  | "rebooting"
  | "rebooting_hard"
  | "resize_prep"
  | "image_snapshot"
  | "deleting"
  | null;

/** Nova's API status, derived from vm_state and task_state (README "States"). */
export type ServerStatus = "BUILD" | "ACTIVE" | "SHUTOFF" | "REBOOT" | "HARD_REBOOT" | "RESIZE" | "ERROR" | "DELETED";

export interface Flavor {
  /** Nova flavor ids are strings ("1", or a uuid). */
  id: string;
  name: string;
  vcpus: number;
  ramMiB: number;
  diskGiB: number;
  isPublic: boolean;
  disabled: boolean;
  description: string | null;
  extraSpecs: Record<string, string>;
}

export interface Keypair {
  userUuid: string;
  name: string;
  publicKey: string;
  /** MD5 of the key blob, colon-separated hex, as Nova and `ssh-keygen -l -E md5` print it. */
  fingerprint: string;
  type: "ssh";
  createdAt: number;
}

export interface ServerFault {
  code: number;
  message: string;
  createdAt: number;
}

export interface Server {
  id: string;
  name: string;
  /** The owner (a user uuid; a project is a user in our identity: tenant_id = user_id). */
  userUuid: string;
  flavorId: string;
  /** The flavor's figures when the server was created or last resized. */
  vcpus: number;
  ramMiB: number;
  diskGiB: number;
  /** The Plankton image the root disk was cloned from; null when booted from a volume. */
  imageId: string | null;
  /** The engine volume of the root disk (`server-<id>`). */
  rootVolume: string;
  keyName: string | null;
  vmState: VmState;
  taskState: TaskState;
  status: ServerStatus;
  /** 1 running, 4 shutdown, 0 unknown (Nova's power_state numbers). */
  powerState: number;
  progress: number;
  metadata: Record<string, string>;
  /** Volumes attached or being attached or detached (Nova's block device mappings), in attachment order. */
  volumesAttached: string[];
  fault: ServerFault | null;
  createdAt: number;
  updatedAt: number;
  launchedAt: number | null;
  terminatedAt: number | null;
}

/**
 * A volume attached to a server (Nova's os-volume_attachments). Nova's `id` before 2.89 is
 * the volume's id; `attachmentId` is ours (the hypervisor names the disk after it).
 */
export interface VolumeAttachment {
  attachmentId: string;
  serverId: string;
  volumeId: string;
  /** `/dev/vdc`…: a hint, as in Nova; the guest finds the disk by its serial, the volume id. */
  device: string;
  /** attaching and detaching while their job waits or runs (the volume shows attaching, detaching). */
  state: "attaching" | "attached" | "detaching";
}

export interface AttachVolumeRequest {
  volumeId: string;
  /** Nova's `device`, a hint (`/dev/vdX`); absent or null: the next free one. */
  device?: string | null;
}

export interface CreateServerRequest {
  name: string;
  imageRef: string;
  flavorRef: string;
  keyName?: string;
  /** Decoded from the request's base64. */
  userData?: Buffer;
  metadata?: Record<string, string>;
}

export interface ServerListFilter {
  /** A regular expression, as Nova treats it. */
  name?: string;
  status?: ServerStatus;
  changesSince?: number;
  limit?: number;
  marker?: string;
}

export type ServerAction =
  | { kind: "start" }
  | { kind: "stop" }
  | { kind: "reboot"; hard: boolean }
  | { kind: "resize"; flavorRef: string }
  | { kind: "createImage"; name: string; metadata?: Record<string, string> };

/** Who is asking: the token's user; admins see and may do everything. */
export interface ComputeCaller {
  userUuid: string;
  isAdmin: boolean;
}

export interface ConsoleLocation {
  /** The websocket URL's path under /compute (api/ makes it absolute). */
  path: string;
  protocol: "vnc";
  type: "novnc";
}

/**
 * Nova's image status (nova/api/openstack/compute/views/images.py `_get_status`), from
 * Glance's: active → ACTIVE; queued and saving → SAVING (Nova has no QUEUED); killed →
 * ERROR; deleted → DELETED; anything else UNKNOWN.
 */
export type ImageStatus = "ACTIVE" | "SAVING" | "DELETED" | "ERROR" | "UNKNOWN";

/** A Plankton image as Nova's image proxy shows it (issue 8: "images, a view of Plankton"). */
export interface Image {
  id: string;
  name: string | null;
  status: ImageStatus;
  /** Nova's `_get_progress`: queued 25, saving 50, active 100, otherwise 0. */
  progress: number;
  minDiskGiB: number;
  minRamMiB: number;
  /** Bytes of the image's data; null while it has none (queued). */
  sizeBytes: number | null;
  /** The image's Plankton properties (Nova's image metadata). */
  metadata: Record<string, string>;
  /** The server createImage froze it from (its `instance_uuid` property), else null. */
  serverId: string | null;
  owner: string;
  createdAt: number;
  updatedAt: number;
}

/** Nova's image list filters (images.py SUPPORTED_FILTERS), as Glance receives them. */
export interface ImageListFilter {
  /** Exact name, as Glance matches it. */
  name?: string;
  /** Glance's status (Nova passes `?status=` lowercased): queued, saving, active, killed, deleted. */
  status?: string;
  /** Images updated at or after this epoch ms. */
  changesSince?: number;
  /** Images made from this server (`instance_uuid`). */
  serverId?: string;
  /** The `image_type` property (`snapshot` for createImage's). */
  type?: string;
  /** Images needing at least this much RAM / disk (Glance v1's min_ram / min_disk filters). */
  minRamMiB?: number;
  minDiskGiB?: number;
  limit?: number;
  /** The last image id of the previous page. */
  marker?: string;
}

export interface ComputeApi {
  listServers(caller: ComputeCaller, filter: ServerListFilter): Promise<Server[]>;
  getServer(caller: ComputeCaller, id: string): Promise<Server>;
  /** Records the server (BUILD) and queues its create job; quota refusals throw EQUOTA. */
  createServer(caller: ComputeCaller, request: CreateServerRequest): Promise<Server>;
  renameServer(caller: ComputeCaller, id: string, name: string): Promise<Server>;
  deleteServer(caller: ComputeCaller, id: string): Promise<void>;
  /** Queues the action's job; createImage answers the new image's id at once. */
  serverAction(caller: ComputeCaller, id: string, action: ServerAction): Promise<{ imageId?: string }>;
  setServerMetadata(caller: ComputeCaller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>>;
  deleteServerMetadata(caller: ComputeCaller, id: string, key: string): Promise<void>;
  consoleLog(caller: ComputeCaller, id: string, lines: number | undefined): Promise<string>;
  /** A one-use, short-lived token for console-proxy.ts. */
  vncConsole(caller: ComputeCaller, id: string): Promise<ConsoleLocation>;

  listVolumeAttachments(caller: ComputeCaller, serverId: string): Promise<VolumeAttachment[]>;
  /** 404 when the volume is not attached to the server. */
  getVolumeAttachment(caller: ComputeCaller, serverId: string, volumeId: string): Promise<VolumeAttachment>;
  /** Records the attachment (attaching) and queues its job; 404 for a volume not the server owner's. */
  attachVolume(caller: ComputeCaller, serverId: string, request: AttachVolumeRequest): Promise<VolumeAttachment>;
  /** Marks it detaching and queues its job. */
  detachVolume(caller: ComputeCaller, serverId: string, volumeId: string): Promise<void>;

  listFlavors(caller: ComputeCaller, options: { includePrivate: boolean }): Promise<Flavor[]>;
  getFlavor(caller: ComputeCaller, id: string): Promise<Flavor>;
  /** Admin only (the CLI `okeanos flavor create`). */
  createFlavor(flavor: Omit<Flavor, "disabled" | "extraSpecs"> & Partial<Pick<Flavor, "extraSpecs">>): Promise<Flavor>;
  deleteFlavor(id: string): Promise<void>;

  createKeypair(caller: ComputeCaller, name: string, publicKey: string | undefined): Promise<Keypair & { privateKey?: string }>;
  listKeypairs(caller: ComputeCaller): Promise<Keypair[]>;
  getKeypair(caller: ComputeCaller, name: string): Promise<Keypair>;
  deleteKeypair(caller: ComputeCaller, name: string): Promise<void>;

  /** Images the caller sees as Plankton decides: own, public, and shared with them (members). */
  listImages(caller: ComputeCaller, filter: ImageListFilter): Promise<Image[]>;
  /** 404 `Image not found.` when it does not exist or the caller may not see it. */
  getImage(caller: ComputeCaller, id: string): Promise<Image>;
  /** Only the image's owner deletes it (403 for others who see it), the file too, as Glance v2. */
  deleteImage(caller: ComputeCaller, id: string): Promise<void>;
  /** Merges (or, with `replace`, replaces) the image's properties; owner only. The properties after. */
  setImageMetadata(caller: ComputeCaller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>>;
  /** Removes one property; owner only; 404 when the image has no such key. */
  deleteImageMetadata(caller: ComputeCaller, id: string, key: string): Promise<void>;

  /** Nova's `GET /limits`: absolute limits and usage from identity's quotas. */
  limits(caller: ComputeCaller): Promise<Record<string, number>>;
}
