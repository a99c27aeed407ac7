/**
 * `okeanos volume …`: create, list, inspect, resize, snapshot, clone, hash, diff, delete, unlock.
 * Import and export (the commands that move bytes) are in transfer.ts.
 *
 * snapshot and resize of a volume that `okeanos nbd serve` holds open on this host are done
 * by that process, through its control socket (docs/nbd.md, "Control socket"): the engine
 * refuses us the volume's lock and names the holder's host and pid, and we ask that pid.
 */
import { hostname } from "node:os";
import type { Command } from "commander";
import type { LockHolder } from "../../engine/blocker/object-store.ts";
import type { Engine } from "../../engine/engine.ts";
import { EngineError, isEngineError } from "../../engine/errors.ts";
import type { DirectoryEntry, MapHeader } from "../../engine/mapper/headers.ts";
import { callServingProcess, controlUnreachable } from "../../engine/nbd/control-client.ts";
import { isEngineCode, type ControlRequest, type ControlResults } from "../../engine/nbd/control-wire.ts";
import { examples, report, sizeArgument, withEngine, type GlobalOptions } from "../context.ts";
import { fieldTable, progressBar, table, UsageError, type Report } from "../output.ts";
import { formatBytes } from "../units.ts";
import { registerTransferCommands } from "./transfer.ts";
import { databaseOption, databaseUrl } from "./database.ts";

export function registerVolumeCommands(program: Command): void {
  const volume = program.command("volume").description("volumes, snapshots and clones");

  volume
    .command("create <name>")
    .description("create an empty (all-zero) volume, nothing stored until it is written; or, --from-image, a clone of an image (no data copied)")
    .option("--size <size>", "size in bytes or with K, M, G, T (powers of 1024); with --from-image at least the image's", sizeArgument)
    .option("--from-image <image>", "clone this image (id or name, as --owner sees it)")
    .option("--owner <user>", "with --from-image: the user (name or uuid) whose images are looked up")
    .addOption(databaseOption())
    .addHelpText("after", examples("okeanos volume create vm1 --size 10G", "okeanos volume create vm2 --from-image debian-12-web --owner alice"))
    .action((name: string, options: { size?: number; fromImage?: string; owner?: string }, command: Command) =>
      report(command, async (global) => {
        if (options.fromImage !== undefined) {
          if (options.owner === undefined) throw new UsageError("--from-image needs --owner: images are looked up as a user sees them");
          // image.ts brings the database and Pithos+ layers: loaded only for this form.
          const { spawnFromImage } = await import("./image.ts");
          return spawnFromImage(global, databaseUrl(command), options.fromImage, name, options.owner, options.size);
        }
        if (options.size === undefined) throw new UsageError("--size is required (or --from-image)");
        const size = options.size;
        return withEngine(global, async (engine) => created(await engine.createVolume(name, size)));
      }),
    );

  volume
    .command("list")
    .description("every volume, snapshot and image in the store")
    .addHelpText("after", examples("okeanos volume list", "okeanos volume list --json | jq -r '.[].name'"))
    .action((_options: unknown, command: Command) => report(command, list));

  volume
    .command("info <name>")
    .description("size, blocks by kind, lineage, content hash and lock holder of a volume or snapshot")
    .addHelpText("after", examples("okeanos volume info vm1"))
    .action((name: string, _options: unknown, command: Command) => report(command, (global) => info(global, name)));

  volume
    .command("resize <name>")
    .description("grow a volume (shrinking is refused: it would drop data); a served volume is grown by its serving process")
    .requiredOption("--size <size>", "new size, at least the current one", sizeArgument)
    .addHelpText("after", examples("okeanos volume resize vm1 --size 20G"))
    .action((name: string, options: { size: number }, command: Command) => report(command, (global) => resize(global, name, options.size)));

  volume
    .command("snapshot <volume> <snapshot>")
    .description(
      "freeze the volume's current content as a read-only snapshot (no data is copied); " +
        "a volume served by `okeanos nbd serve` on this host is snapshotted by that process, between requests",
    )
    .addHelpText("after", examples("okeanos volume snapshot vm1 vm1-monday"))
    .action((name: string, snapshotName: string, _options: unknown, command: Command) => report(command, (global) => snapshot(global, name, snapshotName)));

  volume
    .command("clone <snapshot> <name>")
    .description("a new writable volume sharing every block of a snapshot or image (no data is copied)")
    .option("--size <size>", "size of the clone, at least the snapshot's (default: the snapshot's)", sizeArgument)
    .addHelpText("after", examples("okeanos volume clone vm1-monday vm2", "okeanos volume clone debian-12 vm3 --size 20G"))
    .action((snapshot: string, name: string, options: { size?: number }, command: Command) =>
      report(command, (global) =>
        withEngine(global, async (engine) => {
          const header = await engine.clone(snapshot, name, options.size === undefined ? {} : { sizeBytes: options.size });
          return { text: `Cloned ${snapshot} into ${name} (${formatBytes(header.sizeBytes)}; no data copied)`, json: header };
        }),
      ),
    );

  volume
    .command("hash <snapshot>")
    .description("publish a snapshot: store its blocks content-addressed (deduplicated) and compute its object hash")
    .addHelpText("after", examples("okeanos volume hash vm1-monday"))
    .action((name: string, _options: unknown, command: Command) => report(command, (global) => hash(global, name)));

  volume
    .command("diff <a> <b>")
    .description("byte ranges that differ between two maps, from the maps alone (no data is read)")
    .addHelpText("after", examples("okeanos volume diff vm1-monday vm1-tuesday", "okeanos volume diff vm1-monday vm1 --json"))
    .action((a: string, b: string, _options: unknown, command: Command) => report(command, (global) => diff(global, a, b)));

  volume
    .command("delete <name>")
    .description("remove a volume, snapshot or image; `okeanos gc` frees the blocks no other map uses")
    .addHelpText("after", examples("okeanos volume delete vm2 && okeanos gc --grace 0"))
    .action((name: string, _options: unknown, command: Command) =>
      report(command, (global) =>
        withEngine(global, async (engine) => {
          await engine.delete(name);
          return { text: `Deleted ${name}; \`okeanos gc\` frees blocks no other map uses`, json: { name, deleted: true } };
        }),
      ),
    );

  volume
    .command("unlock <name>")
    .description(
      "break the writer lock of a volume whose holder died or hangs (rados stores: its lease would keep the volume until it runs out); " +
        "the holder is fenced first, so it can never write again",
    )
    .option("--force", "break it: if the holder is still alive, its writes fail from now on and what it had not flushed is lost")
    .addHelpText("after", examples("okeanos volume info vm1            # who holds the lock", "okeanos --store rados:okeanos volume unlock vm1 --force"))
    .action((name: string, options: { force?: boolean }, command: Command) => report(command, (global) => unlock(global, name, options.force === true)));

  registerTransferCommands(volume);
}

