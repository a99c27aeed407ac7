/**
 * SSH keypairs (Nova os-keypairs): a user's named public keys. The fingerprint is computed by
 * the caller (compute/), which also generates keys; this layer stores and counts.
 */
import type { MetadataDatabase } from "../connect.ts";
import { DbError, isUniqueViolation } from "../errors.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkText, checkUuid } from "./limits.ts";
import { computeNameLengthMax, keypairFromRow, keypairsPerUserMax, publicKeyLengthMax, type ComputeKeypair } from "./compute-common.ts";

export interface NewComputeKeypair {
  userUuid: string;
  name: string;
  publicKey: string;
  fingerprint: string;
  type?: "ssh" | "x509";
}

/** EEXISTS when the user has a keypair of that name; EQUOTA_EXCEEDED past keypairsPerUserMax. */
export async function createComputeKeypair(db: MetadataDatabase, input: NewComputeKeypair, nowMs = Date.now()): Promise<ComputeKeypair> {
  const row = {
    user_uuid: checkUuid("userUuid", input.userUuid),
    name: checkText("name", input.name, computeNameLengthMax),
    public_key: checkText("publicKey", input.publicKey, publicKeyLengthMax),
    fingerprint: checkText("fingerprint", input.fingerprint, 128),
    type: input.type ?? "ssh",
    created_at: checkInteger("nowMs", nowMs, { min: 0 }),
  };
  try {
    return await inTransaction(db, async (tx) => {
      const { count } = await tx
        .selectFrom("compute_keypairs")
        .select((eb) => eb.fn.countAll<number | string>().as("count"))
        .where("user_uuid", "=", row.user_uuid)
        .executeTakeFirstOrThrow();
      if (Number(count) >= keypairsPerUserMax) {
        throw new DbError("EQUOTA_EXCEEDED", `Quota exceeded, too many key pairs (at most ${keypairsPerUserMax})`, { limit: keypairsPerUserMax });
      }
      return keypairFromRow(await tx.insertInto("compute_keypairs").values(row).returningAll().executeTakeFirstOrThrow());
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new DbError("EEXISTS", `Key pair '${row.name}' already exists.`, { name: row.name });
    throw error;
  }
}

export async function getComputeKeypair(db: MetadataDatabase, userUuid: string, name: string): Promise<ComputeKeypair | undefined> {
  const row = await db.kysely.selectFrom("compute_keypairs").selectAll().where("user_uuid", "=", userUuid).where("name", "=", name).executeTakeFirst();
  return row && keypairFromRow(row);
}

export async function listComputeKeypairs(db: MetadataDatabase, userUuid: string): Promise<ComputeKeypair[]> {
  const rows = await db.kysely.selectFrom("compute_keypairs").selectAll().where("user_uuid", "=", userUuid).orderBy("name").execute();
  return rows.map(keypairFromRow);
}

/** ENOT_FOUND without it. Servers keep the copy of the key they were created with. */
export async function deleteComputeKeypair(db: MetadataDatabase, userUuid: string, name: string): Promise<void> {
  const result = await db.kysely.deleteFrom("compute_keypairs").where("user_uuid", "=", userUuid).where("name", "=", name).executeTakeFirst();
  if (result.numDeletedRows === 0n) throw new DbError("ENOT_FOUND", `Keypair ${name} not found for user ${userUuid}`, { name });
}
