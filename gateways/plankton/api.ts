/**
 * The TypeScript face of Plankton for the rest of okeanos (no HTTP):
 *
 *   registerFileAsImage   a Pithos+ file becomes an image: one row, no data moved
 *                         (`okeanos image create --from-volume` after storing the frozen map,
 *                         and Plankton v1's POST /images)
 *   resolveImage          an image id or name → the file's current version: the map to clone
 *                         (`okeanos volume create --from-image`, compute)
 */
import {
  getContainer,
  getCurrent,
  getImage,
  isDbError,
  listImages,
  registerImage,
  setSharing,
  updateImage,
  type ImageFields,
  type ImageWithFile,
  type LocatedObject,
  type MetadataDatabase,
  type PlanktonImage,
} from "../../db/index.ts";
import type { PithosService } from "../pithos/index.ts";
import { imageNotFound, PlanktonError, toPlanktonError } from "./errors.ts";
import { checksumOf, isPlainFile, isUuid } from "./service.ts";
import { visibilityOf, withVisibility } from "./sharing.ts";

export interface RegisterFileOptions {
  /** The file's account (a user uuid): the image's owner. */
  account: string;
  container: string;
  path: string;
  name: string;
  /** `raw` unless given (what `--from-volume` stores). */
  diskFormat?: string;
  /** `bare` unless given. */
  containerFormat?: string;
  properties?: Record<string, string>;
  /** true: `*` joins the file's read sharing; false: `*` leaves it; undefined: sharing unchanged. */
  isPublic?: boolean;
  /** Other fields (min_disk, tags…), as Glance names them in db terms. */
  fields?: Omit<ImageFields, "name" | "diskFormat" | "containerFormat" | "properties">;
  /** Plankton v1's re-register: an image already on the file gets these fields instead of 409. */
  replaceExisting?: boolean;
  /** Refuse (400) unless the file has this size / this checksum (its MD5 or its Pithos hash). */
  expectSizeBytes?: number;
  expectChecksum?: string;
}

/**
 * Registers the file's current version as an image, owned by the file's account. 404 without
 * the file, 400 for a large-object manifest (an image is one map) or a size/checksum that
 * does not match, 409 when the file is already an image (unless `replaceExisting`).
 * Registration writes one row (and the sharing when `isPublic` is given): no block, no map.
 */
export async function registerFileAsImage(_service: PithosService, db: MetadataDatabase, options: RegisterFileOptions): Promise<ImageWithFile> {
  return register(db, options).catch(asPlanktonError);
}

async function register(db: MetadataDatabase, options: RegisterFileOptions): Promise<ImageWithFile> {
  const container = await getContainer(db, options.account, options.container).catch(rethrowInvalid);
  const current = container && (await getCurrent(db, container.id, options.path).catch(rethrowInvalid));
  if (current === undefined) throw new PlanktonError("ENOT_FOUND", `No file at ${options.container}/${options.path}.`);
  const { object, version } = current;
  if (!isPlainFile(version)) throw new PlanktonError("EBAD_REQUEST", "A large-object manifest cannot be an image: it is not one file.");
  if (options.expectSizeBytes !== undefined && options.expectSizeBytes !== version.sizeBytes) {
    throw new PlanktonError("EBAD_REQUEST", `Invalid size: the file has ${version.sizeBytes} bytes, not ${options.expectSizeBytes}.`);
  }
  const checksum = checksumOf(version);
  if (options.expectChecksum !== undefined && ![checksum, version.contentHash].includes(options.expectChecksum.toLowerCase())) {
    throw new PlanktonError("EBAD_REQUEST", "Invalid checksum: it is neither the file's MD5 nor its hash.");
  }
  const fields: ImageFields = {
    ...options.fields,
    name: options.name,
    diskFormat: options.diskFormat ?? "raw",
    containerFormat: options.containerFormat ?? "bare",
    properties: options.properties ?? {},
    status: "active",
    checksum,
  };
  try {
    await registerImage(db, { ...fields, uuid: object.uuid, owner: options.account });
  } catch (error) {
    if (isDbError(error, "EEXISTS") && options.replaceExisting !== true) {
      throw new PlanktonError("ECONFLICT", `The file at ${options.container}/${options.path} is already an image.`, { cause: error });
    }
    if (!isDbError(error, "EEXISTS")) throw error;
    await updateImage(db, object.uuid, fields);
  }
  if (options.isPublic !== undefined && (visibilityOf(object.sharing) === "public") !== options.isPublic) {
    await setSharing(db, object.id, withVisibility(object.sharing, options.isPublic ? "public" : "shared"));
  }
  const registered = await getImage(db, object.uuid);
  if (registered === undefined) throw new PlanktonError("ENOT_FOUND", `The file at ${options.container}/${options.path} is gone.`);
  return registered;
}

export interface ResolvedImage {
  image: PlanktonImage;
  file: LocatedObject;
  /** The engine map holding the image's data: clone it for a volume. */
  mapName: string;
  sizeBytes: number;
}

/**
 * The active image `idOrName` names, as `callerUuid` sees it: by id first, else by name
 * (404 for none, 409 when several images the caller sees share that name — give the id).
 */
export async function resolveImage(db: MetadataDatabase, idOrName: string, callerUuid: string): Promise<ResolvedImage> {
  return resolve(db, idOrName, callerUuid).catch(asPlanktonError);
}

async function resolve(db: MetadataDatabase, idOrName: string, callerUuid: string): Promise<ResolvedImage> {
  let found: ImageWithFile | undefined;
  if (isUuid(idOrName)) found = await getImage(db, idOrName, { viewer: callerUuid });
  if (found === undefined) {
    const { images } = await listImages(db, callerUuid, { name: idOrName, limit: 2 });
    if (images.length > 1) throw new PlanktonError("ECONFLICT", `Several images are named ${JSON.stringify(idOrName)}; use an id.`);
    found = images[0];
  }
  if (found === undefined) throw imageNotFound(idOrName);
  const { image, file } = found;
  if (image.status !== "active") throw new PlanktonError("ECONFLICT", `Image ${image.uuid} is ${image.status}, not active.`);
  if (!isPlainFile(file.version)) throw new PlanktonError("ECONFLICT", `Image ${image.uuid}'s file is a large-object manifest.`);
  return { image, file, mapName: file.version.mapName, sizeBytes: file.version.sizeBytes };
}

/** Callers get PlanktonErrors only (a database refusal becomes its Glance status). */
function asPlanktonError(error: unknown): never {
  throw isDbError(error) ? toPlanktonError(error) : error;
}

/** A malformed account uuid or name reads as "no such file" to a caller naming one. */
function rethrowInvalid(error: unknown): undefined {
  if (isDbError(error, "EINVALID")) return undefined;
  throw error;
}
