/**
 * The metadata database's tables as Kysely sees them. Column names are snake_case as stored;
 * the query functions (db/queries/) map rows to camelCase records.
 *
 * Conventions, the same on both engines:
 * - Times are integers, milliseconds since the Unix epoch (`*_at`): SQLite INTEGER,
 *   PostgreSQL bigint (read back as a JS number by connect.ts's int8 parser).
 * - Quantities (quota limits, usage, deltas) are integers in the resource's unit (bytes,
 *   count); bigint on PostgreSQL. They stay below 2^53, checked on the way in.
 * - States are short lowercase text with a CHECK constraint, never booleans.
 *
 * Identity (synnefo.md D):
 *
 *   users ─┬─< tokens                      (a token row per issued token; only its SHA-256)
 *          └─< quota_holdings >── quota_resources
 *                  ^
 *   commissions ─< commission_provisions   (provision → holding (user_uuid, resource))
 *
 * Pithos+ (synnefo.md B; the data of each version is an engine map named by map_name):
 *
 *   pithos_accounts ─┬─< pithos_groups              (account, group name, member uuid)
 *                    └─< pithos_containers ─< pithos_objects ─┬─< pithos_versions
 *                                                              └─< pithos_sharing
 *
 * An object (node) is stable across versions: its path, uuid, sharing and public token. Each
 * upload or metadata change adds a version; at most one version of an object is `current`.
 * Names and paths sort in UTF-8 byte order on both engines (PostgreSQL: COLLATE "C").
 *
 * Plankton (synnefo.md C; images are Pithos+ files):
 *
 *   plankton_images ··· pithos_objects.uuid   (no foreign key: the image goes with its file)
 *
 * Compute (synnefo.md E, compute/README.md; flavors and keypairs stand alone):
 *
 *   compute_servers ─┬─< compute_server_metadata     (server, key)
 *                    ├─< compute_jobs                 (the durable job queue; ≤ 1 queued, ≤ 1 running)
 *                    └─< compute_volume_attachments >── volumes   (one server per volume)
 *   compute_servers.flavor_id ··· compute_flavors.id  (no foreign key: the figures are copied)
 *
 * Volumes (gateways/volumes/, Cinder v3 subset; migration 0006):
 *
 *   volumes ─┬─< volume_metadata   (volume, key)
 *            └·· volume_snapshots  (no foreign key: the service refuses to delete a volume with snapshots)
 */
import type { Generated } from "kysely";

export const userStates = ["active", "disabled"] as const;
export type UserState = (typeof userStates)[number];

export const commissionStates = ["pending", "accepted", "rejected"] as const;
export type CommissionState = (typeof commissionStates)[number];

export interface UsersTable {
  uuid: string;
  /** Login name; unique, case-sensitive. */
  name: string;
  email: string | null;
  state: UserState;
  /** A PHC-format hash (scrypt/argon2) written by identity/; null: no password login. */
  password_hash: string | null;
  created_at: number;
  updated_at: number;
}

export interface TokensTable {
  /** Hex SHA-256 of the token as the client sends it; the token itself is never stored. */
  token_hash: string;
  user_uuid: string;
  issued_at: number;
  expires_at: number;
  revoked_at: number | null;
}

/** A kind of thing a service counts against users (`compute.vm`, `volume.disk`…). */
export interface QuotaResourcesTable {
  name: string;
  description: string;
  /** `count` or `bytes`; shown to users, never converted. */
  unit: string;
  /** The limit of a user who has no explicit one (Astakos's base quota). */
  default_limit: number;
}

/**
 * A user's holding of one resource (Astakos `Holding`, holder `user:<uuid>`, no project).
 * The interval [usage − pending_decrease, usage + pending_increase] is Astakos's
 * [usage_min, usage_max]: pending commissions are reserved at issue and folded into `usage`
 * when accepted.
 */
export interface QuotaHoldingsTable {
  user_uuid: string;
  resource: string;
  /** Null: the resource's default_limit applies. */
  quota_limit: number | null;
  /** Accepted usage. */
  usage: number;
  /** Sum of the positive quantities of this holding's pending commissions. */
  pending_increase: number;
  /** Sum of the magnitudes of the negative quantities of its pending commissions. */
  pending_decrease: number;
}

export interface CommissionsTable {
  /** Assigned by the database, increasing, never reused (Astakos's serial). */
  serial: Generated<number>;
  /**
   * The issuer's idempotency key, unique: a service persists it before issuing, and an issue
   * retried with the same key (after a timeout or a crash) returns the same commission.
   */
  client_key: string;
  /** Free text for people (`create vm 42`). */
  name: string;
  state: CommissionState;
  issued_at: number;
  resolved_at: number | null;
}

