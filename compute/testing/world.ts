/**
 * A compute service's surroundings for tests: a migrated database (each engine), the standard
 * quota resources and a user, a file-backed engine store, Pithos+ and Plankton over them with
 * one small raw image uploaded, two flavors, a fake driver and stub freeze functions that
 * record their calls. `service()` builds a ComputeService over it; several services over one
 * world stand for a process and its restart after a crash.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll } from "vitest";
import { createComputeFlavor, createUser, ensureResources, standardResources, type MetadataDatabase, type User } from "../../db/index.ts";
import type { TestDatabases } from "../../db/testing/databases.ts";
import { FileObjectStore } from "../../engine/blocker/file.ts";
import { Engine } from "../../engine/engine.ts";
import { PithosService } from "../../gateways/pithos/index.ts";
import { PlanktonService } from "../../gateways/plankton/index.ts";
import type { ComputeCaller } from "../model.ts";
import { ComputeService, type ComputeServiceOptions } from "../service.ts";
import type { FreezeFunctions } from "../steps.ts";
import { FakeDriver } from "./fake-driver.ts";

export const blockSizeBytes = 4096;
/** 16 blocks of a recognisable pattern. */
export const imageData = Buffer.alloc(16 * blockSizeBytes, "okeanos-image-");

export interface FreezeCalls {
  begin: Array<{ owner: string; name: string; properties: Record<string, string> }>;
  complete: string[];
  fail: string[];
}

export interface ComputeWorld {
  db: MetadataDatabase;
  engine: Engine;
  plankton: PlanktonService;
  alice: User;
  caller: ComputeCaller;
  imageId: string;
  stateDir: string;
  freezeCalls: FreezeCalls;
  freeze: FreezeFunctions;
  /** Uploads a raw image as alice; its id. */
  uploadImage(name: string, data: Buffer, properties?: Record<string, string>): Promise<string>;
  service(options?: Partial<ComputeServiceOptions> & { driver?: FakeDriver }): ComputeService;
}

export async function computeWorld(databases: TestDatabases): Promise<ComputeWorld> {
  const db = await databases.open();
  await ensureResources(db, standardResources);
  const alice = await createUser(db, { name: `alice-${Math.random().toString(36).slice(2)}` });
  const dir = await mkdtemp(join(tmpdir(), "okeanos-compute-"));
  afterAll(() => rm(dir, { recursive: true, force: true }));
  const engine = await Engine.init(await FileObjectStore.open(join(dir, "store")), { blockSizeBytes });
  afterAll(() => engine.close());
  const pithos = new PithosService({ engine, db });
  const plankton = new PlanktonService({ pithos });
  const uploadImage = async (name: string, data: Buffer, properties: Record<string, string> = {}) => {
    const created = await plankton.create(alice.uuid, { name, diskFormat: "raw", containerFormat: "bare", properties });
    await plankton.upload(alice.uuid, created.image.uuid, Readable.from([data]), data.length);
    return created.image.uuid;
  };
  const imageId = await uploadImage("cirros", imageData);
  await createComputeFlavor(db, { id: "1", name: "m1.tiny", vcpus: 1, ramMiB: 512, diskGiB: 0 });
  await createComputeFlavor(db, { id: "2", name: "m1.small", vcpus: 2, ramMiB: 1024, diskGiB: 0 });
  const freezeCalls: FreezeCalls = { begin: [], complete: [], fail: [] };
  const freeze: FreezeFunctions = {
    async beginFreeze(service, options) {
      freezeCalls.begin.push({ owner: options.owner, name: options.name, properties: options.properties ?? {} });
      const created = await service.create(options.owner, { name: options.name, diskFormat: "raw", containerFormat: "bare", properties: options.properties ?? {} });
      return { imageId: created.image.uuid };
    },
    async completeFreeze(_service, _engine, options) {
      freezeCalls.complete.push(options.imageId);
      await options.snapshot(`freeze-${options.imageId}`);
    },
    async failFreeze(_service, imageId) {
      freezeCalls.fail.push(imageId);
    },
  };
  const stateDir = join(dir, "state");
  return {
    db,
    engine,
    plankton,
    alice,
    caller: { userUuid: alice.uuid, isAdmin: false },
    imageId,
    stateDir,
    freezeCalls,
    freeze,
    uploadImage,
    service(options = {}) {
      return new ComputeService({
        db,
        engine,
        plankton,
        driver: options.driver ?? new FakeDriver(),
        nbd: { socketPath: "/run/okeanos/nbd.sock", snapshot: async (volume, snapshotName) => void (await engine.snapshot(volume, snapshotName)) },
        stateDir,
        graceMs: 10,
        worker: true,
        freeze,
        ...options,
      });
    },
  };
}