function created(header: MapHeader): Report {
  const blocks = Math.ceil(header.sizeBytes / header.blockSizeBytes);
  return {
    text: `Created volume ${header.name} (${formatBytes(header.sizeBytes)}, ${blocks} blocks of ${formatBytes(header.blockSizeBytes)})`,
    json: header,
  };
}

async function list(global: GlobalOptions): Promise<Report> {
  const headers = await withEngine(global, async (engine) => {
    const named = await engine.list();
    return Promise.all(named.map((entry) => engine.maps.loadHeader(entry.mapId)));
  });
  if (headers.length === 0) return { text: "No volumes yet: `okeanos volume create NAME --size 10G` makes one", json: [] };
  const names = new Map(headers.map((header) => [header.mapId, header.name]));
  const rows = headers.map((header) => [
    header.name,
    header.kind,
    formatBytes(header.sizeBytes),
    parentLabel(header, names),
    header.contentHash === null ? "-" : "yes",
    formatTime(header.createdAtMs),
  ]);
  return { text: table(["NAME", "KIND", "SIZE", "PARENT", "HASHED", "CREATED"], rows), json: headers };
}

async function info(global: GlobalOptions, name: string): Promise<Report> {
  const { mapInfo, named } = await withEngine(global, async (engine) => ({ mapInfo: await engine.info(name), named: await engine.list() }));
  const { header, lockHolder } = mapInfo;
  const parentName = named.find((entry: DirectoryEntry) => entry.mapId === header.parentMapId)?.name ?? null;
  const rows: Array<[string, string | number]> = [
    ["name", header.name],
    ["kind", `${header.kind}${header.frozen ? " (frozen, read-only)" : ""}`],
    ["size", `${formatBytes(header.sizeBytes)} (${header.sizeBytes} bytes)`],
    ["block size", formatBytes(header.blockSizeBytes)],
    ["blocks", mapInfo.blocks],
    ["zero blocks", mapInfo.zeroBlocks],
    ["content blocks", `${mapInfo.contentBlocks} (content-addressed, shareable)`],
    ["private blocks", mapInfo.privateBlocks],
    ["parent", header.parentMapId === null ? "-" : (parentName ?? `${header.parentMapId} (deleted)`)],
    ["created", formatTime(header.createdAtMs)],
    ["content hash", header.contentHash ?? (header.frozen ? "- (not hashed yet: okeanos volume hash)" : "-")],
    ["epoch", header.epoch],
    ["map id", header.mapId],
    ["volume id", header.volumeId],
    ["locked by", lockHolder === undefined ? "-" : `${lockHolder.owner} (pid ${lockHolder.pid} on ${lockHolder.host})`],
  ];
  return { text: fieldTable(rows), json: { ...mapInfo, parentName } };
}