export interface CommissionProvisionsTable {
  serial: number;
  user_uuid: string;
  resource: string;
  /** Non-zero; positive reserves, negative releases. */
  quantity: number;
}

export const pithosVersioningPolicies = ["auto", "none"] as const;
/** Container policy (synnefo.md B.5): `auto` keeps old versions as history, `none` drops them. */
export type PithosVersioning = (typeof pithosVersioningPolicies)[number];

export const pithosVersionStates = ["current", "history", "deleted"] as const;
/**
 * Pithos's version clusters: `current` (normal), `history` (replaced), `deleted` (the current
 * version at the time the object was deleted, kept under versioning `auto`).
 */
export type PithosVersionState = (typeof pithosVersionStates)[number];

export const pithosSharingAccesses = ["read", "write"] as const;
export type PithosSharingAccess = (typeof pithosSharingAccesses)[number];

/** A Pithos+ account: one per user, created on first use. */
export interface PithosAccountsTable {
  /** The user's uuid (Pithos+ URLs name accounts by uuid). */
  account: string;
  /** JSON text of {key: value} (`X-Account-Meta-*`). */
  meta: string;
  /** Null: unlimited. */
  quota_bytes: number | null;
  created_at: number;
  /** Changes to the account itself (meta, groups, quota, containers added or removed). */
  modified_at: number;
}

/** `X-Account-Group-<name>: uuid,uuid`: one row per member. Sharing names `account:name`. */
export interface PithosGroupsTable {
  account: string;
  name: string;
  member: string;
}

export interface PithosContainersTable {
  id: Generated<number>;
  account: string;
  /** Unique per account; byte order. */
  name: string;
  versioning: PithosVersioning;
  /** Null: unlimited. */
  quota_bytes: number | null;
  /** JSON text of {key: value} (`X-Container-Meta-*`). */
  meta: string;
  /**
   * Current versions in the container and the sum of their sizes, kept by every write under the
   * container's row lock (Swift's container stats are synchronous too, swift.md 4). Expired
   * versions (delete_at passed) count until expireObjects removes them.
   */
  object_count: number;
  bytes_used: number;
  created_at: number;
  /** The container's meta or policy changed, or an object in it did. */
  modified_at: number;
}

/** An object (Pithos's node): what stays the same across its versions. */
export interface PithosObjectsTable {
  id: Generated<number>;
  container_id: number;
  /** Unique per container; byte order. */
  path: string;
  /**
   * Stable across versions, renames and metadata changes; a new one when the path is written
   * again after a delete (a new object). Plankton uses it as the image id.
   */
  uuid: string;
  /** 16 characters [0-9a-zA-Z] (`/pithos/public/<token>`); null: not public. */
  public_token: string | null;
}

/**
 * `X-Object-Sharing: read=…;write=…`: one row per entry. An entry (`grantee`) is a user uuid,
 * `<account>:<group>` or `*` (everyone). Applies to the object and, inherited, to the objects
 * below it (`a` and `a/` for `a/b`).
 */
export interface PithosSharingTable {
  object_id: number;
  access: PithosSharingAccess;
  grantee: string;
}

export interface PithosVersionsTable {
  /** Global, increasing, never reused (Pithos's version serial, `X-Object-Version`). */
  serial: Generated<number>;
  object_id: number;
  state: PithosVersionState;
  /** The engine map holding the data. A metadata-only change or a move reuses the map. */
  map_name: string;
  size_bytes: number;
  /**
   * What the version was charged to its owner's `object-store.diskspace` quota, ≤ size_bytes:
   * its size, or less for an image frozen from a volume (only the blocks stored anew). Counted
   * only while current; an overwrite or delete releases it (migration 0005).
   */
  charged_bytes: number;
  /** Merkle root, hex (`X-Object-Hash`, synnefo.md B.4). */
  content_hash: string;
  /** MD5 hex of the data, or a manifest's etag. */
  etag: string;
  content_type: string;
  content_encoding: string | null;
  content_disposition: string | null;
  /** DLO: the `X-Object-Manifest` value `<container>/<prefix>`. */
  manifest: string | null;
  /** SLO: JSON text of the segment list. */
  slo_manifest: string | null;
  /** JSON text of {key: value} (`X-Object-Meta-*`). */
  meta: string;
  /** `X-Delete-At` in ms: from then on the version reads as absent. */
  delete_at: number | null;
  modified_at: number;
  /** The uuid of the user who wrote the version. */
  modified_by: string;
  /**
   * When it stopped being current (replaced or deleted); null while current. With modified_at
   * it says which version was current at any time (listings `until`).
   */
  ended_at: number | null;
}

