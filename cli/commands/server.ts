/**
 * `okeanos server create|list|show|start|stop|reboot|delete|console|snapshot`: servers against
 * the metadata database directly, as an administrator. A command records the change and queues
 * its job in the job table (compute/README.md "Jobs"); the job worker of `okeanos serve` —
 * the process that runs the virtual machines and serves their disks — carries it out. With
 * `--wait` the command follows the server until the job is done.
 *
 * SERVER is a server's id or its name (a name two servers share is refused: use the id).
 */
import { readFile } from "node:fs/promises";
import { InvalidArgumentError, Option, type Command } from "commander";
import type { ComputeApi, ComputeCaller, Server, ServerAction } from "../../compute/model.ts";
import { ComputeError } from "../../compute/errors.ts";
import { examples, report } from "../context.ts";
import { fieldTable, localFileError, table } from "../output.ts";
import { formatBytes } from "../units.ts";
import { adminCaller, computeDirOption, withCompute } from "./compute-context.ts";
import { databaseOption } from "./database.ts";
import { findUser } from "./user.ts";
import { formatTime } from "./volume.ts";

const mib = 1024 * 1024;
const gib = 1024 * mib;
/** How often --wait looks at the server: the job table is in the same database, a look is cheap. */
const waitPollMs = 500;
const waitTimeoutDefaultMs = 10 * 60 * 1000;

const waitOption = () => new Option("--wait", "wait until the server's job is done (its task state clears)");
const userOption = () => new Option("--user <user>", "the owner (a user name or uuid)");

export function registerServerCommands(program: Command): void {
  const server = program.command("server").description("virtual machines (against the database directly; `okeanos serve` runs them)").addOption(databaseOption()).addOption(computeDirOption());

  server
    .command("create <name>")
    .description("create a server from an image: its disk is a clone of the image (no data copied)")
    .requiredOption("--image <image>", "the image: id or name (Plankton)")
    .requiredOption("--flavor <flavor>", "the flavor: id or name (`okeanos flavor list`)")
    .addOption(userOption().makeOptionMandatory())
    .option("--key-name <name>", "an SSH key pair of the owner's (openstack keypair create)")
    .option("--user-data <file>", "cloud-init user data (a #cloud-config, a script…)")
    .option("--property <key=value...>", "server metadata", [])
    .addOption(waitOption())
    .addHelpText("after", examples("okeanos server create vm1 --image debian-12 --flavor m1.small --user alice --key-name laptop --wait"))
    .action((name: string, options: { image: string; flavor: string; user: string; keyName?: string; userData?: string; property: string[]; wait?: boolean }, command: Command) =>
      report(command, async () => {
        const userData = options.userData === undefined ? undefined : await readFile(options.userData).catch((error: unknown) => { throw localFileError("read", options.userData!, error); });
        const created = await withCompute(command, async (compute, db) => {
          const owner = await findUser(db, options.user);
          const caller: ComputeCaller = { userUuid: owner.uuid, isAdmin: false };
          const flavor = await findFlavor(compute, options.flavor);
          const made = await compute.createServer(caller, {
            name,
            imageRef: options.image,
            flavorRef: flavor.id,
            ...(options.keyName !== undefined && { keyName: options.keyName }),
            ...(userData !== undefined && { userData }),
            metadata: keyValues(options.property),
          });
          return options.wait === true ? waitForJob(compute, made.id) : made;
        });
        return serverReport(`Server ${created.name} ${options.wait === true ? "built" : "queued for building (okeanos serve builds it)"}`, created);
      }),
    );

  server
    .command("list")
    .description("servers, every user's or one user's")
    .addOption(userOption())
    .action((options: { user?: string }, command: Command) =>
      report(command, async () => {
        const servers = await withCompute(command, async (compute, db) => {
          const all = await compute.listServers(adminCaller, {});
          if (options.user === undefined) return all;
          const owner = await findUser(db, options.user);
          return all.filter((one) => one.userUuid === owner.uuid);
        });
        return {
          text: table(
            ["ID", "NAME", "STATUS", "TASK", "VCPUS", "RAM", "DISK", "CREATED"],
            servers.map((one) => [one.id, one.name, one.status, one.taskState ?? "", one.vcpus, formatBytes(one.ramMiB * mib), formatBytes(one.diskGiB * gib), formatTime(one.createdAt)]),
          ),
          json: servers,
        };
      }),
    );

  server
    .command("show <server>")
    .description("one server")
    .action((ref: string, _options: unknown, command: Command) =>
      report(command, async () => serverReport("", await withCompute(command, (compute) => findServer(compute, ref)))),
    );

  const actions: Array<[string, string, (options: { hard?: boolean }) => ServerAction]> = [
    ["start", "power on a stopped server", () => ({ kind: "start" })],
    ["stop", "power off: an ACPI power-button press, then a hard stop after the grace period", () => ({ kind: "stop" })],
    ["reboot", "reboot (soft: shut down and start again; --hard: reset at once)", (options) => ({ kind: "reboot", hard: options.hard === true })],
  ];
  for (const [verb, description, action] of actions) {
    const sub = server.command(`${verb} <server>`).description(description).addOption(waitOption());
    if (verb === "reboot") sub.option("--hard", "reset the machine at once");
    sub.action((ref: string, options: { wait?: boolean; hard?: boolean }, command: Command) =>
      report(command, async () => {
        const after = await withCompute(command, async (compute) => {
          const found = await findServer(compute, ref);
          await compute.serverAction(adminCaller, found.id, action(options));
          return options.wait === true ? waitForJob(compute, found.id) : compute.getServer(adminCaller, found.id);
        });
        return serverReport(`Server ${after.name}: ${verb}${options.wait === true ? " done" : " queued"}`, after);
      }),
    );
  }

  server
    .command("delete <server>")
    .description("delete a server and its root disk (images made from it stay)")
    .addOption(waitOption())
    .action((ref: string, options: { wait?: boolean }, command: Command) =>
      report(command, async () => {
        const found = await withCompute(command, async (compute) => {
          const one = await findServer(compute, ref);
          await compute.deleteServer(adminCaller, one.id);
          if (options.wait === true) await waitForGone(compute, one.id);
          return one;
        });
        return { text: `Server ${found.name} ${options.wait === true ? "deleted" : "queued for deletion"}`, json: { id: found.id, name: found.name, deleted: options.wait === true } };
      }),
    );

  server
    .command("console <server>")
    .description("the serial console's output (the last --lines lines)")
    .option("--lines <n>", "how many lines from the end", positiveInteger)
    .action((ref: string, options: { lines?: number }, command: Command) =>
      report(command, async () => {
        const output = await withCompute(command, async (compute) => compute.consoleLog(adminCaller, (await findServer(compute, ref)).id, options.lines));
        return { text: output, json: { output } };
      }),
    );

  server
    .command("snapshot <server> <image-name>")
    .description("freeze the server's disk into a new image (crash-consistent; only changed blocks are hashed)")
    .addOption(waitOption())
    .action((ref: string, imageName: string, options: { wait?: boolean }, command: Command) =>
      report(command, async () => {
        const { server: after, imageId } = await withCompute(command, async (compute) => {
          const found = await findServer(compute, ref);
          const answer = await compute.serverAction(adminCaller, found.id, { kind: "createImage", name: imageName });
          return { server: options.wait === true ? await waitForJob(compute, found.id) : found, imageId: answer.imageId };
        });
        return { text: `Image ${imageName} (${imageId ?? "?"}) ${options.wait === true ? "created" : "being created"} from ${after.name}`, json: { imageId, server: after.id } };
      }),
    );
}

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError("a whole number of at least 1");
  return value;
}