async function snapshot(global: GlobalOptions, name: string, snapshotName: string): Promise<Report> {
  let header: MapHeader;
  let servedBy: number | undefined;
  try {
    header = await withEngine(global, (engine) => engine.snapshot(name, snapshotName));
  } catch (error) {
    ({ pid: servedBy, result: header } = await viaServingProcess(error, { op: "snapshot", volume: name, snapshot: snapshotName }));
  }
  const by = servedBy === undefined ? "" : ` by the serving process ${servedBy}`;
  return { text: `Snapshot ${snapshotName} of ${name} taken${by} (${formatBytes(header.sizeBytes)}; no data copied)`, json: header };
}

async function resize(global: GlobalOptions, name: string, sizeBytes: number): Promise<Report> {
  let previousSizeBytes: number;
  let servedBy: number | undefined;
  try {
    previousSizeBytes = await withEngine(global, async (engine) => {
      const before = await engine.maps.loadHeader((await engine.maps.lookup(name)).mapId);
      await engine.resize(name, sizeBytes);
      return before.sizeBytes;
    });
  } catch (error) {
    const served = await viaServingProcess(error, { op: "resize", volume: name, sizeBytes });
    ({ pid: servedBy, result: { previousSizeBytes } } = served);
  }
  const by = servedBy === undefined ? "" : ` by the serving process ${servedBy} (connected clients see the new size when they reconnect)`;
  const text =
    previousSizeBytes === sizeBytes
      ? `${name} is already ${formatBytes(sizeBytes)}`
      : `Resized ${name} from ${formatBytes(previousSizeBytes)} to ${formatBytes(sizeBytes)}${by}`;
  return { text, json: { name, previousSizeBytes, sizeBytes } };
}

/**
 * `error` is the engine refusing us a volume. When the refusal is EVOLUME_LOCKED and the
 * holder is a process on this host, asks that process (an `okeanos nbd serve`) to do the
 * operation on the volume it has open; its refusal (EEXISTS…) is thrown as if ours. When the
 * holder is elsewhere, or has no control socket (another okeanos command, an older server),
 * the original lock error stands.
 */
async function viaServingProcess<Op extends "snapshot" | "resize">(
  error: unknown,
  request: ControlRequest & { op: Op },
): Promise<{ pid: number; result: ControlResults[Op] }> {
  const pid = localLockHolder(error);
  if (pid === undefined) throw error;
  const response = await callServingProcess<Op>(pid, request);
  if (response === controlUnreachable) throw error;
  if (!response.ok) {
    if (isEngineCode(response.code)) throw new EngineError(response.code, response.message, { servedBy: pid });
    throw new Error(`the serving process ${pid} refused ${request.op}: ${response.message} (${response.code})`);
  }
  return { pid, result: (response as unknown as Record<Op, ControlResults[Op]>)[request.op] };
}

/** The pid of the process on this host that holds the volume's lock, from an EVOLUME_LOCKED refusal. */
function localLockHolder(error: unknown): number | undefined {
  if (!isEngineError(error, "EVOLUME_LOCKED")) return undefined;
  const holder = error.details["holder"] as Partial<LockHolder> | undefined;
  if (holder?.host !== hostname() || typeof holder.pid !== "number" || holder.pid === process.pid) return undefined;
  return holder.pid;
}

/**
 * `volume unlock NAME --force`: the store's breakLock, which fences the holder before the
 * lock goes. Stores whose locks end with their process (file: flock) have no breakLock.
 */