export const planktonImageStatuses = ["queued", "saving", "active", "killed", "deleted"] as const;
/**
 * Glance's image states: `queued` (registered, no data yet), `saving` (an upload is being
 * stored), `active` (the file holds the image), `killed` (an upload failed for good),
 * `deleted` (kept for the record; we delete rows instead, so it is never written today).
 */
export type PlanktonImageStatus = (typeof planktonImageStatuses)[number];

/**
 * An image: a registration beside a Pithos+ file. The data, size and location are the file's
 * current version (joined by uuid); sharing the image is sharing the file (`*` = public).
 */
export interface PlanktonImagesTable {
  /** The file's pithos_objects.uuid: the image id. */
  uuid: string;
  name: string | null;
  disk_format: string | null;
  container_format: string | null;
  status: PlanktonImageStatus;
  /** GiB and MiB a server booting the image needs (Glance's units). */
  min_disk: number;
  min_ram: number;
  /** 0 or 1: a protected image cannot be deleted. */
  protected: number;
  /** 0 or 1: left out of default listings. */
  os_hidden: number;
  /** MD5 hex of the data as stored, when known. */
  checksum: string | null;
  created_at: number;
  updated_at: number;
  /** JSON text of {key: value} (Glance's extra properties, Plankton's `-Property-*`). */
  properties: string;
  /** JSON text of a list of strings. */
  tags: string;
  /** The owner's user uuid (the file's account at registration). */
  owner: string;
  /** 0 or 1: Plankton stored the data itself (`images/<uuid>`), so deleting the image deletes the file. */
  created_by_upload: number;
}

export const computeVmStates = ["building", "active", "stopped", "error", "deleted"] as const;
/** Nova's vm_state (compute/model.ts VmState). */
export type ComputeVmState = (typeof computeVmStates)[number];

export const computeTaskStates = ["spawning", "powering-on", "powering-off", "rebooting", "rebooting_hard", "resize_prep", "image_snapshot", "deleting"] as const;
/** Nova's task_state while a job runs (compute/model.ts TaskState); null when none. */
export type ComputeTaskState = (typeof computeTaskStates)[number];

export const computeJobStates = ["queued", "running", "done", "failed"] as const;
export type ComputeJobState = (typeof computeJobStates)[number];

export const computeJobActions = ["create", "start", "stop", "reboot", "resize", "createImage", "delete", "attachVolume", "detachVolume"] as const;
export type ComputeJobAction = (typeof computeJobActions)[number];

/** A server size (Nova flavor). Servers copy the figures, so a flavor can go while they live. */
export interface ComputeFlavorsTable {
  /** Nova flavor ids are strings ("1", or a uuid). */
  id: string;
  /** Unique. */
  name: string;
  vcpus: number;
  ram_mib: number;
  /** Root disk; 0: the image's size. */
  disk_gib: number;
  /** 0 or 1. */
  is_public: number;
  /** 0 or 1: not offered for new servers. */
  disabled: number;
  description: string | null;
  /** JSON text of {key: value}. */
  extra_specs: string;
  created_at: number;
}

/** An SSH public key a user registered (Nova os-keypairs); a server copies it at create. */
export interface ComputeKeypairsTable {
  user_uuid: string;
  name: string;
  /** OpenSSH one-line form, without the trailing newline. */
  public_key: string;
  /** MD5 of the key blob, colon-separated hex. */
  fingerprint: string;
  type: "ssh" | "x509";
  created_at: number;
}

export interface ComputeServersTable {
  /** A v4 UUID: the instance name the driver knows it by. */
  id: string;
  /** The owner (tenant = user in our identity). */
  user_uuid: string;
  name: string;
  flavor_id: string;
  /** The flavor's figures at create, changed by resize. */
  vcpus: number;
  ram_mib: number;
  disk_gib: number;
  /** The Plankton image the root disk was cloned from. */
  image_id: string | null;
  /** The engine volume of the root disk, `server-<id>`. */
  root_volume: string;
  key_name: string | null;
  /** The keypair's public key as it was at create (Nova copies it too). */
  public_key: string | null;
  /** The request's user_data, base64 as received; null when none. */
  user_data: string | null;
  /**
   * JSON text of the image's boot properties at create (Glance's kernel_id, ramdisk_id,
   * os_command_line): every later start boots the same way, and createImage copies them.
   */
  boot_properties: string;
  vm_state: ComputeVmState;
  task_state: ComputeTaskState | null;
  /** Nova's numbers: 0 no state, 1 running, 4 shutdown. */
  power_state: number;
  /** 0..100, while building. */
  progress: number;
  /** JSON text of {code, message, createdAt} after a failure; null otherwise. */
  fault: string | null;
  created_at: number;
  updated_at: number;
  launched_at: number | null;
  terminated_at: number | null;
  /** Set with vm_state `deleted`; the row stays (changes-since lists it). */
  deleted_at: number | null;
}

