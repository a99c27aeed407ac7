/**
 * `okeanos file …`: the object store's sync client, over HTTP against `okeanos serve` (or
 * any Pithos+ server): upload and download move only the blocks the other side lacks,
 * sync does it for a folder, and list/info/share/publish/delete manage objects.
 * The protocol and algorithms are in cli/pithos-client/ (README there).
 *
 *   credentials: $OKEANOS_TOKEN [+ $OKEANOS_STORAGE_URL], or --user/$OKEANOS_USER with
 *                $OKEANOS_PASSWORD or --password-stdin ──► Keystone v3 login ──► storage URL
 */
import { stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { InvalidArgumentError, Option, type Command } from "commander";
import { HashPool } from "../../engine/blocker/hash-pool.ts";
import { examples, report } from "../context.ts";
import { fieldTable, LocalFileError, localFileError, progressBar, table, UsageError, type Progress, type Report } from "../output.ts";
import { formatBytes } from "../units.ts";
import { openSession, type LoginOptions } from "../pithos-client/auth.ts";
import { PithosClient, type ObjectEntry } from "../pithos-client/client.ts";
import { RemoteError } from "../pithos-client/errors.ts";
import { downloadObject, downloadParallelDefault, type DownloadResult } from "../pithos-client/download.ts";
import { syncDown, syncUp, type SyncResult, type TransferHooks } from "../pithos-client/sync.ts";
import { uploadFile, uploadParallelDefault, type UploadResult } from "../pithos-client/upload.ts";

export const serverUrlDefault = "http://127.0.0.1:8080";

/** Blocks in flight per transfer, at most: each holds a block in memory (64 × 4 MiB = 256 MiB). */
export const parallelMax = 64;

interface ConnectionOptions {
  url?: string;
  user?: string;
  passwordStdin?: boolean;
}

interface TransferOptions {
  parallel?: number;
}

export function registerFileCommands(program: Command): void {
  const file = program
    .command("file")
    .description("files in the object store over HTTP (Pithos+): only the blocks that differ cross the wire")
    .addOption(new Option("--url <url>", "the okeanos server").env("OKEANOS_URL").default(serverUrlDefault))
    .addOption(new Option("--user <name>", "user name; the password from $OKEANOS_PASSWORD or --password-stdin").env("OKEANOS_USER"))
    .option("--password-stdin", "read the password from standard input")
    .addHelpText(
      "after",
      `
Credentials: --user (or $OKEANOS_USER) with $OKEANOS_PASSWORD or --password-stdin, or a token
in $OKEANOS_TOKEN (with $OKEANOS_STORAGE_URL, or its catalog is looked up).
${examples(
  "OKEANOS_USER=alice OKEANOS_PASSWORD=… okeanos file upload disk.img backups/",
  "okeanos file download backups/disk.img /tmp/disk.img",
  "okeanos file sync ./photos photos --delete",
)}`,
    );

  file
    .command("upload <local> <target>")
    .description("upload a file to CONTAINER[/PATH] (a PATH ending in / or none: the file's name); only blocks the server lacks are sent")
    .addOption(parallelOption())
    .option("--content-type <type>", "the object's Content-Type (default: guessed from the name)")
    .addHelpText("after", examples("okeanos file upload disk.img backups/", "okeanos file upload --json report.pdf docs/2025/report.pdf"))
    .action((local: string, target: string, options: TransferOptions & { contentType?: string }, command: Command) =>
      report(command, () => withClient(command, (client, pool) => upload(client, pool, local, target, options))),
    );

  file
    .command("download <source> [local]")
    .description(
      "download CONTAINER/PATH to LOCAL (default: its name, here); an existing LOCAL is updated in place, fetching only the blocks that differ; " +
        "a new one is written to LOCAL.part and renamed when complete (an interrupted download resumes from it)",
    )
    .addOption(parallelOption())
    .addHelpText("after", examples("okeanos file download backups/disk.img", "okeanos file download backups/disk.img /srv/disk.img"))
    .action((source: string, local: string | undefined, options: TransferOptions, command: Command) =>
      report(command, () => withClient(command, (client, pool) => download(client, pool, source, local, options))),
    );

  file
    .command("sync <from> <to>")
    .description(
      "make CONTAINER[/PREFIX] hold the files under LOCALDIR (sync LOCALDIR CONTAINER[/PREFIX]), or with --down the other way round " +
        "(sync --down CONTAINER[/PREFIX] LOCALDIR); unchanged files (same Merkle root) cost no transfer",
    )
    .option("--down", "from the object store to LOCALDIR")
    .option("--delete", "also delete what the source side does not have")
    .option("--dry-run", "report what would change, change nothing")
    .addOption(parallelOption())
    .addHelpText("after", examples("okeanos file sync ./photos photos/2025", "okeanos file sync --down photos/2025 ./photos --delete"))
    .action((from: string, to: string, options: TransferOptions & { down?: boolean; delete?: boolean; dryRun?: boolean }, command: Command) =>
      report(command, () => withClient(command, (client, pool) => sync(client, pool, from, to, options))),
    );

  file
    .command("list [target]")
    .description("your containers, or the objects in CONTAINER[/PREFIX]")
    .addHelpText("after", examples("okeanos file list", "okeanos file list photos/2025/"))
    .action((target: string | undefined, _options: unknown, command: Command) => report(command, () => withClient(command, (client) => list(client, target))));

  file
    .command("info <target>")
    .description("an object's size, hashes, version, sharing and public link")
    .addHelpText("after", examples("okeanos file info backups/disk.img"))
    .action((target: string, _options: unknown, command: Command) => report(command, () => withClient(command, (client) => info(client, target))));

  file
    .command("share <target>")
    .description("set who may read and write CONTAINER/PATH (user uuids; replaces the previous sharing)")
    .option("--read <users>", "comma-separated user uuids that may read")
    .option("--write <users>", "comma-separated user uuids that may read and write")
    .option("--clear", "share with nobody")
    .addHelpText("after", examples("okeanos file share docs/plan.pdf --read 6b1c…,9f2e…", "okeanos file share docs/plan.pdf --clear"))
    .action((target: string, options: { read?: string; write?: string; clear?: boolean }, command: Command) =>
      report(command, () => withClient(command, (client) => share(client, target, options))),
    );

  file
    .command("publish <target>")
    .description("make CONTAINER/PATH readable by anyone with its public link, and print the link")
    .option("--unpublish", "remove the public link")
    .addHelpText("after", examples("okeanos file publish docs/flyer.pdf", "okeanos file publish docs/flyer.pdf --unpublish"))
    .action((target: string, options: { unpublish?: boolean }, command: Command) => report(command, () => withClient(command, (client) => publish(client, target, options))));

  file
    .command("delete <target>")
    .description("delete CONTAINER/PATH (its current version), or an empty CONTAINER")
    .addHelpText("after", examples("okeanos file delete backups/disk.img", "okeanos file delete backups"))
    .action((target: string, _options: unknown, command: Command) => report(command, () => withClient(command, (client) => remove(client, target))));
}

function parallelOption(): Option {
  return new Option("--parallel <n>", `requests in flight (1–${parallelMax}; default ${uploadParallelDefault})`).argParser(parallelArgument);
}

function parallelArgument(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1 || value > parallelMax) throw new InvalidArgumentError(`use a whole number from 1 to ${parallelMax}`);
  return value;
}