function keyValues(pairs: readonly string[]): Record<string, string> {
  const values: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf("=");
    if (equals <= 0) throw new InvalidArgumentError(`--property ${JSON.stringify(pair)}: use KEY=VALUE`);
    values[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return values;
}

async function findFlavor(compute: ComputeApi, ref: string): Promise<{ id: string }> {
  const flavors = await compute.listFlavors(adminCaller, { includePrivate: true });
  const byId = flavors.find((flavor) => flavor.id === ref);
  if (byId !== undefined) return byId;
  const byName = flavors.filter((flavor) => flavor.name === ref);
  if (byName.length === 1) return byName[0]!;
  if (byName.length > 1) throw new ComputeError("ECONFLICT", `more than one flavor is named ${ref}: use its id`);
  throw new ComputeError("ENOT_FOUND", `no flavor ${ref} (okeanos flavor list)`);
}

export async function findServer(compute: ComputeApi, ref: string): Promise<Server> {
  const servers = await compute.listServers(adminCaller, {});
  const byId = servers.find((one) => one.id === ref);
  if (byId !== undefined) return byId;
  const byName = servers.filter((one) => one.name === ref);
  if (byName.length === 1) return byName[0]!;
  if (byName.length > 1) throw new ComputeError("ECONFLICT", `more than one server is named ${ref}: use its id`);
  throw new ComputeError("ENOT_FOUND", `no server ${ref}`);
}

/** Until the server has no task (its job finished); a build that ends in ERROR is an error. */
async function waitForJob(compute: ComputeApi, id: string, timeoutMs = waitTimeoutDefaultMs): Promise<Server> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await compute.getServer(adminCaller, id);
    if (now.taskState === null && now.status !== "BUILD") {
      if (now.status === "ERROR") throw new ComputeError("EHYPERVISOR", `server ${now.name} is in ERROR: ${now.fault?.message ?? "no fault recorded"}`);
      return now;
    }
    if (Date.now() > deadline) throw new ComputeError("EHYPERVISOR", `server ${now.name} is still ${now.status}/${now.taskState ?? "-"} after ${timeoutMs / 1000} s: is okeanos serve running?`);
    await new Promise((resolve) => setTimeout(resolve, waitPollMs));
  }
}

async function waitForGone(compute: ComputeApi, id: string, timeoutMs = waitTimeoutDefaultMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await compute.getServer(adminCaller, id);
    } catch (error) {
      if (error instanceof ComputeError && error.code === "ENOT_FOUND") return;
      throw error;
    }
    if (Date.now() > deadline) throw new ComputeError("EHYPERVISOR", `server ${id} is still there after ${timeoutMs / 1000} s: is okeanos serve running?`);
    await new Promise((resolve) => setTimeout(resolve, waitPollMs));
  }
}

function serverReport(title: string, server: Server): { text: string; json: Server } {
  const rows: Array<[string, string | number]> = [
    ["id", server.id],
    ["name", server.name],
    ["status", server.status],
    ["task", server.taskState ?? "-"],
    ["owner", server.userUuid],
    ["flavor", `${server.flavorId} (${server.vcpus} vCPU, ${formatBytes(server.ramMiB * mib)}, ${formatBytes(server.diskGiB * gib)})`],
    ["image", server.imageId ?? "-"],
    ["root volume", server.rootVolume],
    ["key", server.keyName ?? "-"],
    ["created", formatTime(server.createdAt)],
    ...(server.fault === null ? [] : ([["fault", server.fault.message]] as Array<[string, string]>)),
  ];
  return { text: `${title === "" ? "" : `${title}\n`}${fieldTable(rows)}`, json: server };
}
