/**
 * The hypervisor driver interface: what the compute service asks of whatever runs the
 * virtual machines. `compute/qemu/` implements it with one QEMU process per server on this
 * host; a libvirt or Ganeti driver for many hosts would implement the same methods.
 *
 * The service owns the truth (the database: which servers exist and what they should be
 * doing); a driver owns only running processes and their per-server scratch state (QMP and
 * VNC sockets, the console log, the NoCloud seed). Every method is idempotent, because the
 * service replays interrupted jobs after a crash: starting a running server, stopping a
 * stopped one and destroying a destroyed one all succeed without doing anything.
 *
 * Instances are named by the server's uuid. A driver never touches volumes: disks arrive as
 * NBD endpoints the service has made available (the engine serves them).
 */

/** A disk the guest sees, served over NBD on a unix socket. */
export interface NbdDisk {
  socketPath: string;
  exportName: string;
  readOnly?: boolean;
}

/**
 * An attached volume (Nova's os-volume_attachments): an NbdDisk with a stable identity.
 * `id` is the attachment's id: the hypervisor names the disk after it whether it was there
 * at start or hot-plugged later, so a detach after a restart of the service (or of the
 * instance) finds it. `serial` is what the guest reads (virtio-blk: `/sys/block/vdX/serial`,
 * udev's `/dev/disk/by-id/virtio-<serial>`): the volume's id, as Nova's libvirt driver sets it.
 * `device` is the guest device the service chose (`/dev/vdc`…): a hint, as in Nova, which a
 * driver may use to give the disk the same place on the guest's bus every time.
 */
export interface AttachedDisk extends NbdDisk {
  id: string;
  serial: string;
  device: string;
}

/** Direct kernel boot (Glance's kernel_id / ramdisk_id / os_command_line image properties). */
export interface KernelBoot {
  kernelPath: string;
  initrdPath?: string;
  commandLine?: string;
}

/**
 * cloud-init NoCloud data (cloud-init's `nocloud` datasource): the driver writes it as a small
 * ISO 9660 disk labelled `cidata` holding `meta-data`, `user-data` and, when given,
 * `network-config`.
 */
export interface NoCloudSeed {
  instanceId: string;
  hostname: string;
  /** OpenSSH public keys, one per entry. */
  sshAuthorizedKeys: readonly string[];
  /** The user's user_data, decoded (cloud-config, a script…); absent: an empty cloud-config. */
  userData?: Buffer;
  networkConfig?: string;
}

/** Everything needed to (re)start one server; the service rebuilds it from the database. */
export interface InstanceSpec {
  /** The server's uuid. */
  id: string;
  /** Shown in process listings and QEMU's `-name`. */
  name: string;
  vcpus: number;
  ramMiB: number;
  rootDisk: NbdDisk;
  /** Attached volumes, in attachment order (vdc, vdd…: vda is the root disk, vdb the seed). */
  extraDisks: readonly AttachedDisk[];
  seed: NoCloudSeed;
  kernel?: KernelBoot;
}

/** What the hypervisor reports about one instance (Nova's power_state, roughly). */
export type PowerState = "running" | "paused" | "shutdown" | "crashed";

export interface InstanceStatus {
  power: PowerState;
  /** The hypervisor process, when one runs. */
  pid?: number;
}

/** How to reach an instance's VNC server; the password is per console request. */
export interface VncEndpoint {
  /** A unix socket, or a TCP address on localhost. */
  address: { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };
  /** Up to 8 characters (RFB's DES challenge uses 8 bytes). */
  password: string;
}

export interface HypervisorDriver {
  /** "qemu", "libvirt"… */
  readonly kind: string;
  /** Starts the instance if it is not running (a new boot). Resolves once the process runs. */
  start(spec: InstanceSpec): Promise<void>;
  /**
   * Powers off: an ACPI power-button press, then after `graceMs` a hard stop. Resolves when
   * no process is left. Stopped already: resolves at once.
   */
  stop(id: string, options: { graceMs: number }): Promise<void>;
  /** SOFT: stop gracefully and start again; HARD: reset the machine at once. */
  reboot(spec: InstanceSpec, kind: "soft" | "hard", options: { graceMs: number }): Promise<void>;
  /** Stops at once and removes every trace of the instance on this host. */
  destroy(id: string): Promise<void>;
  /** Unknown instances (never started, or destroyed) report `shutdown`. */
  status(id: string): Promise<InstanceStatus>;
  /** Ids of every instance that has state on this host (running or not). */
  list(): Promise<string[]>;
  /** The tail of the serial console's output, up to `bytesMax`, as text. */
  consoleLog(id: string, bytesMax: number): Promise<string>;
  /** Sets a fresh VNC password on the running instance and says where to connect. */
  vnc(id: string): Promise<VncEndpoint>;
  /**
   * Hot-plugs `disk` into the running instance; there already: nothing. Not running: nothing
   * either — the next start has it, from InstanceSpec.extraDisks. Resolves once the disk is
   * on the guest's bus (the guest's kernel finds it a moment later).
   */
  attachDisk(id: string, disk: AttachedDisk): Promise<void>;
  /**
   * Takes the disk named `diskId` (AttachedDisk.id) out of the running instance: the guest is
   * asked to release it, and once it has, its NBD connection closes. Not there (never
   * plugged, taken out already, instance not running): nothing. A guest that does not release
   * it in time (one without PCI hot-unplug support, a paused or hung one): EHYPERVISOR, and
   * the disk stays.
   */
  detachDisk(id: string, diskId: string): Promise<void>;
}