// ── connecting ─────────────────────────────────────────────────────────────

/** Logs in, runs `action` with a client and a hash pool, closes the pool whatever happens. */
async function withClient<T>(command: Command, action: (client: PithosClient, pool: HashPool) => Promise<T>): Promise<T> {
  const session = await openSession(await loginOptions(command.optsWithGlobals<ConnectionOptions>()));
  const pool = new HashPool();
  try {
    return await action(new PithosClient(session), pool);
  } finally {
    await pool.close();
  }
}

export async function loginOptions(options: ConnectionOptions, env: NodeJS.ProcessEnv = process.env): Promise<LoginOptions> {
  const url = (options.url ?? serverUrlDefault).replace(/\/+$/, "");
  const token = env["OKEANOS_TOKEN"];
  if (token !== undefined && token !== "") {
    const storageUrl = env["OKEANOS_STORAGE_URL"];
    return { url, token, ...(storageUrl !== undefined && storageUrl !== "" && { storageUrl }) };
  }
  if (options.user === undefined || options.user === "") {
    throw new UsageError("no credentials: give --user (or $OKEANOS_USER) with $OKEANOS_PASSWORD or --password-stdin, or set $OKEANOS_TOKEN");
  }
  const password = options.passwordStdin === true ? await readStdin() : env["OKEANOS_PASSWORD"];
  if (password === undefined || password === "") throw new UsageError(`no password for ${options.user}: set $OKEANOS_PASSWORD or pass --password-stdin`);
  return { url, user: options.user, password };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
}

