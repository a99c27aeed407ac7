/**
 * `okeanos image create NAME --from-volume VOLUME` and `okeanos image spawn IMAGE VOLUME`:
 * the seed paper's duality from the command line (issue 7). Freezing a volume into an image
 * is gateways/plankton/freeze.ts, as compute's createImage does it: a `queued` image with an
 * empty file `images/<id>`, a snapshot (by its serving process if a VM has it open), hashing
 * (only its private blocks are read; resumable), the snapshot's map stored as the file's new
 * version (a copy of the map: no block is copied), `active`. Spawning clones the image's map
 * into a new volume: no block is copied either.
 *
 * Every step can be rerun: an interrupted create leaves its image `saving` (with the property
 * `source_volume`), which the same command finds and finishes, resuming hashing where it
 * stopped.
 */
import type { Command } from "commander";
import { DbError, ensureResources, listImages, standardResources, type MetadataDatabase } from "../../db/index.ts";
import type { Engine } from "../../engine/engine.ts";
import {
  beginFreeze,
  completeFreeze,
  failFreeze,
  imagesContainerName,
  isPlanktonError,
  PlanktonService,
  resolveImage,
  withVisibility,
  type CompleteFreezeOptions,
  type FreezeResult,
} from "../../gateways/plankton/index.ts";
import { PithosService } from "../../gateways/pithos/index.ts";
import { examples, report, withEngine, type GlobalOptions } from "../context.ts";
import { formatBytes, parseSize } from "../units.ts";
import { fieldTable, progressBar, table, UsageError, type Report } from "../output.ts";
import { databaseOption, databaseUrl, withDatabase } from "./database.ts";
import { findUser } from "./user.ts";
import { snapshotVolume } from "./volume.ts";

