/**
 * What `okeanos serve`, `server` and `flavor` share: where compute keeps its per-host state
 * (`--compute-dir`), and a ComputeService opened for one CLI command. The CLI's service
 * runs no jobs (worker off): it records changes and queues jobs, which the worker of
 * `okeanos serve` runs (compute/README.md "Jobs").
 *
 *   <compute dir>/instances/<server id>/   the QEMU driver's state per server (sockets, console log, seed)
 *   <compute dir>/service/                 the service's scratch (kernels fetched from images)
 *   <compute dir>/nbd.sock                 the NBD socket the servers' disks are served on
 *                                          (unless okeanos serve --nbd-socket names another)
 */
import { join } from "node:path";
import { Option, type Command } from "commander";
import type { ComputeCaller } from "../../compute/model.ts";
import { ComputeError } from "../../compute/errors.ts";
import type { ComputeService } from "../../compute/service.ts";
import type { MetadataDatabase } from "../../db/index.ts";
import { globalOptions, withEngine } from "../context.ts";
import { databaseUrl, withDatabase } from "./database.ts";

/** Beside the file store's default `./data`, so one folder holds a whole embedded install. */
export const computeDirDefault = "./data/compute";

/** The administrator: the CLI acts on every user's servers. */
export const adminCaller: ComputeCaller = { userUuid: "00000000-0000-0000-0000-000000000000", isAdmin: true };

export function computeDirOption(): Option {
  return new Option("--compute-dir <path>", "compute's per-host state: each server's QEMU sockets, console log and seed").env("OKEANOS_COMPUTE_DIR").default(computeDirDefault);
}

export function computeDir(command: Command): string {
  return command.optsWithGlobals<{ computeDir?: string }>().computeDir ?? computeDirDefault;
}

export interface ComputeLayout {
  instancesDir: string;
  serviceDir: string;
  nbdSocket: string;
}

export function computeLayout(dir: string): ComputeLayout {
  return { instancesDir: join(dir, "instances"), serviceDir: join(dir, "service"), nbdSocket: join(dir, "nbd.sock") };
}

/** A ComputeService over --database and --store for one command (no job worker). */
export async function withCompute<T>(command: Command, action: (compute: ComputeService, db: MetadataDatabase) => Promise<T>): Promise<T> {
  const layout = computeLayout(computeDir(command));
  // Loaded when used: every other command starts without the compute and gateway modules.
  const [{ ComputeService }, { QemuDriver }, { PithosService }, { PlanktonService }] = await Promise.all([
    import("../../compute/service.ts"),
    import("../../compute/qemu/index.ts"),
    import("../../gateways/pithos/index.ts"),
    import("../../gateways/plankton/service.ts"),
  ]);
  return withDatabase(databaseUrl(command), (db) =>
    withEngine(globalOptions(command), (engine) => {
      const compute = new ComputeService({
        db,
        engine,
        plankton: new PlanktonService({ pithos: new PithosService({ engine, db }) }),
        driver: new QemuDriver({ stateDir: layout.instancesDir }),
        nbd: {
          socketPath: layout.nbdSocket,
          snapshot: async () => {
            throw new ComputeError("EINTERNAL", "a running server's disk is snapshotted by okeanos serve's job worker, not by the CLI");
          },
        },
        stateDir: layout.serviceDir,
        worker: false,
      });
      return action(compute, db);
    }),
  );
}
