/**
 * Images over Pithos+ files, apart from HTTP: what the Glance v2 and Plankton v1 routes share.
 * An image IS a file (a frozen engine map); its id is the file's object uuid; its metadata is
 * a plankton_images row beside the file; sharing the image is sharing the file (sharing.ts).
 *
 *   create    empty file images/<id> + its `queued` image, one transaction (no data moved)
 *   upload    queued ─► saving ─► blocks stored as a new version of the file ─► active
 *             (qcow2 converted to raw first; a failure puts the image back to queued)
 *   register  an existing file becomes an image: a row, nothing else (no block written)
 *   delete    the row; the file too when Plankton created it
 *
 * Who may do what: anyone who sees an image (owner, public, member) reads it; only its owner
 * changes or deletes it (403 for others, 404 for those who do not see it, as Glance).
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import {
  createContainer,
  createImageWithFile,
  deleteImage,
  getContainer,
  getContainerById,
  getImage,
  setSharing,
  updateImage,
  type ImageFields,
  type ImageWithFile,
  type MetadataDatabase,
  type PithosContainer,
  type PithosSharing,
  type PithosVersion,
} from "../../db/index.ts";
import type { PithosService } from "../pithos/index.ts";
import { newFileMapName } from "../pithos/service.ts";
import { checkQcow2, imageSizeBytesMax, qcow2ToRaw, receiveToFile } from "./convert.ts";
import { imageNotFound, PlanktonError } from "./errors.ts";

/** Where Plankton stores the data it receives: `<account>/images/<image id>`. */
export const imagesContainerName = "images";
const imageContentType = "application/octet-stream";
const md5Pattern = /^[0-9a-f]{32}$/;

export interface PlanktonServiceOptions {
  pithos: PithosService;
  /** Where qcow2 uploads are received and converted; the OS's temp folder by default. */
  tempDir?: string;
  /** The qemu-img binary (PATH lookup by default). */
  qemuImg?: string;
}

export class PlanktonService {
  readonly pithos: PithosService;
  readonly db: MetadataDatabase;
  readonly #tempDir: string;
  readonly #qemuImg: string;

  constructor(options: PlanktonServiceOptions) {
    this.pithos = options.pithos;
    this.db = options.pithos.db;
    this.#tempDir = options.tempDir ?? tmpdir();
    this.#qemuImg = options.qemuImg ?? "qemu-img";
  }

  /** The image as `viewer` sees it; 404 when it does not exist or `viewer` may not see it. */
  async find(id: string, viewer: string): Promise<ImageWithFile> {
    if (!isUuid(id)) throw imageNotFound(id);
    const found = await getImage(this.db, id, { viewer });
    if (found === undefined) throw imageNotFound(id);
    return found;
  }

  /** The image, for a change only its owner may make: 404 unseen, 403 seen but not owned. */
  async findOwned(id: string, caller: string): Promise<ImageWithFile> {
    const found = await this.find(id, caller);
    if (found.image.owner !== caller) throw new PlanktonError("EFORBIDDEN", "You are not permitted to modify this image.");
    return found;
  }

  async refresh(id: string): Promise<ImageWithFile> {
    const found = await getImage(this.db, id);
    if (found === undefined) throw imageNotFound(id);
    return found;
  }

  /** Glance create: a `queued` image backed by an empty file `images/<id>` of the caller's. */
  async create(caller: string, fields: ImageFields & { uuid?: string }): Promise<ImageWithFile> {
    const container = await this.#imagesContainer(caller);
    const mapName = newFileMapName();
    const written = await this.pithos.engine.writeFile(mapName, emptySource(), { computeMd5: true });
    let created: ImageWithFile;
    try {
      const result = await createImageWithFile(
        this.db,
        container.id,
        { mapName, contentHash: written.header.contentHash ?? "", etag: written.md5Hex as string, contentType: imageContentType, modifiedBy: caller },
        { ...fields, owner: caller },
      );
      created = result.created;
      await this.pithos.dropMaps(result.unreferencedMaps);
    } catch (error) {
      await this.pithos.dropMaps([mapName]);
      throw error;
    }
    return created;
  }

