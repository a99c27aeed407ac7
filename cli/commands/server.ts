/**
 * `okeanos server create|list|show|start|stop|reboot|delete|console|snapshot`: servers against
 * the metadata database directly, as an administrator. A command records the change and queues
 * its job in the job table (compute/README.md "Jobs"); the job worker of `okeanos serve` —
 * the process that runs the virtual machines and serves their disks — carries it out. With
 * `--wait` the command follows the server until the job is done.
 *
 * SERVER is a server's id or its name (a name two servers share is refused: use the id).
 * `--wait` follows the job through the database alone (the store is closed meanwhile) and
 * gives up after `--timeout` (exit 79, COMPUTE_EHYPERVISOR): a job only runs while
 * `okeanos serve` does.
 */
import { readFile } from "node:fs/promises";
import { InvalidArgumentError, Option, type Command } from "commander";
import type { ComputeApi, ComputeCaller, Server, ServerAction } from "../../compute/model.ts";
import { ComputeError } from "../../compute/errors.ts";
import { ensureResources, getComputeKeypair, getComputeServer, getImageRecord, standardResources, type MetadataDatabase } from "../../db/index.ts";
import { isPlanktonError, resolveImage } from "../../gateways/plankton/index.ts";
import { durationArgument, examples, report } from "../context.ts";
import { fieldTable, localFileError, table } from "../output.ts";
import { formatBytes, formatDuration } from "../units.ts";
import { adminCaller, computeDirOption, withCompute } from "./compute-context.ts";
import { databaseOption, databaseUrl, withDatabase } from "./database.ts";
import { findFlavor } from "./flavor.ts";
import { findUser } from "./user.ts";
import { formatTime } from "./volume.ts";

const mib = 1024 * 1024;
const gib = 1024 * mib;
/** How often --wait looks at the server: the job table is in the same database, a look is cheap. */
const waitPollMs = 500;
/** --wait's default patience: a TCG boot of a small guest takes a minute or two; 10 min covers a loaded host. */
export const waitTimeoutDefaultMs = 10 * 60 * 1000;

const waitOption = () => new Option("--wait", "wait until the server's job is done (its task state clears)");
const timeoutOption = () =>
  new Option("--timeout <duration>", "with --wait: give up after this long (exit 79); the job stays queued").default(waitTimeoutDefaultMs, formatDuration(waitTimeoutDefaultMs)).argParser(durationArgument);
const userOption = () => new Option("--user <user>", "the owner (a user name or uuid)");

