/**
 * The volume service's surroundings for tests: a migrated database (each engine), the standard
 * quota resources, two users with tokens, an engine over a memory store (1 MiB blocks: a 1 GiB
 * volume's map has 1024 entries), Pithos+ and Plankton over them with one small raw image, and
 * the Cinder API plugin mounted at /volume on a fastify instance as serve builds it.
 *
 *   const world = await volumeWorld(databases);
 *   const answer = await world.request("POST", `/volume/v3/${world.alice.uuid}/volumes`, { json: { volume: { size: 1 } } });
 */
import { Readable } from "node:stream";
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from "fastify";
import { afterAll } from "vitest";
import { createUser, ensureResources, issueToken, migrateToLatest, openDatabase, setLimit, standardResources, type MetadataDatabase, type User } from "../../../db/index.ts";
import type { TestDatabases } from "../../../db/testing/databases.ts";
import { MemoryObjectStore } from "../../../engine/blocker/memory.ts";
import { Engine } from "../../../engine/engine.ts";
import { IdentityService } from "../../../identity/index.ts";
import { PithosService } from "../../pithos/index.ts";
import { PlanktonService } from "../../plankton/index.ts";
import { volumePlugin } from "../api/index.ts";
import { VolumeService, type VolumeServiceOptions } from "../service.ts";

export const blockSizeBytes = 1024 * 1024;
export const gib = 1024 ** 3;
/** Three blocks of a recognisable pattern, then a partial one: 3.5 MiB. */
export const imageData = Buffer.alloc(3.5 * blockSizeBytes, "okeanos-volume-image-");

export interface RequestOptions {
  /** Whose token: alice's by default; null sends none; a string is sent as is. */
  token?: "alice" | "bob" | null | { raw: string };
  json?: unknown;
  payload?: string;
  headers?: Record<string, string>;
}

export interface VolumeWorld {
  db: MetadataDatabase;
  engine: Engine;
  plankton: PlanktonService;
  volumes: VolumeService;
  alice: User;
  bob: User;
  tokens: { alice: string; bob: string };
  imageId: string;
  app: FastifyInstance;
  /** `/volume/v3/{alice's project}` */
  api: string;
  uploadImage(name: string, data: Buffer, owner?: User): Promise<string>;
  /** Another service over the same database and engine (a restart after a crash). */
  service(options?: Partial<VolumeServiceOptions>): VolumeService;
  /** Sets alice's volume.disk limit in GiB. */
  setDiskLimitGib(gibs: number, user?: User): Promise<void>;
  request(method: string, path: string, options?: RequestOptions): Promise<LightMyRequestResponse>;
}

/** One SQLite database in memory per world, for tests that need no second engine (the fuzz tests). */
export const memoryDatabases: Pick<TestDatabases, "open"> = {
  async open() {
    const db = await openDatabase("sqlite::memory:");
    await migrateToLatest(db);
    afterAll(() => db.close());
    return db;
  },
};

export async function volumeWorld(databases: Pick<TestDatabases, "open">, serviceOptions: Partial<VolumeServiceOptions> = {}): Promise<VolumeWorld> {
  const db = await databases.open();
  await ensureResources(db, standardResources);
  const suffix = Math.random().toString(36).slice(2);
  const alice = await createUser(db, { name: `alice-${suffix}` });
  const bob = await createUser(db, { name: `bob-${suffix}` });
  const tokens = { alice: (await issueToken(db, alice.uuid)).token, bob: (await issueToken(db, bob.uuid)).token };
  const engine = await Engine.init(new MemoryObjectStore(), { blockSizeBytes });
  afterAll(() => engine.close());
  const pithos = new PithosService({ engine, db });
  const plankton = new PlanktonService({ pithos });
  const uploadImage = async (name: string, data: Buffer, owner: User = alice) => {
    const created = await plankton.create(owner.uuid, { name, diskFormat: "raw", containerFormat: "bare", properties: { os_distro: "cirros" } });
    await plankton.upload(owner.uuid, created.image.uuid, Readable.from([data]), data.length);
    return created.image.uuid;
  };
  const imageId = await uploadImage("cirros", imageData);
  const service = (options: Partial<VolumeServiceOptions> = {}) => new VolumeService({ db, engine, ...serviceOptions, ...options });
  const volumes = service();
  const identity = new IdentityService({ db });
  // As serve builds its server (serve/server.ts): trailing slashes ignored, 1 MiB default limit.
  const app = Fastify({ routerOptions: { ignoreTrailingSlash: true }, bodyLimit: 1024 * 1024 });
  await app.register(volumePlugin, { volumes, identity, prefix: "/volume" });
  await app.ready();
  afterAll(() => app.close());
  const request = (method: string, path: string, options: RequestOptions = {}) => {
    const headers: Record<string, string> = { host: "cloud.test:8080", ...options.headers };
    const token = options.token === undefined ? "alice" : options.token;
    if (token !== null) headers["x-auth-token"] = typeof token === "string" ? tokens[token] : token.raw;
    let payload = options.payload;
    if (options.json !== undefined) payload = JSON.stringify(options.json);
    if (payload !== undefined && !Object.keys(headers).some((key) => key.toLowerCase() === "content-type")) headers["content-type"] = "application/json";
    return app.inject({ method: method as "GET", url: path, headers, ...(payload !== undefined && { payload }) });
  };
  return {
    db,
    engine,
    plankton,
    volumes,
    alice,
    bob,
    tokens,
    imageId,
    app,
    api: `/volume/v3/${alice.uuid}`,
    uploadImage,
    service,
    setDiskLimitGib: (gibs, user = alice) => setLimit(db, user.uuid, "volume.disk", gibs * gib),
    request,
  };
}

/** The answer must be Cinder's fault body: one key, the fault name, with code and message. */
export function expectFault(answer: LightMyRequestResponse, status: number, fault: string): string {
  if (answer.statusCode !== status) throw new Error(`expected ${status} ${fault}, got ${answer.statusCode}: ${answer.body}`);
  const body = answer.json() as Record<string, { code?: unknown; message?: unknown }>;
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== fault) throw new Error(`expected a ${fault} body, got ${answer.body}`);
  const inner = body[fault]!;
  if (inner.code !== status || typeof inner.message !== "string" || inner.message === "") throw new Error(`malformed fault body ${answer.body}`);
  return inner.message;
}