// ── names ──────────────────────────────────────────────────────────────────

/** "CONTAINER[/PATH]" → its parts ("/c/p" is accepted too). */
export function parseRemote(text: string): { container: string; path: string } {
  const trimmed = text.startsWith("/") ? text.slice(1) : text;
  const slash = trimmed.indexOf("/");
  const container = slash < 0 ? trimmed : trimmed.slice(0, slash);
  if (container === "") throw new UsageError(`${JSON.stringify(text)} names no container: use CONTAINER[/PATH]`);
  return { container, path: slash < 0 ? "" : trimmed.slice(slash + 1) };
}

function parseObject(text: string): { container: string; object: string } {
  const { container, path } = parseRemote(text);
  if (path === "" || path.endsWith("/")) throw new UsageError(`${JSON.stringify(text)} names no object: use CONTAINER/PATH`);
  return { container, object: path };
}

// ── progress ───────────────────────────────────────────────────────────────

/** One bar at a time on a TTY: hashing, then sending (or fetching), each replacing the last. */
function transferBars(name: string): TransferHooks {
  let bar: Progress | undefined;
  let phase = "";
  const show = (label: string, total: number): void => {
    if (phase === label) return;
    bar?.stop();
    phase = label;
    bar = progressBar(`${label} ${name}`, total, "bytes");
  };
  return {
    onHashProgress(done, total) {
      show("hashing", total);
      bar?.update(done);
    },
    onScanProgress(done, total) {
      show("checking", total);
      bar?.update(done);
    },
    onSendStart(total) {
      phase = ""; // every round of missing blocks gets a bar of its own
      show("uploading", total);
    },
    onSendProgress: (done) => bar?.update(done),
    onFetchStart: (total) => show("downloading", total),
    onFetchProgress: (done) => bar?.update(done),
    done: () => bar?.stop(),
  };
}

// ── commands ───────────────────────────────────────────────────────────────

async function upload(client: PithosClient, pool: HashPool, local: string, target: string, options: TransferOptions & { contentType?: string }): Promise<Report> {
  const { container, path } = parseRemote(target);
  const object = path === "" || path.endsWith("/") ? `${path}${basename(local)}` : path;
  const hooks = transferBars(object);
  let result: UploadResult;
  try {
    result = await uploadFile(client, local, container, object, { pool, ...(options.contentType !== undefined && { contentType: options.contentType }), ...(options.parallel !== undefined && { parallel: options.parallel }), ...hooks });
  } finally {
    hooks.done?.();
  }
  return { text: uploadSummary(local, result), json: result };
}

function uploadSummary(local: string, result: UploadResult): string {
  const what = `Uploaded ${local} to ${result.container}/${result.object} (${formatBytes(result.bytes)}, ${plural(result.blocks, "block")})`;
  const hashmap = `${plural(result.hashmapRequests, "hashmap request")} (${formatBytes(result.hashmapBytes)})`;
  const sent =
    result.blocksSent === 0
      ? `every block was already stored: sent only ${hashmap}`
      : `sent ${result.blocksSent} of ${plural(result.blocks, "block")} (${formatBytes(result.bytesSent)}) and ${hashmap}`;
  return `${what}: ${sent}, in ${result.seconds.toFixed(1)} s`;
}

