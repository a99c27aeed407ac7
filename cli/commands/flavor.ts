/**
 * `okeanos flavor create|list|delete`: the administrator's flavors (Nova's are admin-made too),
 * against the metadata database directly. Users see them through `GET /compute/v2.1/flavors`.
 */
import { InvalidArgumentError, type Command } from "commander";
import type { Flavor } from "../../compute/model.ts";
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
    if (bytes % unitBytes !== 0) throw new InvalidArgumentError(`a whole number of ${formatBytes(unitBytes)}`);
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
        const created = await withCompute(command, async (compute) => {
          const id = options.id ?? (await nextFlavorId(await compute.listFlavors(adminCaller, { includePrivate: true })));
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
    .command("delete <id>")
    .description("delete a flavor (servers made with it keep their CPUs, memory and disk)")
    .action((id: string, _options: unknown, command: Command) =>
      report(command, async () => {
        await withCompute(command, (compute) => compute.deleteFlavor(id));
        return { text: `Flavor ${id} deleted`, json: { id, deleted: true } };
      }),
    );
}

/** Nova's own ids are small numbers ("1" for m1.tiny): the next one after the largest numeric id. */
async function nextFlavorId(flavors: readonly Flavor[]): Promise<string> {
  const numeric = flavors.map((flavor) => Number(flavor.id)).filter((id) => Number.isSafeInteger(id) && id > 0);
  return String(numeric.length === 0 ? 1 : Math.max(...numeric) + 1);
}
