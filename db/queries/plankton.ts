/**
 * Plankton image registrations (synnefo.md C): metadata beside a Pithos+ file, keyed by the
 * file's object uuid. Registering moves no data; the file's data, size and location are read
 * through the join (plankton-listing.ts getImage/listImages).
 *
 *   registerImage        an existing live file becomes an image (Plankton v1 POST /images)
 *   createImageWithFile  a new empty file `<uuid>` and its image in one transaction, the file
 *                        named by the image id it gets (Glance v2 POST /v2/images)
 *   updateImage          fields, properties, tags, status (under the row's lock)
 *   deleteImage          the registration only; the caller deletes a file it created
 */
import { randomUUID } from "node:crypto";
import type { Insertable, Transaction } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError, isUniqueViolation } from "../errors.ts";
import type { Database, PlanktonImagesTable, PlanktonImageStatus } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkUuid } from "./limits.ts";
import { checkId, unreferencedMaps } from "./pithos-common.ts";
import { checkPutOptions, checkVersionFields, lockContainers, putVersionIn, type NewPithosVersion } from "./pithos-versions.ts";
import { checkImageFields, imageFromRow, type ImageFields, type ImageWithFile, type PlanktonImage } from "./plankton-common.ts";
import { getImageIn } from "./plankton-listing.ts";

export interface NewImage extends ImageFields {
  /** The file's object uuid. */
  uuid: string;
  /** The owner's user uuid (the file's account). */
  owner: string;
  createdByUpload?: boolean;
}

/**
 * Registers the live file with this object uuid as an image (status `active` unless given).
 * ENOT_FOUND without such a file, EEXISTS when it is already an image.
 */
export async function registerImage(db: MetadataDatabase, input: NewImage, nowMs = Date.now()): Promise<ImageWithFile> {
  const uuid = checkUuid("uuid", input.uuid);
  const row = newImageRow(input, nowMs);
  return inTransaction(db, async (tx) => {
    // The object's row, locked on PostgreSQL so a delete cannot slip between check and insert.
    const live = await tx
      .selectFrom("pithos_objects as o")
      .select("o.id")
      .where("o.uuid", "=", uuid)
      .where(({ exists, selectFrom }) =>
        exists(selectFrom("pithos_versions as v").select("v.serial").whereRef("v.object_id", "=", "o.id").where("v.state", "=", "current")),
      )
      .$if(db.engine === "postgres", (query) => query.forUpdate())
      .executeTakeFirst();
    if (live === undefined) throw new DbError("ENOT_FOUND", `no file with uuid ${uuid}`, { uuid });
    await insertImage(tx, row);
    const registered = await getImageIn(tx, uuid, undefined, nowMs);
    if (registered === undefined) throw new DbError("ENOT_FOUND", `the file ${uuid} has expired`, { uuid });
    return registered;
  });
}

/** The new version of an image's empty file: its data is a map the caller has stored. */
export type NewImageFile = Pick<NewPithosVersion, "mapName" | "contentHash" | "etag" | "contentType"> & { modifiedBy: string };

/**
 * Glance's create: a file at path `<uuid>` in the container (Plankton's `images`) holding the
 * caller's empty map, and its image (status `queued`, created by upload), in one transaction,
 * so neither exists without the other. `image.uuid` (a client-chosen id) or a fresh one.
 * EEXISTS when that id is taken (by an object or an image), EPRECONDITION when a live object
 * already has that path.
 */
export async function createImageWithFile(
  db: MetadataDatabase,
  containerId: number,
  file: NewImageFile,
  image: Omit<NewImage, "uuid" | "createdByUpload"> & { uuid?: string },
  nowMs = Date.now(),
): Promise<{ created: ImageWithFile; unreferencedMaps: string[] }> {
  const id = checkId("containerId", containerId);
  const uuid = image.uuid === undefined ? randomUUID() : checkUuid("uuid", image.uuid);
  const values = checkVersionFields({ ...file, sizeBytes: 0 });
  const options = checkPutOptions({ modifiedBy: file.modifiedBy, ifNoneMatchStar: true });
  const row = newImageRow({ ...image, uuid, status: image.status ?? "queued", createdByUpload: true }, nowMs);
  return inTransaction(db, async (tx) => {
    await lockContainers(tx, db.engine, [id]);
    const taken = await tx.selectFrom("pithos_objects").select("id").where("uuid", "=", uuid).executeTakeFirst();
    if (taken !== undefined) throw new DbError("EEXISTS", `uuid ${uuid} is taken`, { uuid });
    const { removedMaps } = await putVersionIn(tx, db.engine, id, uuid, values, options, nowMs, uuid);
    await insertImage(tx, row);
    const created = await getImageIn(tx, uuid, undefined, nowMs);
    if (created === undefined) throw new Error(`image ${uuid} not readable in the transaction that created it`);
    return { created, unreferencedMaps: await unreferencedMaps(tx, db.engine, removedMaps) };
  });
}

