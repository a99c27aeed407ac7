/**
 * An in-memory ComputeApi for the HTTP layer's tests: enough behaviour to give every route
 * real answers (ownership, states, conflicts, quota, one-use console tokens), none of the
 * jobs. `failNext(method, error)` makes one call throw, for the error paths.
 */
import { createHash, randomUUID } from "node:crypto";
import type { VncEndpoint } from "../../driver.ts";
import { ComputeError } from "../../errors.ts";
import type {
  AttachVolumeRequest,
  ComputeApi,
  ComputeCaller,
  ConsoleLocation,
  CreateServerRequest,
  Flavor,
  Image,
  ImageListFilter,
  Keypair,
  Server,
  ServerAction,
  ServerListFilter,
  VolumeAttachment,
} from "../../model.ts";
import type { ConsoleTokenResolver } from "../../console-proxy.ts";

/** Console tokens in the fake live this long, as the real ones are short-lived. */
export const fakeConsoleTokenTtlMs = 60_000;

export const tinyFlavor: Flavor = { id: "1", name: "m1.tiny", vcpus: 1, ramMiB: 512, diskGiB: 1, isPublic: true, disabled: false, description: null, extraSpecs: {} };
export const smallFlavor: Flavor = { id: "2", name: "m1.small", vcpus: 2, ramMiB: 2048, diskGiB: 20, isPublic: true, disabled: false, description: "two cpus", extraSpecs: { "hw:cpu_policy": "shared" } };
export const privateFlavor: Flavor = { id: "p1", name: "private", vcpus: 4, ramMiB: 4096, diskGiB: 40, isPublic: false, disabled: false, description: null, extraSpecs: {} };

type MethodName = keyof ComputeApi;

export class FakeCompute implements ComputeApi, ConsoleTokenResolver {
  readonly servers = new Map<string, Server>();
  readonly flavors = new Map<string, Flavor>([tinyFlavor, smallFlavor, privateFlavor].map((flavor) => [flavor.id, flavor]));
  readonly keypairs = new Map<string, Keypair>();
  /** Images by id, newest last; `members` see an image besides its owner (and everyone when public). */
  readonly images = new Map<string, Image & { isPublic: boolean; members: string[] }>();
  readonly calls: Array<{ method: MethodName; args: unknown[] }> = [];
  /** Block-storage volumes by id: their owner (the volume service's, as compute sees it). */
  readonly volumes = new Map<string, { owner: string }>();
  /** Attachments by volume id (attached at once: the fake runs no jobs). */
  readonly attachments = new Map<string, VolumeAttachment>();
  /** Servers a user may have before EQUOTA. */
  serversPerUserMax = 10;
  /** Where console tokens lead; set by the console proxy's test. */
  vncEndpoint: VncEndpoint = { address: { kind: "unix", path: "/nonexistent/vnc.sock" }, password: "secret12" };
  consoleOutput = "boot\u0007 ok\r\nlogin: \u001b[0m";
  now = () => Date.parse("2026-11-24T04:50:58.123Z");
  readonly #failures = new Map<MethodName, unknown>();
  readonly #consoleTokens = new Map<string, { endpoint: VncEndpoint; expiresAt: number }>();

  failNext(method: MethodName, error: unknown): void {
    this.#failures.set(method, error);
  }

