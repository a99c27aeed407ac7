/**
 * Flavors (Nova's server sizes): created and deleted by an administrator (`okeanos flavor
 * create`), listed by everyone. A server copies the figures, so deleting a flavor leaves the
 * servers made from it as they are.
 */
import type { MetadataDatabase } from "../connect.ts";
import { DbError, isUniqueViolation } from "../errors.ts";
import { checkInteger, checkOptionalText, checkText } from "./limits.ts";
import {
  checkStringRecord,
  computeNameLengthMax,
  flavorDiskGiBMax,
  flavorFromRow,
  flavorRamMiBMax,
  flavorVcpusMax,
  type ComputeFlavor,
} from "./compute-common.ts";

export interface NewComputeFlavor {
  id: string;
  name: string;
  vcpus: number;
  ramMiB: number;
  diskGiB: number;
  isPublic?: boolean;
  disabled?: boolean;
  description?: string | null;
  extraSpecs?: Record<string, string>;
}

/** Nova: flavor descriptions up to 65535 characters. */
const flavorDescriptionLengthMax = 65_535;

/** EEXISTS when the id or the name is taken. */
export async function createComputeFlavor(db: MetadataDatabase, input: NewComputeFlavor, nowMs = Date.now()): Promise<ComputeFlavor> {
  const row = {
    id: checkText("id", input.id, computeNameLengthMax),
    name: checkText("name", input.name, computeNameLengthMax),
    vcpus: checkFigure("vcpus", input.vcpus, 1, flavorVcpusMax),
    ram_mib: checkFigure("ramMiB", input.ramMiB, 1, flavorRamMiBMax),
    disk_gib: checkFigure("diskGiB", input.diskGiB, 0, flavorDiskGiBMax),
    is_public: input.isPublic === false ? 0 : 1,
    disabled: input.disabled === true ? 1 : 0,
    description: checkOptionalText("description", input.description, flavorDescriptionLengthMax),
    extra_specs: JSON.stringify(checkStringRecord("extraSpecs", input.extraSpecs ?? {}, 255, 255, 128)),
    created_at: checkInteger("nowMs", nowMs, { min: 0 }),
  };
  try {
    const inserted = await db.kysely.insertInto("compute_flavors").values(row).returningAll().executeTakeFirstOrThrow();
    return flavorFromRow(inserted);
  } catch (error) {
    if (isUniqueViolation(error)) throw new DbError("EEXISTS", `a flavor with id ${row.id} or name ${row.name} exists`, { id: row.id, name: row.name });
    throw error;
  }
}

export async function getComputeFlavor(db: MetadataDatabase, id: string): Promise<ComputeFlavor | undefined> {
  const row = await db.kysely.selectFrom("compute_flavors").selectAll().where("id", "=", id).executeTakeFirst();
  return row && flavorFromRow(row);
}

/** Every flavor, or only the public ones; ordered as Nova's default (memory, then id). */
export async function listComputeFlavors(db: MetadataDatabase, options: { includePrivate?: boolean; includeDisabled?: boolean } = {}): Promise<ComputeFlavor[]> {
  const rows = await db.kysely
    .selectFrom("compute_flavors")
    .selectAll()
    .$if(options.includePrivate !== true, (query) => query.where("is_public", "=", 1))
    .$if(options.includeDisabled !== true, (query) => query.where("disabled", "=", 0))
    .orderBy("ram_mib")
    .orderBy("id")
    .execute();
  return rows.map(flavorFromRow);
}

/** ENOT_FOUND without it. */
export async function deleteComputeFlavor(db: MetadataDatabase, id: string): Promise<void> {
  const result = await db.kysely.deleteFrom("compute_flavors").where("id", "=", id).executeTakeFirst();
  if (result.numDeletedRows === 0n) throw new DbError("ENOT_FOUND", `no flavor ${id}`, { id });
}

function checkFigure(what: string, value: unknown, min: number, max: number): number {
  const checked = checkInteger(what, value, { min });
  if (checked > max) throw new DbError("EINVALID", `${what} must be at most ${max}`, { [what]: value });
  return checked;
}
