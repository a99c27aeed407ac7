/**
 * `okeanos flavor create|list|delete`: the administrator's flavors (Nova's are admin-made too),
 * against the metadata database directly. Users see them through `GET /compute/v2.1/flavors`.
 * A flavor's id and its name are both unique (409 in Nova, exit 75 here); FLAVOR arguments
 * take either.
 */
import { InvalidArgumentError, type Command } from "commander";
import { ComputeError } from "../../compute/errors.ts";
import type { ComputeApi, Flavor } from "../../compute/model.ts";
import { listComputeFlavors, type MetadataDatabase } from "../../db/index.ts";
import { examples, report } from "../context.ts";
import { table } from "../output.ts";
import { formatBytes, parseSize } from "../units.ts";
import { adminCaller, computeDirOption, withCompute } from "./compute-context.ts";
import { databaseOption } from "./database.ts";

const mib = 1024 * 1024;
const gib = 1024 * mib;

function positiveCount(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError("a whole number of at least 1");
  return value;
}

/** A size with a unit (`512M`, `2G`) in whole `unitBytes`; a bare number means that unit. */
function sizeIn(unitBytes: number, allowZero: boolean): (text: string) => number {
  return (text) => {
    let bytes: number;
    try {
      bytes = /^\d+$/.test(text) ? Number(text) * unitBytes : parseSize(text);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
    if (bytes % unitBytes !== 0) throw new InvalidArgumentError(`a whole number of ${formatBytes(unitBytes).replace(/^1 /, "")}`);
    const units = bytes / unitBytes;
    if (units < (allowZero ? 0 : 1)) throw new InvalidArgumentError(allowZero ? "not negative" : `at least ${formatBytes(unitBytes)}`);
    return units;
  };
}

interface CreateOptions {
  vcpus: number;
  ram: number;
  disk: number;
  id?: string;
  private?: boolean;
  description?: string;
}

function flavorRow(flavor: Flavor): string[] {
  return [flavor.id, flavor.name, String(flavor.vcpus), formatBytes(flavor.ramMiB * mib), flavor.diskGiB === 0 ? "image size" : formatBytes(flavor.diskGiB * gib), flavor.isPublic ? "yes" : "no"];
}

const flavorHead = ["ID", "NAME", "VCPUS", "RAM", "DISK", "PUBLIC"];

export function registerFlavorCommands(program: Command): void {
  const flavor = program.command("flavor").description("compute flavors: CPUs, memory and disk of a server (against the database directly)").addOption(databaseOption()).addOption(computeDirOption());

  flavor
    .command("create <name>")
    .description("create a flavor")
    .requiredOption("--vcpus <n>", "virtual CPUs", positiveCount)
    .requiredOption("--ram <size>", "memory: 512M, 2G (a bare number is MiB)", sizeIn(mib, false))
    .option("--disk <size>", "root disk: 10G (a bare number is GiB; 0 = the image's size)", sizeIn(gib, true), 0)
    .option("--id <id>", "the flavor id clients use in flavorRef (default: the next free number)")
    .option("--private", "hidden from `flavor list` of users (Nova's is_public=False)")
    .option("--description <text>", "shown by `openstack flavor show`")
    .addHelpText("after", examples("okeanos flavor create m1.tiny --vcpus 1 --ram 256M --disk 1G", "okeanos flavor create m1.small --vcpus 2 --ram 2G --disk 20 --id 2"))
    .action((name: string, options: CreateOptions, command: Command) =>
      report(command, async () => {
        const created = await withCompute(command, async (compute, db) => {
          const all = await everyFlavor(db);
          const sameName = all.find((one) => one.name === name);
          if (sameName !== undefined) throw new ComputeError("ECONFLICT", `a flavor named ${name} exists (id ${sameName.id})`);
          const sameId = options.id === undefined ? undefined : all.find((one) => one.id === options.id);
          if (sameId !== undefined) throw new ComputeError("ECONFLICT", `flavor id ${sameId.id} is taken (by ${sameId.name})`);
          const id = options.id ?? nextFlavorId(all);
          return compute.createFlavor({
            id,
            name,
            vcpus: options.vcpus,
            ramMiB: options.ram,
            diskGiB: options.disk,
            isPublic: options.private !== true,
            description: options.description ?? null,
          });
        });
        return { text: `Flavor ${created.name} created\n${table(flavorHead, [flavorRow(created)])}`, json: created };
      }),
    );

  flavor
    .command("list")
    .description("every flavor, public and private")
    .action((_options: unknown, command: Command) =>
      report(command, async () => {
        const flavors = await withCompute(command, (compute) => compute.listFlavors(adminCaller, { includePrivate: true }));
        return { text: table(flavorHead, flavors.map(flavorRow)), json: flavors };
      }),
    );

  flavor
    .command("delete <flavor>")
    .description("delete a flavor, by id or name (servers made with it keep their CPUs, memory and disk)")
    .action((ref: string, _options: unknown, command: Command) =>
      report(command, async () => {
        const deleted = await withCompute(command, async (compute) => {
          const found = await findFlavor(compute, ref);
          await compute.deleteFlavor(found.id);
          return found;
        });
        return { text: `Flavor ${deleted.name} (${deleted.id}) deleted`, json: { id: deleted.id, name: deleted.name, deleted: true } };
      }),
    );
}

/** Every flavor, private and disabled ones too: ids and names are unique across all of them. */
async function everyFlavor(db: MetadataDatabase): Promise<Array<Pick<Flavor, "id" | "name">>> {
  return listComputeFlavors(db, { includePrivate: true, includeDisabled: true });
}

/** Nova's own ids are small numbers ("1" for m1.tiny): the next one after the largest numeric id. */
function nextFlavorId(flavors: ReadonlyArray<Pick<Flavor, "id">>): string {
  const numeric = flavors.map((flavor) => Number(flavor.id)).filter((id) => Number.isSafeInteger(id) && id > 0);
  return String(numeric.length === 0 ? 1 : Math.max(...numeric) + 1);
}

/** A flavor by id, else by name (unique, but an id may look like another's name: the id wins). */
export async function findFlavor(compute: ComputeApi, ref: string): Promise<Flavor> {
  const flavors = await compute.listFlavors(adminCaller, { includePrivate: true });
  const found = flavors.find((flavor) => flavor.id === ref) ?? flavors.find((flavor) => flavor.name === ref);
  if (found === undefined) throw new ComputeError("ENOT_FOUND", `no flavor ${ref} (okeanos flavor list)`);
  return found;
}