  /**
   * Stores the image's data as a new version of its file, in fixed memory. `lengthBytes`
   * (Content-Length) is checked; chunked bodies have none.
   */
  async upload(caller: string, id: string, source: AsyncIterable<Uint8Array> & NodeJS.ReadableStream, lengthBytes: number | undefined): Promise<ImageWithFile> {
    const entry = await this.findOwned(id, caller);
    const { image } = entry;
    if (image.status !== "queued") throw new PlanktonError("ECONFLICT", `Image status transition from ${image.status} to saving is not allowed`);
    if (image.diskFormat === null || image.containerFormat === null) {
      throw new PlanktonError("EBAD_REQUEST", "Properties disk_format, container_format must be set prior to saving data.");
    }
    if (lengthBytes !== undefined && lengthBytes > imageSizeBytesMax) throw new PlanktonError("ETOO_LARGE", `Image exceeds the size limit of ${imageSizeBytesMax} bytes.`);
    await updateImage(this.db, id, { status: "saving" }, { expectStatus: ["queued"] });
    try {
      const convert = image.diskFormat === "qcow2";
      const stored = convert ? await this.#storeQcow2(entry, source, caller) : await this.#store(entry, source, lengthBytes, caller);
      await updateImage(this.db, id, { status: "active", checksum: stored.etag, ...(convert && { diskFormat: "raw" }) }, { expectStatus: ["saving"] });
    } catch (error) {
      // Glance puts a failed upload back to queued, so the client may try again.
      await updateImage(this.db, id, { status: "queued" }, { expectStatus: ["saving"] }).catch(() => undefined);
      throw error;
    }
    return this.refresh(id);
  }

  /** Deletes the registration, and the file too when Plankton created it (v2 DELETE). */
  async delete(caller: string, id: string, options: { keepFile: boolean }): Promise<void> {
    const { image, file } = await this.findOwned(id, caller);
    if (image.protected) throw new PlanktonError("EFORBIDDEN", `Image ${id} is protected and cannot be deleted.`);
    if (image.createdByUpload && !options.keepFile) {
      // The file first: should the row outlive it, a registration without a file reads as absent.
      const container = await getContainerById(this.db, file.containerId);
      if (container !== undefined) await this.pithos.delete(container, file.path, caller);
    }
    await deleteImage(this.db, id);
  }

  /** Replaces the file's sharing (the image's visibility and members). */
  async share(entry: ImageWithFile, sharing: PithosSharing | null): Promise<void> {
    await setSharing(this.db, entry.file.object.id, sharing);
  }

  async #imagesContainer(account: string): Promise<PithosContainer> {
    const existing = await getContainer(this.db, account, imagesContainerName);
    if (existing !== undefined) return existing;
    // Versioning none: a replaced upload frees its map at once instead of piling up history.
    return (await createContainer(this.db, account, imagesContainerName, { versioning: "none" })).container;
  }

  /**
   * PithosService.putFromStream, but with Glance's 1 TiB cap instead of Swift's 5 GiB object
   * limit: engine write, then commit (quota, version), the map dropped if the commit fails.
   */
  async #store(entry: ImageWithFile, source: AsyncIterable<Uint8Array>, lengthBytes: number | undefined, caller: string): Promise<PithosVersion> {
    const container = await getContainerById(this.db, entry.file.containerId);
    if (container === undefined) throw imageNotFound(entry.image.uuid);
    const mapName = newFileMapName();
    const written = await this.pithos.engine.writeFile(mapName, source, { computeMd5: true, maxBytes: imageSizeBytesMax });
    try {
      if (lengthBytes !== undefined && written.sizeBytes !== lengthBytes) {
        throw new PlanktonError("EBAD_REQUEST", `Received ${written.sizeBytes} bytes, Content-Length said ${lengthBytes}.`);
      }
      const stored = await this.pithos.commit(
        container,
        entry.file.path,
        { mapName, sizeBytes: written.sizeBytes, contentHash: written.header.contentHash ?? "", etag: written.md5Hex as string, contentType: imageContentType },
        // The file must still be the one we read: not replaced or deleted meanwhile.
        { modifiedBy: caller, expectCurrentSerial: entry.file.version.serial },
      );
      return stored.version;
    } catch (error) {
      await this.pithos.dropMaps([mapName]);
      throw error;
    }
  }

  async #storeQcow2(entry: ImageWithFile, source: NodeJS.ReadableStream, caller: string): Promise<PithosVersion> {
    const dir = await mkdtemp(join(this.#tempDir, "okeanos-plankton-"));
    try {
      const qcow2 = join(dir, "upload.qcow2");
      const raw = join(dir, "image.raw");
      await receiveToFile(source, qcow2, imageSizeBytesMax);
      await checkQcow2(this.#qemuImg, qcow2);
      await qcow2ToRaw(this.#qemuImg, qcow2, raw);
      const { size } = await stat(raw);
      return await this.#store(entry, createReadStream(raw), size, caller);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function emptySource(): AsyncIterable<Uint8Array> {
  return Readable.from([]);
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isUuid(text: string): boolean {
  return uuidPattern.test(text);
}

/** The MD5 clients see: the file's current ETag when it is one (not a Merkle hash or a manifest's). */
export function checksumOf(version: PithosVersion): string | null {
  return version.manifest === null && version.sloManifest === null && md5Pattern.test(version.etag) ? version.etag : null;
}

/** A file an image can be: a plain version (one map), not a large-object manifest. */
export function isPlainFile(version: PithosVersion): boolean {
  return version.manifest === null && version.sloManifest === null;
}