async function download(client: PithosClient, pool: HashPool, source: string, local: string | undefined, options: TransferOptions): Promise<Report> {
  const { container, object } = parseObject(source);
  const path = await downloadPath(object, local);
  const hooks = transferBars(object);
  let result: DownloadResult;
  try {
    result = await downloadObject(client, container, object, path, { pool, parallel: options.parallel ?? downloadParallelDefault, ...hooks });
  } finally {
    hooks.done?.();
  }
  return { text: downloadSummary(result), json: result };
}

/** LOCAL as given, or inside it when it is a directory; by default the object's name here. */
async function downloadPath(object: string, local: string | undefined): Promise<string> {
  const name = basename(object);
  if (local === undefined) return name;
  const found = await stat(local).catch(() => undefined);
  return found?.isDirectory() === true ? join(local, name) : local;
}

function downloadSummary(result: DownloadResult): string {
  const what = `Downloaded ${result.container}/${result.object} to ${result.path} (${formatBytes(result.bytes)}, ${plural(result.blocks, "block")})`;
  const from = result.workingFile === "existing" ? "updated in place" : result.workingFile === "part" ? "resumed" : "new file";
  const kept = result.blocksKept > 0 ? `, kept ${result.blocksKept} already right` : "";
  return `${what}: ${from}, fetched ${result.blocksFetched} (${formatBytes(result.bytesFetched)})${kept}, in ${result.seconds.toFixed(1)} s`;
}

async function sync(client: PithosClient, pool: HashPool, from: string, to: string, options: TransferOptions & { down?: boolean; delete?: boolean; dryRun?: boolean }): Promise<Report> {
  const syncOptions = {
    pool,
    delete: options.delete === true,
    dryRun: options.dryRun === true,
    hooks: transferBars,
    ...(options.parallel !== undefined && { parallel: options.parallel }),
  };
  let result: SyncResult;
  if (options.down === true) {
    const { container, path } = parseRemote(from);
    result = await syncDown(client, container, path, to, syncOptions);
  } else {
    const found = await stat(from).catch((error: unknown) => {
      throw localFileError("read", from, error);
    });
    if (!found.isDirectory()) throw new LocalFileError(`cannot sync ${from}: not a directory (use \`okeanos file upload\` for one file)`);
    const { container, path } = parseRemote(to);
    result = await syncUp(client, from, container, path, syncOptions);
  }
  return { text: syncSummary(result), json: result };
}

function syncSummary(result: SyncResult): string {
  const remote = `${result.container}/${result.prefix}`;
  const [source, target] = result.direction === "up" ? [result.localDir, remote] : [remote, result.localDir];
  const verb = result.dryRun ? "would be " : "";
  const lines = [
    `${result.dryRun ? "Dry run: " : "Synced "}${source} → ${target}: ${result.compared} compared, ${result.unchanged} unchanged, ` +
      `${result.changed.length} ${verb}${result.direction === "up" ? "uploaded" : "downloaded"}, ${result.deleted.length} ${verb}deleted` +
      (result.dryRun ? "" : ` (${formatBytes(result.blockBytes)} of blocks ${result.direction === "up" ? "sent" : "fetched"}, in ${result.seconds.toFixed(1)} s)`),
  ];
  for (const changed of result.changed) lines.push(`  ${result.direction === "up" ? "↑" : "↓"} ${changed.name} (${formatBytes(changed.bytes)})`);
  for (const deleted of result.deleted) lines.push(`  ✗ ${deleted}`);
  for (const skipped of result.skipped) lines.push(`  skipped ${skipped.name}: ${skipped.reason}`);
  return lines.join("\n");
}

async function list(client: PithosClient, target: string | undefined): Promise<Report> {
  if (target === undefined || target === "" || target === "/") {
    const containers = await client.listContainers();
    if (containers.length === 0) return { text: "No containers yet: `okeanos file upload FILE CONTAINER/` creates one", json: [] };
    const rows = containers.map((entry) => [entry.name, entry.count, formatBytes(entry.bytes), entry.last_modified]);
    return { text: table(["CONTAINER", "OBJECTS", "SIZE", "MODIFIED"], rows), json: containers };
  }
  const { container, path } = parseRemote(target);
  const objects: ObjectEntry[] = [];
  for await (const entry of client.listObjects(container, { prefix: path })) if ("name" in entry) objects.push(entry);
  if (objects.length === 0) return { text: `No objects in ${container}${path === "" ? "" : ` under ${path}`}`, json: [] };
  const rows = objects.map((entry) => [entry.name, formatBytes(entry.bytes), entry.last_modified, entry.content_type]);
  return { text: table(["NAME", "SIZE", "MODIFIED", "TYPE"], rows), json: objects };
}