interface CreateOptions {
  fromVolume: string;
  owner: string;
  public?: boolean;
  property: string[];
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerImageCommands(program: Command): void {
  const image = program.command("image").description("images: frozen volumes that are Pithos+ files, spawned into volumes without copying data");

  image
    .command("create <name>")
    .description("freeze a volume into an image: snapshot, hash, store as a file in the owner's `images` container, register (no data copied; resumable)")
    .requiredOption("--from-volume <volume>", "the volume to freeze (it may be in use: a serving process takes the snapshot between requests)")
    .requiredOption("--owner <user>", "the user (name or uuid) who owns the image and whose quota pays for its new blocks")
    .option("--public", "visible to every user")
    .option("--property <key=value>", "an image property (e.g. OSFAMILY=linux); repeatable", collect, [])
    .addOption(databaseOption())
    .addHelpText("after", examples("okeanos image create debian-12-web --from-volume vm1 --owner alice --property OSFAMILY=linux"))
    .action((name: string, options: CreateOptions, command: Command) => report(command, (global) => createImage(global, databaseUrl(command), name, options)));

  image
    .command("spawn <image> <volume>")
    .description("a new volume cloned from an image (`okeanos volume create VOLUME --from-image IMAGE`): no data copied")
    .requiredOption("--owner <user>", "the user (name or uuid) on whose behalf the image is looked up (own, shared or public images)")
    .option("--size <size>", "size of the volume, at least the image's (default: the image's)")
    .addOption(databaseOption())
    .addHelpText("after", examples("okeanos image spawn debian-12-web vm2 --owner alice"))
    .action((imageRef: string, volume: string, options: { owner: string; size?: string }, command: Command) =>
      report(command, (global) => spawnFromImage(global, databaseUrl(command), imageRef, volume, options.owner, options.size)),
    );

  image
    .command("list")
    .description("images a user sees: their own, shared with them, public")
    .requiredOption("--owner <user>", "the user (name or uuid) whose view to list")
    .addOption(databaseOption())
    .action((options: { owner: string }, command: Command) =>
      report(command, async () =>
        withDatabase(databaseUrl(command), async (db) => {
          const user = await findUser(db, options.owner);
          const { images } = await listImages(db, user.uuid, { limit: 1000 });
          const rows = images.map(({ image, file }) => [image.uuid, image.name ?? "", image.status, formatBytes(file.version.sizeBytes), image.owner === user.uuid ? "own" : "shared"]);
          return { text: table(["ID", "NAME", "STATUS", "SIZE", "WHOSE"], rows), json: images.map(({ image, file }) => ({ ...image, sizeBytes: file.version.sizeBytes })) };
        }),
      ),
    );
}

function parseProperties(pairs: readonly string[]): Record<string, string> {
  const properties: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf("=");
    if (equals <= 0) throw new UsageError(`--property ${JSON.stringify(pair)}: use KEY=VALUE`);
    properties[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return properties;
}

/** Plankton's refusals as the CLI's: a missing or ambiguous image is the database's code. */
function asCliError(error: unknown): never {
  if (isPlanktonError(error)) {
    if (error.code === "ENOT_FOUND") throw new DbError("ENOT_FOUND", error.message);
    if (error.code === "ECONFLICT") throw new DbError("ECONFLICT", error.message);
    throw new UsageError(error.message);
  }
  throw error;
}

/** The property that ties an image being frozen to its volume, so that a rerun resumes it. */
const sourceVolumeProperty = "source_volume";

async function createImage(global: GlobalOptions, database: string, name: string, options: CreateOptions): Promise<Report> {
  const properties = { ...parseProperties(options.property), [sourceVolumeProperty]: options.fromVolume };
  return withDatabase(database, (db) =>
    withEngine(global, async (engine) => {
      const owner = await findUser(db, options.owner);
      // The owner's disk space quota pays for the new blocks: its resource must exist even in
      // a database `okeanos serve` has not opened yet (as `okeanos quota` does).
      await ensureResources(db, standardResources);
      const plankton = new PlanktonService({ pithos: new PithosService({ engine, db }) });
      const { images } = await listImages(db, owner.uuid, { name, owner: owner.uuid, limit: 1000 });
      // Names find images (`image spawn NAME`): a second one of the same name would make both unreachable by name.
      const done = images.find(({ image }) => image.status === "active");
      if (done !== undefined) throw new DbError("ECONFLICT", `${name} is already an image (${done.image.uuid}): choose another name`);
      const unfinished = images.find(({ image }) => (image.status === "queued" || image.status === "saving") && image.properties[sourceVolumeProperty] === options.fromVolume);
      // A missing volume is the engine's error, before an image is made for it.
      await engine.info(options.fromVolume);
      const imageId = unfinished?.image.uuid ?? (await beginFreeze(plankton, { owner: owner.uuid, name, properties }).catch(asCliError)).imageId;
      if (options.public === true) {
        const entry = await plankton.refresh(imageId);
        await plankton.share(entry, withVisibility(entry.file.object.sharing, "public"));
      }
      const frozen = await freezeWithProgress(plankton, engine, {
        imageId,
        owner: owner.uuid,
        volume: options.fromVolume,
        snapshot: async (snapshot) => {
          await snapshotVolume(engine, options.fromVolume, snapshot);
        },
      });
      const { image, file } = frozen.image;
      const rows: Array<[string, string | number]> = [
        ["image id", image.uuid],
        ["file", `${imagesContainerName}/${file.path}`],
        ["size", formatBytes(file.version.sizeBytes)],
        ["blocks", frozen.totalBlocks],
        ["newly stored", frozen.storedBlocks],
        ["content hash", file.version.contentHash],
      ];
      const resumed = unfinished !== undefined || frozen.resumed;
      return {
        text: `Image ${name} created from ${options.fromVolume}${resumed ? " (resumed)" : ""}\n${fieldTable(rows)}`,
        json: {
          image,
          file: { container: imagesContainerName, path: file.path },
          hash: { totalBlocks: frozen.totalBlocks, storedBlocks: frozen.storedBlocks },
          resumed,
        },
      };
    }),
  );
}

/**
 * completeFreeze with a progress bar. A failure before the snapshot exists leaves nothing to
 * resume: the image is deleted (failFreeze). Later, it stays `saving` for a rerun to finish.
 */
async function freezeWithProgress(plankton: PlanktonService, engine: Engine, options: Omit<CompleteFreezeOptions, "onProgress">): Promise<FreezeResult> {
  let progress: ReturnType<typeof progressBar> | undefined;
  let snapshotted = false;
  try {
    return await completeFreeze(plankton, engine, {
      ...options,
      snapshot: async (snapshot) => {
        await options.snapshot(snapshot);
        snapshotted = true;
      },
      onProgress: (doneBlocks, totalBlocks) => {
        snapshotted = true;
        progress ??= progressBar("hashing", totalBlocks, "blocks");
        progress.update(doneBlocks);
      },
    });
  } catch (error) {
    if (!snapshotted) await failFreeze(plankton, options.imageId);
    return asCliError(error);
  } finally {
    progress?.stop();
  }
}

export async function spawnFromImage(global: GlobalOptions, database: string, imageRef: string, volume: string, ownerRef: string, size: string | number | undefined): Promise<Report> {
  return withDatabase(database, async (db: MetadataDatabase) => {
    const owner = await findUser(db, ownerRef);
    const resolved = await resolveImage(db, imageRef, owner.uuid).catch(asCliError);
    const sizeBytes = typeof size === "string" ? parseSize(size) : size;
    return withEngine(global, async (engine) => {
      const header = await engine.clone(resolved.mapName, volume, sizeBytes === undefined ? {} : { sizeBytes });
      return {
        text: `Spawned ${volume} from image ${resolved.image.name} (${resolved.image.uuid}; ${formatBytes(header.sizeBytes)}; no data copied)`,
        json: { volume: header, image: resolved.image },
      };
    });
  });
}