export type ImagePatch = ImageFields;

export interface UpdateImageOptions {
  /** EPRECONDITION unless the image is in one of these states (an upload claims `queued`). */
  expectStatus?: readonly PlanktonImageStatus[];
}

/**
 * Changes an image's fields (properties and tags are replaced whole). `change` may be a
 * function of the current image, run under the row's lock: a read-modify-write (a JSON patch)
 * that no concurrent update can interleave with. ENOT_FOUND without the image.
 */
export async function updateImage(
  db: MetadataDatabase,
  uuid: string,
  change: ImagePatch | ((current: PlanktonImage) => ImagePatch),
  options: UpdateImageOptions = {},
  nowMs = Date.now(),
): Promise<PlanktonImage> {
  const id = checkUuid("uuid", uuid);
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    const current = await lockImage(tx, db.engine, id);
    if (options.expectStatus !== undefined && !options.expectStatus.includes(current.status)) {
      throw new DbError("EPRECONDITION", `image ${id} is ${current.status}, not ${options.expectStatus.join(" or ")}`, {
        uuid: id,
        status: current.status,
      });
    }
    const patch = checkImageFields(typeof change === "function" ? change(current) : change);
    const updated = await tx
      .updateTable("plankton_images")
      .set({ ...patch, updated_at: Math.max(nowMs, current.updatedAt) })
      .where("uuid", "=", id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return imageFromRow(updated);
  });
}

/**
 * Removes the registration (the file stays: the caller deletes one it created). ENOT_FOUND
 * without it; ECONFLICT for a protected image unless `evenIfProtected`.
 */
export async function deleteImage(db: MetadataDatabase, uuid: string, options: { evenIfProtected?: boolean } = {}): Promise<PlanktonImage> {
  const id = checkUuid("uuid", uuid);
  return inTransaction(db, async (tx) => {
    const current = await lockImage(tx, db.engine, id);
    if (current.protected && options.evenIfProtected !== true) {
      throw new DbError("ECONFLICT", `image ${id} is protected`, { uuid: id });
    }
    await tx.deleteFrom("plankton_images").where("uuid", "=", id).execute();
    return current;
  });
}

/** The registration alone (no file join): also one whose file is gone. */
export async function getImageRecord(db: MetadataDatabase, uuid: string): Promise<PlanktonImage | undefined> {
  const row = await db.kysely.selectFrom("plankton_images").selectAll().where("uuid", "=", checkUuid("uuid", uuid)).executeTakeFirst();
  return row && imageFromRow(row);
}

async function lockImage(tx: Transaction<Database>, engine: MetadataDatabase["engine"], uuid: string): Promise<PlanktonImage> {
  const row = await tx
    .selectFrom("plankton_images")
    .selectAll()
    .where("uuid", "=", uuid)
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirst();
  if (row === undefined) throw new DbError("ENOT_FOUND", `no image ${uuid}`, { uuid });
  return imageFromRow(row);
}

function newImageRow(input: NewImage, nowMs: number): Insertable<PlanktonImagesTable> {
  checkInteger("nowMs", nowMs, { min: 0 });
  const fields = checkImageFields(input);
  return {
    uuid: checkUuid("uuid", input.uuid),
    name: fields.name ?? null,
    disk_format: fields.disk_format ?? null,
    container_format: fields.container_format ?? null,
    status: fields.status ?? "active",
    min_disk: fields.min_disk ?? 0,
    min_ram: fields.min_ram ?? 0,
    protected: fields.protected ?? 0,
    os_hidden: fields.os_hidden ?? 0,
    checksum: fields.checksum ?? null,
    created_at: nowMs,
    updated_at: nowMs,
    properties: fields.properties ?? "{}",
    tags: fields.tags ?? "[]",
    owner: checkUuid("owner", input.owner),
    created_by_upload: input.createdByUpload === true ? 1 : 0,
  };
}

async function insertImage(tx: Transaction<Database>, row: Insertable<PlanktonImagesTable>): Promise<void> {
  try {
    await tx.insertInto("plankton_images").values(row).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw new DbError("EEXISTS", `${row.uuid} is already an image`, { uuid: row.uuid }, { cause: error });
    throw error;
  }
}