  #enter(method: MethodName, args: unknown[]): void {
    this.calls.push({ method, args });
    if (this.#failures.has(method)) {
      const error = this.#failures.get(method);
      this.#failures.delete(method);
      throw error;
    }
  }

  #visible(caller: ComputeCaller, id: string): Server {
    const server = this.servers.get(id);
    if (server === undefined || server.vmState === "deleted" || (!caller.isAdmin && server.userUuid !== caller.userUuid)) {
      throw new ComputeError("ENOT_FOUND", `Instance ${id} could not be found.`);
    }
    return server;
  }

  async listServers(caller: ComputeCaller, filter: ServerListFilter): Promise<Server[]> {
    this.#enter("listServers", [caller, filter]);
    let servers = [...this.servers.values()].filter((server) => server.vmState !== "deleted" && (caller.isAdmin || server.userUuid === caller.userUuid));
    if (filter.name !== undefined) {
      // As the service does: a name that is no valid regular expression matches as text.
      const name = filter.name;
      let matches = (text: string) => text.includes(name);
      try {
        const pattern = new RegExp(name);
        matches = (text) => pattern.test(text);
      } catch {
        // keep the text match
      }
      servers = servers.filter((server) => matches(server.name));
    }
    if (filter.status !== undefined) servers = servers.filter((server) => server.status === filter.status);
    if (filter.changesSince !== undefined) servers = servers.filter((server) => server.updatedAt >= filter.changesSince!);
    if (filter.marker !== undefined) {
      const index = servers.findIndex((server) => server.id === filter.marker);
      if (index < 0) throw new ComputeError("EBAD_REQUEST", `marker [${filter.marker}] not found`);
      servers = servers.slice(index + 1);
    }
    return filter.limit === undefined ? servers : servers.slice(0, filter.limit);
  }

  async getServer(caller: ComputeCaller, id: string): Promise<Server> {
    this.#enter("getServer", [caller, id]);
    return this.#visible(caller, id);
  }

  async createServer(caller: ComputeCaller, request: CreateServerRequest): Promise<Server> {
    this.#enter("createServer", [caller, request]);
    const flavor = this.flavors.get(request.flavorRef);
    if (flavor === undefined) throw new ComputeError("EBAD_REQUEST", `Flavor ${request.flavorRef} could not be found.`);
    const owned = [...this.servers.values()].filter((server) => server.userUuid === caller.userUuid && server.vmState !== "deleted").length;
    if (owned >= this.serversPerUserMax) {
      throw new ComputeError("EQUOTA", `Quota exceeded for instances: Requested 1, but already used ${owned} of ${this.serversPerUserMax} instances`);
    }
    const id = randomUUID();
    const now = this.now();
    const server: Server = {
      id, name: request.name, userUuid: caller.userUuid, flavorId: flavor.id, vcpus: flavor.vcpus, ramMiB: flavor.ramMiB, diskGiB: flavor.diskGiB,
      imageId: request.imageRef, rootVolume: `server-${id}`, keyName: request.keyName ?? null, vmState: "building", taskState: "spawning",
      status: "BUILD", powerState: 0, progress: 0, metadata: request.metadata ?? {}, volumesAttached: [], fault: null, createdAt: now, updatedAt: now, launchedAt: null, terminatedAt: null,
    };
    this.servers.set(id, server);
    return server;
  }

  /** Test helper: a server as the create job leaves it. */
  activate(id: string): Server {
    const server = this.servers.get(id)!;
    Object.assign(server, { vmState: "active", taskState: null, status: "ACTIVE", powerState: 1, progress: 100, launchedAt: this.now() });
    return server;
  }

  async renameServer(caller: ComputeCaller, id: string, name: string): Promise<Server> {
    this.#enter("renameServer", [caller, id, name]);
    const server = this.#visible(caller, id);
    server.name = name;
    return server;
  }

  async deleteServer(caller: ComputeCaller, id: string): Promise<void> {
    this.#enter("deleteServer", [caller, id]);
    const server = this.#visible(caller, id);
    Object.assign(server, { vmState: "deleted", status: "DELETED", terminatedAt: this.now() });
  }

  async serverAction(caller: ComputeCaller, id: string, action: ServerAction): Promise<{ imageId?: string }> {
    this.#enter("serverAction", [caller, id, action]);
    const server = this.#visible(caller, id);
    if (server.taskState !== null) throw new ComputeError("ECONFLICT", `Cannot '${action.kind}' instance ${id} while it is in task_state ${server.taskState}`);
    if ((action.kind === "start" && server.vmState === "active") || (action.kind === "stop" && server.vmState === "stopped")) {
      throw new ComputeError("ECONFLICT", `Cannot '${action.kind}' instance ${id} while it is in vm_state ${server.vmState}`);
    }
    if (action.kind === "resize" && !this.flavors.has(action.flavorRef)) throw new ComputeError("EBAD_REQUEST", `Flavor ${action.flavorRef} could not be found.`);
    return action.kind === "createImage" ? { imageId: randomUUID() } : {};
  }

  async setServerMetadata(caller: ComputeCaller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>> {
    this.#enter("setServerMetadata", [caller, id, metadata, replace]);
    const server = this.#visible(caller, id);
    server.metadata = replace ? { ...metadata } : { ...server.metadata, ...metadata };
    return server.metadata;
  }

  async deleteServerMetadata(caller: ComputeCaller, id: string, key: string): Promise<void> {
    this.#enter("deleteServerMetadata", [caller, id, key]);
    const server = this.#visible(caller, id);
    if (!Object.hasOwn(server.metadata, key)) throw new ComputeError("ENOT_FOUND", "Metadata item was not found");
    delete server.metadata[key];
  }

  async consoleLog(caller: ComputeCaller, id: string, lines: number | undefined): Promise<string> {
    this.#enter("consoleLog", [caller, id, lines]);
    this.#visible(caller, id);
    const all = this.consoleOutput.split("\n");
    return lines === undefined ? this.consoleOutput : all.slice(Math.max(0, all.length - lines)).join("\n");
  }

  async vncConsole(caller: ComputeCaller, id: string): Promise<ConsoleLocation> {
    this.#enter("vncConsole", [caller, id]);
    const server = this.#visible(caller, id);
    if (server.vmState !== "active") throw new ComputeError("ECONFLICT", `Instance ${id} is not ready`);
    const token = this.issueConsoleToken();
    return { path: `/console/${token}`, protocol: "vnc", type: "novnc" };
  }

  /** Test helper: a volume of `owner`'s. */
  addVolume(owner: string, id: string = randomUUID()): string {
    this.volumes.set(id, { owner });
    return id;
  }

  async listVolumeAttachments(caller: ComputeCaller, serverId: string): Promise<VolumeAttachment[]> {
    this.#enter("listVolumeAttachments", [caller, serverId]);
    this.#visible(caller, serverId);
    return [...this.attachments.values()].filter((attachment) => attachment.serverId === serverId);
  }

  async getVolumeAttachment(caller: ComputeCaller, serverId: string, volumeId: string): Promise<VolumeAttachment> {
    this.#enter("getVolumeAttachment", [caller, serverId, volumeId]);
    this.#visible(caller, serverId);
    const attachment = this.attachments.get(volumeId);
    if (attachment?.serverId !== serverId) throw new ComputeError("ENOT_FOUND", `volume_id not found: ${volumeId}`);
    return attachment;
  }

  async attachVolume(caller: ComputeCaller, serverId: string, request: AttachVolumeRequest): Promise<VolumeAttachment> {
    this.#enter("attachVolume", [caller, serverId, request]);
    const server = this.#visible(caller, serverId);
    if (server.taskState !== null) throw new ComputeError("ECONFLICT", `Cannot 'attach_volume' instance ${serverId} while it is in task_state ${server.taskState}`);
    if (this.volumes.get(request.volumeId)?.owner !== server.userUuid) throw new ComputeError("ENOT_FOUND", `Volume ${request.volumeId} could not be found.`);
    if (this.attachments.has(request.volumeId)) throw new ComputeError("EBAD_REQUEST", `Invalid volume: volume ${request.volumeId} status must be 'available'. Currently in 'in-use'`);
    const taken = new Set([...this.attachments.values()].filter((attachment) => attachment.serverId === serverId).map((attachment) => attachment.device));
    if (request.device !== undefined && request.device !== null && taken.has(request.device)) throw new ComputeError("ECONFLICT", `The supplied device path (${request.device}) is in use.`);
    const device = request.device ?? ["c", "d", "e", "f"].map((letter) => `/dev/vd${letter}`).find((name) => !taken.has(name))!;
    const attachment: VolumeAttachment = { attachmentId: randomUUID(), serverId, volumeId: request.volumeId, device, state: "attached" };
    this.attachments.set(request.volumeId, attachment);
    server.volumesAttached = [...server.volumesAttached, request.volumeId];
    return attachment;
  }

  async detachVolume(caller: ComputeCaller, serverId: string, volumeId: string): Promise<void> {
    this.#enter("detachVolume", [caller, serverId, volumeId]);
    const server = this.#visible(caller, serverId);
    if (this.volumes.get(volumeId)?.owner !== server.userUuid) throw new ComputeError("ENOT_FOUND", `Volume ${volumeId} could not be found.`);
    if (this.attachments.get(volumeId)?.serverId !== serverId) throw new ComputeError("ENOT_FOUND", `volume_id not found: ${volumeId}`);
    this.attachments.delete(volumeId);
    server.volumesAttached = server.volumesAttached.filter((id) => id !== volumeId);
  }

  issueConsoleToken(ttlMs = fakeConsoleTokenTtlMs): string {
    const token = randomUUID();
    this.#consoleTokens.set(token, { endpoint: this.vncEndpoint, expiresAt: Date.now() + ttlMs });
    return token;
  }

  /** Every token the proxy asked about, in order. */
  readonly resolved: string[] = [];

  async resolveConsoleToken(token: string): Promise<VncEndpoint | undefined> {
    this.resolved.push(token);
    const entry = this.#consoleTokens.get(token);
    this.#consoleTokens.delete(token);
    return entry === undefined || entry.expiresAt <= Date.now() ? undefined : entry.endpoint;
  }

  async listFlavors(caller: ComputeCaller, options: { includePrivate: boolean }): Promise<Flavor[]> {
    this.#enter("listFlavors", [caller, options]);
    return [...this.flavors.values()].filter((flavor) => flavor.isPublic || (options.includePrivate && caller.isAdmin));
  }

  async getFlavor(caller: ComputeCaller, id: string): Promise<Flavor> {
    this.#enter("getFlavor", [caller, id]);
    const flavor = this.flavors.get(id);
    if (flavor === undefined || (!flavor.isPublic && !caller.isAdmin)) throw new ComputeError("ENOT_FOUND", `Flavor ${id} could not be found.`);
    return flavor;
  }

  async createFlavor(flavor: Omit<Flavor, "disabled" | "extraSpecs"> & Partial<Pick<Flavor, "extraSpecs">>): Promise<Flavor> {
    this.#enter("createFlavor", [flavor]);
    if (this.flavors.has(flavor.id)) throw new ComputeError("ECONFLICT", `Flavor with ID ${flavor.id} already exists.`);
    const created: Flavor = { disabled: false, extraSpecs: {}, ...flavor };
    this.flavors.set(created.id, created);
    return created;
  }

  async deleteFlavor(id: string): Promise<void> {
    this.#enter("deleteFlavor", [id]);
    if (!this.flavors.delete(id)) throw new ComputeError("ENOT_FOUND", `Flavor ${id} could not be found.`);
  }

  async createKeypair(caller: ComputeCaller, name: string, publicKey: string | undefined): Promise<Keypair & { privateKey?: string }> {
    this.#enter("createKeypair", [caller, name, publicKey]);
    const key = `${caller.userUuid}/${name}`;
    if (this.keypairs.has(key)) throw new ComputeError("ECONFLICT", `Key pair '${name}' already exists.`);
    const line = (publicKey ?? `ssh-ed25519 ${Buffer.from(randomUUID()).toString("base64")} generated`).trim();
    const blob = Buffer.from(line.split(/\s+/)[1] ?? "", "base64");
    const fingerprint = createHash("md5").update(blob).digest("hex").replace(/(..)(?!$)/g, "$1:");
    const keypair: Keypair = { userUuid: caller.userUuid, name, publicKey: line, fingerprint, type: "ssh", createdAt: this.now() };
    this.keypairs.set(key, keypair);
    return publicKey === undefined ? { ...keypair, privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n" } : keypair;
  }

  async listKeypairs(caller: ComputeCaller): Promise<Keypair[]> {
    this.#enter("listKeypairs", [caller]);
    return [...this.keypairs.values()].filter((keypair) => keypair.userUuid === caller.userUuid);
  }

  async getKeypair(caller: ComputeCaller, name: string): Promise<Keypair> {
    this.#enter("getKeypair", [caller, name]);
    const keypair = this.keypairs.get(`${caller.userUuid}/${name}`);
    if (keypair === undefined) throw new ComputeError("ENOT_FOUND", `Keypair ${name} not found for user ${caller.userUuid}`);
    return keypair;
  }

  async deleteKeypair(caller: ComputeCaller, name: string): Promise<void> {
    this.#enter("deleteKeypair", [caller, name]);
    if (!this.keypairs.delete(`${caller.userUuid}/${name}`)) throw new ComputeError("ENOT_FOUND", `Keypair ${name} not found for user ${caller.userUuid}`);
  }

  /** Test helper: an image as Plankton would hold it, owned by `owner`. */
  addImage(owner: string, fields: Partial<Image> & { isPublic?: boolean; members?: string[] } = {}): Image {
    const now = this.now();
    const metadata = fields.metadata ?? {};
    const image = {
      id: randomUUID(), name: "cirros", status: "ACTIVE" as const, progress: 100, minDiskGiB: 0, minRamMiB: 0, sizeBytes: 1024,
      serverId: metadata["instance_uuid"] ?? null, owner, createdAt: now, updatedAt: now, isPublic: false, members: [],
      ...fields, metadata,
    };
    this.images.set(image.id, image);
    return image;
  }

  #visibleImage(caller: ComputeCaller, id: string): Image & { isPublic: boolean; members: string[] } {
    const image = this.images.get(id);
    if (image === undefined || !(image.owner === caller.userUuid || image.isPublic || image.members.includes(caller.userUuid))) {
      throw new ComputeError("ENOT_FOUND", "Image not found.");
    }
    return image;
  }

  #ownedImage(caller: ComputeCaller, id: string): Image {
    const image = this.#visibleImage(caller, id);
    if (image.owner !== caller.userUuid) throw new ComputeError("EFORBIDDEN", `Not authorized for image ${id}.`);
    return image;
  }

  async listImages(caller: ComputeCaller, filter: ImageListFilter): Promise<Image[]> {
    this.#enter("listImages", [caller, filter]);
    let images = [...this.images.values()].reverse().filter((image) => image.owner === caller.userUuid || image.isPublic || image.members.includes(caller.userUuid));
    if (filter.name !== undefined) images = images.filter((image) => image.name === filter.name);
    if (filter.serverId !== undefined) images = images.filter((image) => image.serverId === filter.serverId);
    if (filter.marker !== undefined) {
      const index = images.findIndex((image) => image.id === filter.marker);
      if (index < 0) throw new ComputeError("EBAD_REQUEST", `Marker ${filter.marker} could not be found.`);
      images = images.slice(index + 1);
    }
    return filter.limit === undefined ? images : images.slice(0, filter.limit);
  }

  async getImage(caller: ComputeCaller, id: string): Promise<Image> {
    this.#enter("getImage", [caller, id]);
    return this.#visibleImage(caller, id);
  }

  async deleteImage(caller: ComputeCaller, id: string): Promise<void> {
    this.#enter("deleteImage", [caller, id]);
    this.#ownedImage(caller, id);
    this.images.delete(id);
  }

  async setImageMetadata(caller: ComputeCaller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>> {
    this.#enter("setImageMetadata", [caller, id, metadata, replace]);
    const image = this.#ownedImage(caller, id);
    image.metadata = replace ? { ...metadata } : { ...image.metadata, ...metadata };
    return image.metadata;
  }

  async deleteImageMetadata(caller: ComputeCaller, id: string, key: string): Promise<void> {
    this.#enter("deleteImageMetadata", [caller, id, key]);
    const image = this.#ownedImage(caller, id);
    if (!Object.hasOwn(image.metadata, key)) throw new ComputeError("ENOT_FOUND", "Invalid metadata key");
    delete image.metadata[key];
  }

  async limits(caller: ComputeCaller): Promise<Record<string, number>> {
    this.#enter("limits", [caller]);
    const used = [...this.servers.values()].filter((server) => server.userUuid === caller.userUuid && server.vmState !== "deleted").length;
    return { maxTotalInstances: this.serversPerUserMax, totalInstancesUsed: used, maxTotalCores: 20, totalCoresUsed: 0, maxTotalRAMSize: 51200, totalRAMUsed: 0 };
  }
}
