/**
 * `okeanos image create NAME --from-volume VOLUME` and `okeanos image spawn IMAGE VOLUME`:
 * the seed paper's duality from the command line (issue 7). Freezing a volume into an image
 * is: snapshot it (by its serving process if a VM has it open), hash the snapshot (only its
 * private blocks are read; resumable), store the snapshot's map as a Pithos+ file in the
 * owner's `images` container (a copy of the map: no block is copied), register the file as
 * an image. Spawning clones the image's map into a new volume: no block is copied either.
 *
 * Every step can be rerun: the snapshot's name is derived from the volume and the image name,
 * so an interrupted create finds its snapshot and resumes hashing where it stopped.
 */
import { createHash } from "node:crypto";
import type { Command } from "commander";
import { createContainer, DbError, listImages, type MetadataDatabase } from "../../db/index.ts";
import { isEngineError } from "../../engine/errors.ts";
import type { Engine } from "../../engine/engine.ts";
import { imagesContainerName, isPlanktonError, registerFileAsImage, resolveImage } from "../../gateways/plankton/index.ts";
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

/** The snapshot an image create works through: stable across reruns, a valid map name. */
export function freezeSnapshotName(volume: string, imageName: string): string {
  return `image-${createHash("sha256").update(`${volume}\0${imageName}`).digest("hex").slice(0, 24)}`;
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

async function createImage(global: GlobalOptions, database: string, name: string, options: CreateOptions): Promise<Report> {
  const properties = parseProperties(options.property);
  return withDatabase(database, (db) =>
    withEngine(global, async (engine) => {
      const owner = await findUser(db, options.owner);
      const snapshot = freezeSnapshotName(options.fromVolume, name);
      const resumed = await existingFrozen(engine, snapshot);
      if (!resumed) await snapshotVolume(engine, options.fromVolume, snapshot);
      const hashed = await hashWithProgress(engine, snapshot);
      const service = new PithosService({ engine, db });
      const { container } = await createContainer(db, owner.uuid, imagesContainerName);
      const blockSize = engine.blockSizeBytes;
      const stored = await service.putFromMap(container, name, snapshot, { contentType: "application/octet-stream", meta: { "Source-Volume": options.fromVolume } }, {
        modifiedBy: owner.uuid,
        // Only the blocks hashing stored anew are new on disk; the rest are shared.
        chargeBytes: Math.min(hashed.storedBlocks * blockSize, hashed.header.sizeBytes),
      });
      const registered = await registerFileAsImage(service, db, {
        account: owner.uuid,
        container: imagesContainerName,
        path: name,
        name,
        properties,
        ...(options.public === true && { isPublic: true }),
      }).catch(asCliError);
      // The file holds its own copy of the map; the snapshot was only the way there.
      await engine.delete(snapshot);
      const rows: Array<[string, string | number]> = [
        ["image id", registered.image.uuid],
        ["file", `${imagesContainerName}/${name}`],
        ["size", formatBytes(stored.version.sizeBytes)],
        ["blocks", hashed.totalBlocks],
        ["newly stored", hashed.storedBlocks],
        ["content hash", stored.version.contentHash],
      ];
      return {
        text: `Image ${name} created from ${options.fromVolume}${resumed ? " (resumed)" : ""}\n${fieldTable(rows)}`,
        json: { image: registered.image, file: { container: imagesContainerName, path: name }, hash: hashed, resumed },
      };
    }),
  );
}

async function existingFrozen(engine: Engine, name: string): Promise<boolean> {
  try {
    const header = await engine.maps.loadHeader((await engine.maps.lookup(name)).mapId);
    if (!header.frozen) throw new UsageError(`${name} exists and is a writable volume: delete or rename it first`);
    return true;
  } catch (error) {
    if (isEngineError(error, "ENOT_FOUND")) return false;
    throw error;
  }
}

async function hashWithProgress(engine: Engine, snapshot: string): Promise<Awaited<ReturnType<Engine["hash"]>>> {
  let progress: ReturnType<typeof progressBar> | undefined;
  try {
    return await engine.hash(snapshot, (step) => {
      progress ??= progressBar("hashing", step.totalBlocks, "blocks");
      progress.update(step.doneBlocks);
    });
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

