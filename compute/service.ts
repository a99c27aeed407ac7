/**
 * ComputeService: the compute API's operations (model.ts ComputeApi) over the database, the
 * engine, Plankton and a hypervisor driver. A call validates, records and queues; the job
 * worker (jobs.ts, steps.ts) does the work. `okeanos serve` runs one with the worker on;
 * `okeanos server …` constructs one with the worker off and only queues jobs, which the
 * serving process's worker finds within a poll.
 *
 *   start()  reconcile (reconcile.ts) ─► worker: resume jobs left running, run queued ones
 *   close()  worker stops claiming and waits for the jobs in flight
 */
import { randomBytes, randomUUID } from "node:crypto";
import {
  beginVolumeAttach,
  beginVolumeDetach,
  createComputeFlavor,
  createComputeKeypair,
  createComputeServer,
  deleteComputeFlavor,
  deleteComputeKeypair,
  deleteComputeServerMetadata,
  enqueueComputeJob,
  getComputeFlavor,
  getComputeKeypair,
  getComputeServer,
  getQuotas,
  listComputeFlavors,
  listComputeKeypairs,
  listComputeServers,
  listServerVolumeAttachments,
  releaseComputeJob,
  setComputeServerMetadata,
  updateComputeServer,
  withdrawComputeJob,
  withdrawComputeServer,
  type ComputeServer,
  type EnqueueJobInput,
  type MetadataDatabase,
} from "../db/index.ts";
import type { Engine } from "../engine/engine.ts";
import * as freezeModule from "../gateways/plankton/freeze.ts";
import { isPlanktonError, resolveImage, type PlanktonService, type ResolvedImage } from "../gateways/plankton/index.ts";
import { bootProperties } from "./boot.ts";
import type { HypervisorDriver, VncEndpoint } from "./driver.ts";
import * as images from "./images.ts";
import { ComputeError, isComputeError } from "./errors.ts";
import type { ConsoleTokenResolver } from "./console-proxy.ts";
import { JobWorker } from "./jobs.ts";
import { checkKeypairName, generateKeypair, parsePublicKey } from "./keys.ts";
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
} from "./model.ts";
import { createProvisions, rejectReserved, reserve, resizeProvisions } from "./quota.ts";
import { reconcile, type ReconcileReport } from "./reconcile.ts";
import { attachmentView, checkServerName, dbCall, flavorView, keypairView, nameMatcher, serverNotFound, serverView, toComputeError } from "./views.ts";
import { powerSyncIntervalMsDefault, syncPowerStates } from "./power-sync.ts";
import { runJob, type CreateArgs, type FreezeFunctions, type Logger, type ResizeArgs, type StepContext } from "./steps.ts";

/** Nova's graceful shutdown timeout (`shutdown_timeout`, 60 s) before a hard stop. */
export const stopGraceMsDefault = 60_000;
/** Serial console bytes read for `console log`: the tail a person reads, not a disk image. */
export const consoleLogBytesMax = 1024 * 1024;
/** Nova's `console_token_ttl`: a console URL works for 10 minutes, once. */
export const consoleTokenTtlMs = 600_000;
const gib = 1024 ** 3;

export interface ComputeServiceOptions {
  db: MetadataDatabase;
  engine: Engine;
  plankton: PlanktonService;
  driver: HypervisorDriver;
  /** The serving process's NBD server: every volume is an export on socketPath, named as the volume. */
  nbd: { socketPath: string; snapshot(volume: string, snapshotName: string): Promise<void> };
  /** Per-service scratch: kernels fetched from images. */
  stateDir: string;
  graceMs?: number;
  /** Run jobs in this process (okeanos serve); off: only queue them (the CLI). */
  worker: boolean;
  logger?: Logger;
  now?: () => number;
  /** Tests stub the freeze; gateways/plankton/freeze.ts otherwise. */
  freeze?: FreezeFunctions;
  pollMs?: number;
  /** Between two power-state syncs while the worker runs (power-sync.ts); 0 turns them off. */
  powerSyncIntervalMs?: number;
}