export interface ComputeServerMetadataTable {
  server_id: string;
  key: string;
  value: string;
}

/**
 * One state change of a server, durable: queued by the API, claimed (→ running) by a worker,
 * finished with the server's new state in one transaction. Commissions of a job use the client
 * key `compute:<server>:<id>`.
 */
export interface ComputeJobsTable {
  id: Generated<number>;
  server_id: string;
  action: ComputeJobAction;
  /** JSON text of the action's arguments (compute/jobs.ts). */
  args: string;
  state: ComputeJobState;
  /** Times a worker claimed it: more than one means it was resumed after a crash. */
  attempts: number;
  /** 1: queued but not claimable yet (its API call is reserving quota); 0 otherwise. */
  held: number;
  error: string | null;
  created_at: number;
  updated_at: number;
}

/** Attach state of one volume on one server (migration 0006); the volume is in-use while a row names it. */
export type ComputeAttachmentState = "attaching" | "attached" | "detaching";

export interface ComputeVolumeAttachmentsTable {
  /** Nova's attachment id. */
  id: string;
  server_id: string;
  /** The volume (volumes.id); attached to at most one server (unique). */
  volume_id: string;
  /** `/dev/vdb`… as the guest is expected to see it; unique per server. */
  device: string;
  state: ComputeAttachmentState;
  created_at: number;
  updated_at: number;
}

/** Cinder's volume statuses that are stored; attaching/in-use/detaching come from the attachment. */
export type VolumeStatus = "creating" | "available" | "extending" | "deleting" | "error" | "error_deleting" | "error_extending";

/** A block-storage volume (gateways/volumes/): an engine volume with an owner and a size. */
export interface VolumesTable {
  id: string;
  /** The owner (tenant = user in our identity). */
  user_uuid: string;
  name: string;
  description: string | null;
  /** Cinder sizes are whole GiB; the engine volume is exactly this size. */
  size_gib: number;
  status: VolumeStatus;
  /** The engine volume, `volume-<id>`. */
  engine_name: string;
  /** 1 when created from an image (Cinder's bootable flag). */
  bootable: number;
  /** The source it was cloned from, at most one of the three. */
  image_id: string | null;
  snapshot_id: string | null;
  source_volid: string | null;
  created_at: number;
  updated_at: number;
}

export interface VolumeMetadataTable {
  volume_id: string;
  key: string;
  value: string;
}

export type VolumeSnapshotStatus = "creating" | "available" | "deleting" | "error" | "error_deleting";

/** A snapshot of a volume: an engine snapshot map, `volsnap-<id>`. */
export interface VolumeSnapshotsTable {
  id: string;
  user_uuid: string;
  volume_id: string;
  name: string;
  description: string | null;
  size_gib: number;
  status: VolumeSnapshotStatus;
  engine_name: string;
  created_at: number;
  updated_at: number;
}

export interface Database {
  users: UsersTable;
  tokens: TokensTable;
  quota_resources: QuotaResourcesTable;
  quota_holdings: QuotaHoldingsTable;
  commissions: CommissionsTable;
  commission_provisions: CommissionProvisionsTable;
  pithos_accounts: PithosAccountsTable;
  pithos_groups: PithosGroupsTable;
  pithos_containers: PithosContainersTable;
  pithos_objects: PithosObjectsTable;
  pithos_sharing: PithosSharingTable;
  pithos_versions: PithosVersionsTable;
  plankton_images: PlanktonImagesTable;
  compute_flavors: ComputeFlavorsTable;
  compute_keypairs: ComputeKeypairsTable;
  compute_servers: ComputeServersTable;
  compute_server_metadata: ComputeServerMetadataTable;
  compute_jobs: ComputeJobsTable;
  compute_volume_attachments: ComputeVolumeAttachmentsTable;
  volumes: VolumesTable;
  volume_metadata: VolumeMetadataTable;
  volume_snapshots: VolumeSnapshotsTable;
}
