/**
 * The whole `okeanos serve` HTTP server over a temporary file store and a test database, for
 * the object store's tests and real-client interop: identity + the object store + public links,
 * listening on 127.0.0.1 at a free port.
 *
 *   const served = await servePithos(db);
 *   const alice = await served.addUser("alice", "secret");   // with object-store quota
 *   … swift -A ${served.baseUrl}/auth/v1.0 -U alice -K secret …
 *   await served.close();
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { createUser, ensureResources, setLimit, standardResources, type MetadataDatabase, type User } from "../../../db/index.ts";
import { FileObjectStore } from "../../../engine/blocker/file.ts";
import type { HashAlgorithm } from "../../../engine/blocker/content.ts";
import type { ObjectStore } from "../../../engine/blocker/object-store.ts";
import { Engine } from "../../../engine/engine.ts";
import { hashPassword } from "../../../identity/password.ts";
import { buildServer } from "../../../serve/server.ts";
import { PithosService, type PithosServiceOptions } from "../service.ts";
import { diskspaceResource } from "../quota.ts";

/** scrypt at 2^4: the same code path, microseconds instead of ~50 ms per login. */
const testCostLog2 = 4;
/** Quota the test users get unless a test says otherwise: more than any test stores. */
export const testDiskspaceBytes = 64 * 1024 ** 3;

export interface ServedPithos {
  app: FastifyInstance;
  engine: Engine;
  service: PithosService;
  storeDir: string;
  /** `http://127.0.0.1:PORT` */
  baseUrl: string;
  addUser(name: string, password: string, options?: { diskspaceBytes?: number }): Promise<User>;
  /** A token for the user (Swift v1 auth), and its storage URL. */
  login(name: string, password: string): Promise<{ token: string; storageUrl: string }>;
  close(): Promise<void>;
}

export interface ServePithosOptions {
  blockSizeBytes?: number;
  hashAlgorithm?: HashAlgorithm;
  /** Wraps the file store (a counting or fault-injecting layer) before the engine opens it. */
  wrapStore?: (store: ObjectStore) => ObjectStore;
  onCleanupError?: PithosServiceOptions["onCleanupError"];
}

export async function servePithos(db: MetadataDatabase, options: ServePithosOptions = {}): Promise<ServedPithos> {
  await ensureResources(db, standardResources);
  const storeDir = await mkdtemp(join(tmpdir(), "okeanos-pithos-"));
  const files = await FileObjectStore.open(storeDir);
  const engine = await Engine.init(options.wrapStore?.(files) ?? files, {
    ...(options.blockSizeBytes !== undefined && { blockSizeBytes: options.blockSizeBytes }),
    ...(options.hashAlgorithm !== undefined && { hashAlgorithm: options.hashAlgorithm }),
  });
  const service = new PithosService({ engine, db, ...(options.onCleanupError !== undefined && { onCleanupError: options.onCleanupError }) });
  const app = await buildServer({ db, pithos: service });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    app,
    engine,
    service,
    storeDir,
    baseUrl,
    async addUser(name, password, userOptions = {}) {
      const user = await createUser(db, { name, passwordHash: await hashPassword(password, { costLog2: testCostLog2 }) });
      await setLimit(db, user.uuid, diskspaceResource, userOptions.diskspaceBytes ?? testDiskspaceBytes);
      return user;
    },
    async login(name, password) {
      const response = await fetch(`${baseUrl}/auth/v1.0`, { headers: { "x-auth-user": name, "x-auth-key": password } });
      if (response.status !== 200) throw new Error(`login of ${name} failed: ${response.status}`);
      return { token: response.headers.get("x-auth-token") as string, storageUrl: response.headers.get("x-storage-url") as string };
    },
    async close() {
      await app.close();
      await engine.close();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
