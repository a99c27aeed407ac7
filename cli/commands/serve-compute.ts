/**
 * The compute service inside `okeanos serve`: QEMU servers whose disks the same process
 * serves over NBD on a unix socket. Started after the NBD server (the disks must be reachable
 * before reconcile restarts anything) and stopped before it; servers keep running across a
 * restart of `okeanos serve` (QEMU reconnects to the NBD socket, compute/qemu).
 *
 * Compute is on when QEMU and genisoimage (the NoCloud seed) are installed; without them `okeanos serve` still serves storage and
 * says why compute is off, so the embedded quick start needs nothing but Node.
 */
import { accessSync, constants } from "node:fs";
import { mkdir } from "node:fs/promises";
import { delimiter, join, resolve } from "node:path";
import type { ComputeService as ComputeServiceType } from "../../compute/service.ts";
import type { MetadataDatabase } from "../../db/index.ts";
import type { Engine } from "../../engine/engine.ts";
import type { NbdServer } from "../../engine/nbd/server.ts";
import { computeLayout, type ComputeLayout } from "./compute-context.ts";

export const qemuBinaryDefault = "qemu-system-x86_64";

/** Why compute cannot run here, or undefined when it can. */
export function computeUnavailable(binary = qemuBinaryDefault): string | undefined {
  const missing = [binary, "genisoimage"].filter((program) => !onPath(program));
  if (missing.length === 0) return undefined;
  return `${missing.join(" and ")} not found (apt-get install qemu-system-x86 genisoimage)`;
}

function onPath(program: string): boolean {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, program), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** Makes the compute directory (private: it holds VNC and QMP sockets) and says where things go. */
export async function prepareComputeDir(dir: string): Promise<ComputeLayout> {
  // Absolute: QEMU daemonizes into `/`, and reconnects to the NBD socket by this path.
  const layout = computeLayout(resolve(dir));
  await mkdir(resolve(dir), { recursive: true, mode: 0o700 });
  await mkdir(layout.instancesDir, { recursive: true, mode: 0o700 });
  await mkdir(layout.serviceDir, { recursive: true, mode: 0o700 });
  return layout;
}

export interface StartComputeOptions {
  db: MetadataDatabase;
  engine: Engine;
  nbd: NbdServer;
  /** The unix socket `nbd` listens on. */
  nbdSocket: string;
  layout: ComputeLayout;
  logger: { info(object: object, message?: string): void; warn(object: object, message?: string): void; error(object: object, message?: string): void };
}

/** The service with its job worker running (reconcile first). Loaded lazily: QEMU-less hosts never load it. */
export async function startCompute(options: StartComputeOptions): Promise<ComputeServiceType> {
  const [{ ComputeService }, { QemuDriver }, { PithosService }, { PlanktonService }] = await Promise.all([
    import("../../compute/service.ts"),
    import("../../compute/qemu/index.ts"),
    import("../../gateways/pithos/index.ts"),
    import("../../gateways/plankton/service.ts"),
  ]);
  const service = new ComputeService({
    db: options.db,
    engine: options.engine,
    plankton: new PlanktonService({ pithos: new PithosService({ engine: options.engine, db: options.db }) }),
    driver: new QemuDriver({ stateDir: options.layout.instancesDir }),
    nbd: {
      socketPath: options.nbdSocket,
      snapshot: async (volume, snapshotName) => {
        await options.nbd.registry.snapshot(volume, snapshotName);
      },
    },
    stateDir: options.layout.serviceDir,
    worker: true,
    logger: options.logger,
  });
  const report = await service.start();
  if (report !== undefined) options.logger.info({ reconcile: report }, "compute: reconciled servers with the hypervisor");
  return service;
}