async function info(client: PithosClient, target: string): Promise<Report> {
  const { container, object } = parseObject(target);
  const headers = await client.headObject(container, object);
  const get = (name: string): string => headers.get(name) ?? "-";
  const size = Number(headers.get("content-length") ?? 0);
  const meta = [...headers].filter(([name]) => name.startsWith("x-object-meta-")).map(([name, value]): [string, string] => [`meta ${name.slice("x-object-meta-".length)}`, value]);
  const rows: Array<[string, string]> = [
    ["name", `${container}/${object}`],
    ["size", `${formatBytes(size)} (${size} bytes)`],
    ["content type", get("content-type")],
    ["etag", get("etag")],
    ["object hash", get("x-object-hash")],
    ["version", get("x-object-version")],
    ["modified", get("last-modified")],
    ["modified by", get("x-object-modified-by")],
    ["uuid", get("x-object-uuid")],
    ["sharing", get("x-object-sharing")],
    ["public link", get("x-object-public")],
    ...meta,
  ];
  return { text: fieldTable(rows), json: { container, object, sizeBytes: size, headers: Object.fromEntries(headers) } };
}

/** X-Object-Sharing: `read=u1,u2;write=u3` (synnefo.md B.5); empty: shared with nobody. */
export function sharingHeader(options: { read?: string; write?: string; clear?: boolean }): string {
  const users = (list: string | undefined): string[] => (list ?? "").split(",").map((user) => user.trim()).filter((user) => user !== "");
  const read = users(options.read);
  const write = users(options.write);
  if (options.clear === true) {
    if (read.length > 0 || write.length > 0) throw new UsageError("give --clear, or --read/--write, not both");
    return "";
  }
  if (read.length === 0 && write.length === 0) throw new UsageError("give --read USERS, --write USERS, or --clear");
  return [read.length > 0 ? `read=${read.join(",")}` : "", write.length > 0 ? `write=${write.join(",")}` : ""].filter((part) => part !== "").join(";");
}

async function share(client: PithosClient, target: string, options: { read?: string; write?: string; clear?: boolean }): Promise<Report> {
  const { container, object } = parseObject(target);
  const sharing = sharingHeader(options);
  await client.postObject(container, object, { "x-object-sharing": sharing }, `share ${container}/${object}`);
  const now = (await client.headObject(container, object)).get("x-object-sharing") ?? "";
  return {
    text: now === "" ? `${container}/${object} is shared with nobody` : `${container}/${object} is shared: ${now}`,
    json: { container, object, sharing: now },
  };
}

async function publish(client: PithosClient, target: string, options: { unpublish?: boolean }): Promise<Report> {
  const { container, object } = parseObject(target);
  const published = options.unpublish !== true;
  const reply = await client.postObject(container, object, { "x-object-public": String(published) }, `${published ? "publish" : "unpublish"} ${container}/${object}`);
  if (!published) return { text: `${container}/${object} has no public link any more`, json: { container, object, publicUrl: null } };
  // The POST reply carries the link (synnefo.md B.5); a HEAD has it too, for servers that do not.
  const link = reply.get("x-object-public") ?? (await client.headObject(container, object)).get("x-object-public");
  if (link === null || !/^https?:\/\//.test(link)) throw new RemoteError("EPROTOCOL", `publish ${container}/${object}: the server returned no public link`);
  return { text: link, json: { container, object, publicUrl: link } };
}

async function remove(client: PithosClient, target: string): Promise<Report> {
  const { container, path } = parseRemote(target);
  if (path === "") {
    await client.deleteContainer(container);
    return { text: `Deleted container ${container}`, json: { container, deleted: true } };
  }
  await client.deleteObject(container, path);
  return { text: `Deleted ${container}/${path}`, json: { container, object: path, deleted: true } };
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