/** A console token's ticket: where to connect, once, until it expires. */
interface ConsoleTicket {
  serverId: string;
  endpoint: VncEndpoint;
  expiresAt: number;
}

const silentLogger: Logger = { info() {}, warn() {}, error() {} };

export class ComputeService implements ComputeApi, ConsoleTokenResolver {
  readonly db: MetadataDatabase;
  readonly #context: StepContext;
  readonly #worker: JobWorker | undefined;
  readonly #consoles = new Map<string, ConsoleTicket>();
  readonly #powerSyncIntervalMs: number;
  #powerSyncTimer: NodeJS.Timeout | undefined;
  #powerSyncRunning: Promise<unknown> | undefined;

  constructor(options: ComputeServiceOptions) {
    this.db = options.db;
    this.#context = {
      db: options.db,
      engine: options.engine,
      plankton: options.plankton,
      driver: options.driver,
      nbd: options.nbd,
      stateDir: options.stateDir,
      graceMs: options.graceMs ?? stopGraceMsDefault,
      logger: options.logger ?? silentLogger,
      freeze: options.freeze ?? freezeModule,
      now: options.now ?? Date.now,
    };
    this.#powerSyncIntervalMs = options.powerSyncIntervalMs ?? powerSyncIntervalMsDefault;
    this.#worker = options.worker
      ? new JobWorker({ db: options.db, run: (job) => runJob(this.#context, job), logger: this.#context.logger, now: this.#context.now, ...(options.pollMs !== undefined && { pollMs: options.pollMs }) })
      : undefined;
  }

  /** Reconciles, then starts the worker (when on). Call once, before serving requests. */
  async start(): Promise<ReconcileReport | undefined> {
    if (this.#worker === undefined) return undefined;
    const report = await reconcile(this.#context);
    await this.#worker.start();
    if (this.#powerSyncIntervalMs > 0) {
      this.#powerSyncTimer = setInterval(() => {
        // One pass at a time: a slow hypervisor must not pile passes up.
        this.#powerSyncRunning ??= syncPowerStates(this.#context).finally(() => (this.#powerSyncRunning = undefined));
      }, this.#powerSyncIntervalMs);
      this.#powerSyncTimer.unref();
    }
    return report;
  }

  /** Stops the worker and the power-state sync; waits for jobs unless `abandon` (tests simulating a crash). */
  async close(options: { abandon?: boolean } = {}): Promise<void> {
    clearInterval(this.#powerSyncTimer);
    await this.#powerSyncRunning;
    await this.#worker?.stop(options);
  }

  /** Resolves once the worker has nothing running and found nothing to claim. */
  async idle(): Promise<void> {
    await this.#worker?.idle();
  }

  async listServers(caller: ComputeCaller, filter: ServerListFilter): Promise<Server[]> {
    const rows = await listComputeServers(this.db, {
      ...(!caller.isAdmin && { userUuid: caller.userUuid }),
      // Nova lists deleted servers only to changes-since, so a client polling sees them go.
      includeDeleted: filter.changesSince !== undefined,
      ...(filter.changesSince !== undefined && { changedSinceMs: filter.changesSince }),
    });
    const pattern = filter.name === undefined ? undefined : nameMatcher(filter.name);
    let servers = await Promise.all(rows.map((row) => serverView(this.db, row)));
    servers = servers.filter((server) => (pattern === undefined || pattern(server.name)) && (filter.status === undefined || server.status === filter.status));
    if (filter.marker !== undefined) {
      const at = servers.findIndex((server) => server.id === filter.marker);
      if (at < 0) throw new ComputeError("EBAD_REQUEST", `marker [${filter.marker}] not found`);
      servers = servers.slice(at + 1);
    }
    return filter.limit === undefined ? servers : servers.slice(0, Math.max(0, filter.limit));
  }

  async getServer(caller: ComputeCaller, id: string): Promise<Server> {
    return serverView(this.db, await this.#visible(caller, id));
  }

  async createServer(caller: ComputeCaller, request: CreateServerRequest): Promise<Server> {
    const name = checkServerName(request.name);
    const flavor = await getComputeFlavor(this.db, String(request.flavorRef));
    if (flavor === undefined || flavor.disabled || (!flavor.isPublic && !caller.isAdmin)) {
      throw new ComputeError("EBAD_REQUEST", `Flavor ${request.flavorRef} could not be found.`);
    }
    const image = await this.#image(request.imageRef, caller.userUuid);
    if (image.image.minRamMb > flavor.ramMiB) throw new ComputeError("EBAD_REQUEST", "Flavor's memory is too small for requested image.");
    const keypair = request.keyName === undefined ? undefined : await getComputeKeypair(this.db, caller.userUuid, request.keyName);
    if (request.keyName !== undefined && keypair === undefined) throw new ComputeError("EBAD_REQUEST", "Invalid key_name provided.");
    const id = randomUUID();
    // The brief's rule: the root disk is the image's size or the flavor's, whichever is larger.
    const rootSizeBytes = Math.max(image.sizeBytes, flavor.diskGiB * gib);
    const provisions = createProvisions(caller.userUuid, { vcpus: flavor.vcpus, ramMiB: flavor.ramMiB, diskBytes: rootSizeBytes });
    const args: CreateArgs = { imageId: image.image.uuid, rootSizeBytes, provisions };
    const { server, job } = await dbCall(
      createComputeServer(
        this.db,
        {
          id,
          userUuid: caller.userUuid,
          name,
          flavorId: flavor.id,
          vcpus: flavor.vcpus,
          ramMiB: flavor.ramMiB,
          diskGiB: flavor.diskGiB,
          imageId: image.image.uuid,
          rootVolume: `server-${id}`,
          keyName: keypair?.name ?? null,
          publicKey: keypair?.publicKey ?? null,
          userData: request.userData === undefined ? null : request.userData.toString("base64"),
          bootProperties: bootProperties(image.image.properties),
          metadata: request.metadata ?? {},
        },
        args as unknown as Record<string, unknown>,
        this.#context.now(),
      ),
    );
    try {
      // The job is held until this succeeds: over quota answers 403 and leaves no server.
      await reserve(this.db, id, job.id, `create server ${id}`, provisions);
    } catch (error) {
      await withdrawComputeServer(this.db, id);
      throw isComputeError(error) ? error : toComputeError(error);
    }
    // A DELETE cancelled the job meanwhile: it may have released before this reserved.
    if (!(await releaseComputeJob(this.db, job.id, this.#context.now()))) await rejectReserved(this.db, id, job.id);
    this.#worker?.wake();
    return serverView(this.db, server);
  }

  async renameServer(caller: ComputeCaller, id: string, name: string): Promise<Server> {
    await this.#visible(caller, id);
    const updated = await dbCall(updateComputeServer(this.db, id, { name: checkServerName(name) }, this.#context.now()));
    if (updated === undefined) throw serverNotFound(id);
    return serverView(this.db, updated);
  }

  async deleteServer(caller: ComputeCaller, id: string): Promise<void> {
    await this.#visible(caller, id);
    await dbCall(enqueueComputeJob(this.db, { serverId: id, action: "delete", taskState: "deleting" }, this.#context.now()));
    this.#worker?.wake();
  }

  async serverAction(caller: ComputeCaller, id: string, action: ServerAction): Promise<{ imageId?: string }> {
    const server = await this.#visible(caller, id);
    switch (action.kind) {
      case "start":
        await this.#enqueue({ serverId: id, action: "start", taskState: "powering-on", allowedVmStates: ["stopped"], actionName: "start" });
        return {};
      case "stop":
        await this.#enqueue({ serverId: id, action: "stop", taskState: "powering-off", allowedVmStates: ["active", "error"], actionName: "stop" });
        return {};
      case "reboot":
        await this.#enqueue({
          serverId: id,
          action: "reboot",
          args: { hard: action.hard },
          taskState: action.hard ? "rebooting_hard" : "rebooting",
          // Nova: a hard reboot also recovers stopped and errored servers; a soft one needs a running guest.
          allowedVmStates: action.hard ? ["active", "stopped", "error"] : ["active"],
          actionName: "reboot",
        });
        return {};
      case "resize":
        await this.#resize(server, action.flavorRef);
        return {};
      case "createImage":
        return this.#createImage(server, action.name, action.metadata ?? {});
    }
  }

  async setServerMetadata(caller: ComputeCaller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>> {
    await this.#visible(caller, id);
    return dbCall(setComputeServerMetadata(this.db, id, metadata, replace, this.#context.now()));
  }

  async deleteServerMetadata(caller: ComputeCaller, id: string, key: string): Promise<void> {
    await this.#visible(caller, id);
    await dbCall(deleteComputeServerMetadata(this.db, id, key, this.#context.now()));
  }

  async consoleLog(caller: ComputeCaller, id: string, lines: number | undefined): Promise<string> {
    await this.#visible(caller, id);
    const text = await this.#context.driver.consoleLog(id, consoleLogBytesMax);
    if (lines === undefined) return text;
    const all = text.split("\n");
    if (all.at(-1) === "") all.pop();
    return all.slice(Math.max(0, all.length - lines)).join("\n") + (lines > 0 && all.length > 0 ? "\n" : "");
  }

  async vncConsole(caller: ComputeCaller, id: string): Promise<ConsoleLocation> {
    const server = await this.#visible(caller, id);
    if (server.vmState !== "active") throw new ComputeError("ECONFLICT", `Instance ${id} is not ready yet (it is ${server.vmState}).`);
    const endpoint = await this.#context.driver.vnc(id);
    const now = this.#context.now();
    for (const [token, ticket] of this.#consoles) if (ticket.expiresAt <= now) this.#consoles.delete(token);
    const token = randomBytes(24).toString("base64url");
    this.#consoles.set(token, { serverId: id, endpoint, expiresAt: now + consoleTokenTtlMs });
    return { path: `/console/${token}`, protocol: "vnc", type: "novnc" };
  }

  /** console-proxy.ts ConsoleTokenResolver: the endpoint of a console token, once; undefined when unknown or expired. */
  async resolveConsoleToken(token: string): Promise<VncEndpoint | undefined> {
    const ticket = this.#consoles.get(token);
    this.#consoles.delete(token);
    if (ticket === undefined || ticket.expiresAt <= this.#context.now()) return undefined;
    return ticket.endpoint;
  }

  // Nova's os-volume_attachments (README "Volumes"): a row and a job, one transaction.

  async listVolumeAttachments(caller: ComputeCaller, serverId: string): Promise<VolumeAttachment[]> {
    await this.#visible(caller, serverId);
    return (await listServerVolumeAttachments(this.db, serverId)).map(attachmentView);
  }

  async getVolumeAttachment(caller: ComputeCaller, serverId: string, volumeId: string): Promise<VolumeAttachment> {
    await this.#visible(caller, serverId);
    const attachment = (await listServerVolumeAttachments(this.db, serverId)).find((row) => row.volumeId === volumeId);
    if (attachment === undefined) throw new ComputeError("ENOT_FOUND", `volume_id not found: ${volumeId}`);
    return attachmentView(attachment);
  }

  async attachVolume(caller: ComputeCaller, serverId: string, request: AttachVolumeRequest): Promise<VolumeAttachment> {
    await this.#visible(caller, serverId);
    const { attachment } = await dbCall(beginVolumeAttach(this.db, { serverId, volumeId: request.volumeId, device: request.device ?? null }, this.#context.now()));
    this.#worker?.wake();
    return attachmentView(attachment);
  }

  async detachVolume(caller: ComputeCaller, serverId: string, volumeId: string): Promise<void> {
    await this.#visible(caller, serverId);
    await dbCall(beginVolumeDetach(this.db, { serverId, volumeId }, this.#context.now()));
    this.#worker?.wake();
  }

  async listFlavors(caller: ComputeCaller, options: { includePrivate: boolean }): Promise<Flavor[]> {
    const flavors = await listComputeFlavors(this.db, { includePrivate: options.includePrivate && caller.isAdmin });
    return flavors.map(flavorView);
  }

  async getFlavor(caller: ComputeCaller, id: string): Promise<Flavor> {
    const flavor = await getComputeFlavor(this.db, id);
    if (flavor === undefined || (!flavor.isPublic && !caller.isAdmin)) throw new ComputeError("ENOT_FOUND", `Flavor ${id} could not be found.`);
    return flavorView(flavor);
  }

  async createFlavor(flavor: Omit<Flavor, "disabled" | "extraSpecs"> & Partial<Pick<Flavor, "extraSpecs">>): Promise<Flavor> {
    return flavorView(await dbCall(createComputeFlavor(this.db, flavor, this.#context.now())));
  }

  async deleteFlavor(id: string): Promise<void> {
    await dbCall(deleteComputeFlavor(this.db, id));
  }

  async createKeypair(caller: ComputeCaller, name: string, publicKey: string | undefined): Promise<Keypair & { privateKey?: string }> {
    checkKeypairName(name);
    const generated = publicKey === undefined ? generateKeypair(`${name}@okeanos`) : undefined;
    const key = generated ?? parsePublicKey(publicKey!);
    const stored = await dbCall(createComputeKeypair(this.db, { userUuid: caller.userUuid, name, publicKey: key.publicKey, fingerprint: key.fingerprint }, this.#context.now()));
    return { ...keypairView(stored), ...(generated !== undefined && { privateKey: generated.privateKey }) };
  }

  async listKeypairs(caller: ComputeCaller): Promise<Keypair[]> {
    return (await listComputeKeypairs(this.db, caller.userUuid)).map(keypairView);
  }

  async getKeypair(caller: ComputeCaller, name: string): Promise<Keypair> {
    const keypair = await getComputeKeypair(this.db, caller.userUuid, name);
    if (keypair === undefined) throw new ComputeError("ENOT_FOUND", `Keypair ${name} not found for user ${caller.userUuid}`);
    return keypairView(keypair);
  }

  async deleteKeypair(caller: ComputeCaller, name: string): Promise<void> {
    await dbCall(deleteComputeKeypair(this.db, caller.userUuid, name));
  }

  // Nova's image proxy: a view of Plankton (images.ts).
  listImages(caller: ComputeCaller, filter: ImageListFilter): Promise<Image[]> {
    return images.listImages(this.#context.plankton, caller, filter);
  }

  getImage(caller: ComputeCaller, id: string): Promise<Image> {
    return images.getImage(this.#context.plankton, caller, id);
  }

  deleteImage(caller: ComputeCaller, id: string): Promise<void> {
    return images.deleteImage(this.#context.plankton, caller, id);
  }

  setImageMetadata(caller: ComputeCaller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>> {
    return images.setImageMetadata(this.#context.plankton, caller, id, metadata, replace);
  }

  deleteImageMetadata(caller: ComputeCaller, id: string, key: string): Promise<void> {
    return images.deleteImageMetadata(this.#context.plankton, caller, id, key);
  }

  async limits(caller: ComputeCaller): Promise<Record<string, number>> {
    const quotas = new Map((await dbCall(getQuotas(this.db, caller.userUuid))).map((quota) => [quota.resource, quota]));
    const limit = (resource: string, unit = 1) => Math.floor((quotas.get(resource)?.limit ?? 0) / unit);
    const used = (resource: string, unit = 1) => {
      const quota = quotas.get(resource);
      return Math.ceil(((quota?.usage ?? 0) + (quota?.pendingIncrease ?? 0)) / unit);
    };
    const mib = 1024 * 1024;
    const keypairs = await listComputeKeypairs(this.db, caller.userUuid);
    return {
      maxTotalInstances: limit("compute.vm"),
      maxTotalCores: limit("compute.cpu"),
      maxTotalRAMSize: limit("compute.ram", mib),
      maxServerMeta: 128,
      maxImageMeta: 128,
      maxPersonality: 0,
      maxPersonalitySize: 0,
      maxTotalKeypairs: 100,
      maxServerGroups: 0,
      maxServerGroupMembers: 0,
      totalInstancesUsed: used("compute.vm"),
      totalCoresUsed: used("compute.cpu"),
      totalRAMUsed: used("compute.ram", mib),
      totalServerGroupsUsed: 0,
      totalKeypairsUsed: keypairs.length,
    };
  }

  async #resize(server: ComputeServer, flavorRef: string): Promise<void> {
    const flavor = await getComputeFlavor(this.db, String(flavorRef));
    if (flavor === undefined || flavor.disabled) throw new ComputeError("EBAD_REQUEST", `Flavor ${flavorRef} could not be found.`);
    if (flavor.id === server.flavorId) throw new ComputeError("EBAD_REQUEST", "When resizing, instances must change flavor!");
    // Cyclades' rule (synnefo.md E.1): CPU and RAM only; the root volume keeps its size.
    if (flavor.diskGiB !== server.diskGiB) {
      throw new ComputeError("EBAD_REQUEST", `Resizing the disk is not supported: flavor ${flavor.name} has ${flavor.diskGiB} GiB, the server ${server.diskGiB} GiB.`);
    }
    const provisions = resizeProvisions(server.userUuid, server, flavor);
    const args: ResizeArgs = { flavorId: flavor.id, vcpus: flavor.vcpus, ramMiB: flavor.ramMiB, provisions };
    const job = await this.#enqueue(
      { serverId: server.id, action: "resize", args: args as unknown as Record<string, unknown>, taskState: "resize_prep", allowedVmStates: ["active", "stopped"], actionName: "resize", held: true },
      false,
    );
    if (provisions.length > 0) {
      try {
        await reserve(this.db, server.id, job, `resize server ${server.id}`, provisions);
      } catch (error) {
        await withdrawComputeJob(this.db, job, this.#context.now());
        throw isComputeError(error) ? error : toComputeError(error);
      }
    }
    if (!(await releaseComputeJob(this.db, job, this.#context.now()))) await rejectReserved(this.db, server.id, job);
    this.#worker?.wake();
  }

  async #createImage(server: ComputeServer, name: string, metadata: Record<string, string>): Promise<{ imageId: string }> {
    if (typeof name !== "string" || name.trim() === "" || name.length > 255) throw new ComputeError("EBAD_REQUEST", "Invalid image name.");
    // Checked first so a refused action leaves no image; enqueue checks again under its lock.
    if (!["active", "stopped"].includes(server.vmState) || server.taskState !== null) {
      throw new ComputeError("ECONFLICT", `Cannot 'createImage' instance ${server.id} while it is in vm_state ${server.vmState}, task_state ${server.taskState}`);
    }
    const properties = { ...metadata, ...server.bootProperties, image_type: "snapshot", instance_uuid: server.id, ...(server.imageId !== null && { base_image_ref: server.imageId }) };
    const { imageId } = await this.#context.freeze.beginFreeze(this.#context.plankton, { owner: server.userUuid, name, properties });
    try {
      await this.#enqueue({ serverId: server.id, action: "createImage", args: { imageId }, taskState: "image_snapshot", allowedVmStates: ["active", "stopped"], actionName: "createImage" });
    } catch (error) {
      await this.#context.freeze.failFreeze(this.#context.plankton, imageId);
      throw error;
    }
    return { imageId };
  }

  async #enqueue(input: EnqueueJobInput, wake = true): Promise<number> {
    const { job } = await dbCall(enqueueComputeJob(this.db, input, this.#context.now()));
    if (wake) this.#worker?.wake();
    return job.id;
  }

  async #image(imageRef: string, viewer: string): Promise<ResolvedImage> {
    try {
      return await resolveImage(this.db, imageRef, viewer);
    } catch (error) {
      if (isPlanktonError(error, "ENOT_FOUND")) throw new ComputeError("EBAD_REQUEST", `Image ${imageRef} could not be found.`, { cause: error });
      if (isPlanktonError(error)) throw new ComputeError("EBAD_REQUEST", error.message, { cause: error });
      throw error;
    }
  }

  /** The live server the caller may see (its owner, or an admin); 404 otherwise. */
  async #visible(caller: ComputeCaller, id: string): Promise<ComputeServer> {
    const server = typeof id === "string" && /^[0-9a-f-]{36}$/.test(id) ? await getComputeServer(this.db, id) : undefined;
    if (server === undefined || server.vmState === "deleted" || (server.userUuid !== caller.userUuid && !caller.isAdmin)) throw serverNotFound(id);
    return server;
  }

}