async function unlock(global: GlobalOptions, name: string, force: boolean): Promise<Report> {
  return withEngine(global, async (engine) => {
    const lockName = engine.maps.lockObject((await engine.maps.lookup(name)).mapId);
    const objects = engine.objects;
    const holder = await objects.lockHolder(lockName);
    if (objects.breakLock === undefined) {
      const state = holder === undefined ? `${name} is not locked` : `${name} is held by ${describeHolder(holder)}: stop that process (SIGTERM: it flushes and unlocks)`;
      throw new EngineError(
        "EINVALID",
        `${objects.uri} has no lock to break: its locks are flock(2) locks, which the kernel drops when their holder exits; ${state}`,
        holder === undefined ? {} : { holder },
      );
    }
    if (!force) {
      if (holder === undefined) return { text: `${name} is not locked`, json: { name, holder: null, broken: false } };
      throw new UsageError(
        `${name} is locked by ${describeHolder(holder)}; breaking the lock fences that client (its writes fail from then on, ` +
          "what it had not flushed is lost): repeat with --force if it is dead or hung",
      );
    }
    if (holder !== undefined) {
      process.stderr.write(
        `okeanos: warning: breaking the lock on ${name} held by ${describeHolder(holder)}. Its client is fenced (blocklisted) first: ` +
          "every write it still sends fails, and whatever it had not flushed is lost.\n",
      );
    }
    const broken = await objects.breakLock(lockName);
    if (broken === undefined) return { text: `${name} is not locked`, json: { name, holder: null, broken: false } };
    return {
      text: `Unlocked ${name}: the lock of ${describeHolder(broken)} is broken and that client is fenced`,
      json: { name, holder: broken, broken: true },
    };
  });
}

function describeHolder(holder: LockHolder): string {
  return `${holder.owner} (pid ${holder.pid} on ${holder.host}, since ${formatTime(holder.acquiredAtMs)})`;
}

async function hash(global: GlobalOptions, name: string): Promise<Report> {
  return withEngine(global, async (engine) => {
    let doneAtStart: number | undefined;
    let progress: ReturnType<typeof progressBar> | undefined;
    try {
      const result = await engine.hash(name, (step) => {
        if (doneAtStart === undefined) {
          doneAtStart = step.doneBlocks;
          progress = progressBar(`hashing ${name}`, step.totalBlocks, "blocks");
        }
        progress?.update(step.doneBlocks);
      });
      const hashedNow = result.totalBlocks - (doneAtStart ?? result.doneBlocks);
      const rows: Array<[string, string | number]> = [
        ["blocks", result.totalBlocks],
        ["hashed now", hashedNow],
        ["newly stored", result.storedBlocks],
        ["deduplicated", hashedNow - result.storedBlocks],
        ["content hash", result.header.contentHash ?? "-"],
      ];
      return { text: `Hashed ${name}\n${fieldTable(rows)}`, json: { ...result, hashedBlocks: hashedNow } };
    } finally {
      progress?.stop();
    }
  });
}

async function diff(global: GlobalOptions, a: string, b: string): Promise<Report> {
  const result = await withEngine(global, (engine) => engine.diff(a, b));
  const changedBytes = result.ranges.reduce((sum, range) => sum + range.lengthBytes, 0);
  if (result.ranges.length === 0) return { text: `${a} and ${b} have the same blocks (0 of ${result.totalBlocks} differ)`, json: result };
  const summary =
    `${result.changedBlocks} of ${result.totalBlocks} blocks differ (${formatBytes(changedBytes)}) ` +
    `in ${result.ranges.length} range${result.ranges.length === 1 ? "" : "s"}`;
  const rows = result.ranges.map((range) => [range.offsetBytes, range.lengthBytes, formatBytes(range.offsetBytes), formatBytes(range.lengthBytes)]);
  return { text: `${summary}\n${table(["OFFSET", "LENGTH", "AT", "SIZE"], rows)}`, json: result };
}

function parentLabel(header: MapHeader, names: ReadonlyMap<string, string>): string {
  if (header.parentMapId === null) return "-";
  return names.get(header.parentMapId) ?? "(deleted)";
}

/** Local time, to the second: `2025-01-31 14:05:09`. */
export function formatTime(ms: number): string {
  const date = new Date(ms);
  const pad = (value: number): string => String(value).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/**
 * Snapshots `name` with an engine the caller already has open, or — when a serving process on
 * this host holds the volume — through that process (between requests, after a flush).
 */
export async function snapshotVolume(engine: Engine, name: string, snapshotName: string): Promise<MapHeader> {
  try {
    return await engine.snapshot(name, snapshotName);
  } catch (error) {
    return (await viaServingProcess(error, { op: "snapshot", volume: name, snapshot: snapshotName })).result;
  }
}