interface WaitOptions {
  wait?: boolean;
  timeout: number;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerServerCommands(program: Command): void {
  const server = program.command("server").description("virtual machines (against the database directly; `okeanos serve` runs them)").addOption(databaseOption()).addOption(computeDirOption());

  server
    .command("create <name>")
    .description("create a server from an image: its disk is a clone of the image (no data copied)")
    .requiredOption("--image <image>", "the image: id or name, as the owner sees it (okeanos image list --owner USER)")
    .requiredOption("--flavor <flavor>", "the flavor: id or name (`okeanos flavor list`; private ones too)")
    .addOption(userOption().makeOptionMandatory())
    .option("--key-name <name>", "an SSH key pair of the owner's (openstack keypair create)")
    .option("--user-data <file>", "cloud-init user data (a #cloud-config, a script…)")
    .option("--property <key=value>", "server metadata; repeatable", collect, [])
    .addOption(waitOption())
    .addOption(timeoutOption())
    .addHelpText("after", examples("okeanos server create vm1 --image debian-12 --flavor m1.small --user alice --key-name laptop --wait"))
    .action((name: string, options: { image: string; flavor: string; user: string; keyName?: string; userData?: string; property: string[] } & WaitOptions, command: Command) =>
      report(command, async () => {
        const metadata = keyValues(options.property);
        const userData = options.userData === undefined ? undefined : await readFile(options.userData).catch((error: unknown) => { throw localFileError("read", options.userData!, error); });
        const made = await withCompute(command, async (compute, db) => {
          const owner = await findUser(db, options.user);
          // The quota resources the build reserves, in a database okeanos serve has not opened yet.
          await ensureResources(db, standardResources);
          // The administrator acts for the owner: the owner's images, keys and quota, and any
          // flavor (a private one included, as Nova's admin may).
          const caller: ComputeCaller = { userUuid: owner.uuid, isAdmin: true };
          const flavor = await findFlavor(compute, options.flavor);
          const imageId = await findImage(db, options.image, owner.uuid, options.user);
          if (options.keyName !== undefined && (await getComputeKeypair(db, owner.uuid, options.keyName)) === undefined) {
            throw new ComputeError("ENOT_FOUND", `${options.user} has no key pair ${options.keyName}`);
          }
          return compute.createServer(caller, {
            name,
            imageRef: imageId,
            flavorRef: flavor.id,
            ...(options.keyName !== undefined && { keyName: options.keyName }),
            ...(userData !== undefined && { userData }),
            metadata,
          });
        });
        const created = options.wait === true ? await waitForJob(command, made.id, options.timeout) : made;
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
            servers.map((one) => [one.id, one.name, one.status, one.taskState ?? "", one.vcpus, formatBytes(one.ramMiB * mib), diskText(one.diskGiB), formatTime(one.createdAt)]),
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
    const sub = server.command(`${verb} <server>`).description(description).addOption(waitOption()).addOption(timeoutOption());
    if (verb === "reboot") sub.option("--hard", "reset the machine at once");
    sub.action((ref: string, options: WaitOptions & { hard?: boolean }, command: Command) =>
      report(command, async () => {
        const queued = await withCompute(command, async (compute) => {
          const found = await findServer(compute, ref);
          await compute.serverAction(adminCaller, found.id, action(options));
          return compute.getServer(adminCaller, found.id);
        });
        const after = options.wait === true ? await waitForJob(command, queued.id, options.timeout) : queued;
        return serverReport(`Server ${after.name}: ${verb}${options.wait === true ? " done" : " queued"}`, after);
      }),
    );
  }

  server
    .command("delete <server>")
    .description("delete a server and its root disk (images made from it stay)")
    .addOption(waitOption())
    .addOption(timeoutOption())
    .action((ref: string, options: WaitOptions, command: Command) =>
      report(command, async () => {
        const found = await withCompute(command, async (compute) => {
          const one = await findServer(compute, ref);
          await compute.deleteServer(adminCaller, one.id);
          return one;
        });
        if (options.wait === true) await waitForGone(command, found.id, options.timeout);
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
    .addOption(timeoutOption())
    .action((ref: string, imageName: string, options: WaitOptions, command: Command) =>
      report(command, async () => {
        const { server: found, imageId } = await withCompute(command, async (compute) => {
          const one = await findServer(compute, ref);
          const answer = await compute.serverAction(adminCaller, one.id, { kind: "createImage", name: imageName });
          return { server: one, imageId: answer.imageId };
        });
        const after = options.wait === true ? await waitForJob(command, found.id, options.timeout) : found;
        if (options.wait === true && imageId !== undefined) await expectImageActive(command, imageId, after);
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

/** The image `ref` names for the owner: its uuid; a missing or ambiguous one is the CLI's error, not a 400. */
async function findImage(db: MetadataDatabase, ref: string, ownerUuid: string, ownerRef: string): Promise<string> {
  try {
    return (await resolveImage(db, ref, ownerUuid)).image.uuid;
  } catch (error) {
    if (isPlanktonError(error, "ENOT_FOUND")) throw new ComputeError("ENOT_FOUND", `no image ${ref} that ${ownerRef} can use (okeanos image list --owner ${ownerRef})`, { cause: error });
    if (isPlanktonError(error, "ECONFLICT")) throw new ComputeError("ECONFLICT", `more than one image ${ownerRef} can use is named ${ref}: use its id`, { cause: error });
    if (isPlanktonError(error)) throw new ComputeError("EBAD_REQUEST", error.message, { cause: error });
    throw error;
  }
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

/** The server as the API shows it, read from the database alone; ENOT_FOUND once deleted. */
async function readServer(db: MetadataDatabase, id: string): Promise<Server> {
  const { serverNotFound, serverView } = await import("../../compute/views.ts");
  const row = await getComputeServer(db, id);
  if (row === undefined || row.vmState === "deleted") throw serverNotFound(id);
  return serverView(db, row);
}

/** Polls the database until `done` answers, or throws the not-running error after `timeoutMs`. */
async function pollServer<T>(command: Command, id: string, timeoutMs: number, done: (db: MetadataDatabase) => Promise<T | undefined>, stillDoing: (db: MetadataDatabase) => Promise<string>): Promise<T> {
  return withDatabase(databaseUrl(command), async (db) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const result = await done(db);
      if (result !== undefined) return result;
      if (Date.now() >= deadline) {
        throw new ComputeError("EHYPERVISOR", `${await stillDoing(db)} after ${formatDuration(timeoutMs)}: jobs run in okeanos serve — is it running? (the job stays queued)`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(waitPollMs, Math.max(0, deadline - Date.now()))));
    }
  });
}

/** Until the server has no task (its job finished); a job that ends in ERROR is an error. */
async function waitForJob(command: Command, id: string, timeoutMs: number): Promise<Server> {
  return pollServer(
    command,
    id,
    timeoutMs,
    async (db) => {
      const now = await readServer(db, id);
      if (now.taskState !== null || now.status === "BUILD") return undefined;
      if (now.status === "ERROR") throw new ComputeError("EHYPERVISOR", `server ${now.name} is in ERROR: ${now.fault?.message ?? "no fault recorded"}`);
      return now;
    },
    async (db) => {
      const now = await readServer(db, id);
      return `server ${now.name} is still ${now.status} (${now.taskState ?? "no task"})`;
    },
  );
}

async function waitForGone(command: Command, id: string, timeoutMs: number): Promise<void> {
  await pollServer(
    command,
    id,
    timeoutMs,
    async (db) => {
      try {
        await readServer(db, id);
        return undefined;
      } catch (error) {
        if (error instanceof ComputeError && error.code === "ENOT_FOUND") return true;
        throw error;
      }
    },
    async () => `server ${id} is still there`,
  );
}

/** A createImage job that failed deletes its image and leaves the server as it was: say so. */
async function expectImageActive(command: Command, imageId: string, server: Server): Promise<void> {
  const image = await withDatabase(databaseUrl(command), (db) => getImageRecord(db, imageId));
  if (image?.status === "active") return;
  throw new ComputeError("EHYPERVISOR", `the snapshot of ${server.name} failed: image ${imageId} is ${image?.status ?? "gone"} (okeanos serve's log says why)`);
}

function diskText(diskGiB: number): string {
  return diskGiB === 0 ? "image size" : formatBytes(diskGiB * gib);
}

function serverReport(title: string, server: Server): { text: string; json: Server } {
  const rows: Array<[string, string | number]> = [
    ["id", server.id],
    ["name", server.name],
    ["status", server.status],
    ["task", server.taskState ?? "-"],
    ["owner", server.userUuid],
    ["flavor", `${server.flavorId} (${server.vcpus} vCPU, ${formatBytes(server.ramMiB * mib)}, disk ${diskText(server.diskGiB)})`],
    ["image", server.imageId ?? "-"],
    ["root volume", server.rootVolume],
    ["key", server.keyName ?? "-"],
    ["created", formatTime(server.createdAt)],
    ...(server.fault === null ? [] : ([["fault", server.fault.message]] as Array<[string, string]>)),
  ];
  return { text: `${title === "" ? "" : `${title}\n`}${fieldTable(rows)}`, json: server };
}
