/**
 * Transactions that behave alike on both engines.
 *
 * - SQLite: BEGIN IMMEDIATE (sqlite-dialect.ts) takes the database's write lock at the start,
 *   and Kysely serialises the one connection, so transactions run one at a time: a check
 *   followed by a write inside one cannot be overtaken.
 * - PostgreSQL: READ COMMITTED, with the rows a decision depends on locked by
 *   SELECT … FOR UPDATE (`engine === "postgres"` branches in the queries; SQLite has no such
 *   clause and needs none). Locks are always taken in one order (holdings sorted by user,
 *   then resource) so transactions do not deadlock; should PostgreSQL still report a
 *   deadlock or a serialization failure, the whole transaction is retried.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Transaction } from "kysely";
import type { MetadataDatabase } from "./connect.ts";
import type { Database } from "./schema.ts";

/**
 * Attempts of a transaction PostgreSQL aborted as a deadlock or serialization failure. With
 * ordered row locks these come only from unforeseen interleavings; five attempts with
 * growing random backoff outlast any such interleaving, and a sixth failure is a bug to see.
 */
export const transactionAttemptsMax = 5;

/** PostgreSQL SQLSTATEs after which retrying the whole transaction is correct. */
const retryableSqlStates = new Set(["40001" /* serialization_failure */, "40P01" /* deadlock_detected */]);

export async function inTransaction<T>(db: MetadataDatabase, work: (tx: Transaction<Database>) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.kysely.transaction().execute(work);
    } catch (error) {
      if (db.engine !== "postgres" || attempt >= transactionAttemptsMax || !isRetryable(error)) throw error;
      await sleep(Math.random() * 5 * attempt);
    }
  }
}

function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && retryableSqlStates.has(code);
}
