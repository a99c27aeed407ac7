/**
 * Opening the metadata database from a URL:
 *
 *   sqlite:PATH            a file (created with its folder if missing); `sqlite://PATH` too
 *   sqlite::memory:        a private in-memory database (tests)
 *   postgres://…           PostgreSQL through a pool (`postgresql://` too; a unix socket with
 *                          `postgresql://user@/dbname?host=/run/postgresql`)
 *
 * The schema is not touched here: call migrateToLatest() (db/migrations/) after opening.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { DbError } from "./errors.ts";
import type { Database } from "./schema.ts";
import { NodeSqliteDialect } from "./sqlite-dialect.ts";

export type DatabaseEngine = "sqlite" | "postgres";

export interface MetadataDatabase {
  readonly engine: DatabaseEngine;
  readonly kysely: Kysely<Database>;
  /** The URL without its password, for logs. */
  readonly description: string;
  /** Closes the file or ends the pool; waits for queries in flight. Idempotent. */
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /**
   * SQLite: how long BEGIN IMMEDIATE waits for another process's write transaction.
   * Metadata transactions take milliseconds; 5 s is reached only when something is stuck,
   * and then the caller gets SQLITE_BUSY instead of hanging.
   */
  busyTimeoutMs?: number;
  /**
   * PostgreSQL: connections this process holds at most. pg's default; ten API nodes then
   * use 100, PostgreSQL's default max_connections.
   */
  poolSizeMax?: number;
  /** PostgreSQL: an idle pooled connection failed (server restart); the pool replaces it. */
  onIdleConnectionError?: (error: Error) => void;
}

export const sqliteBusyTimeoutMsDefault = 5_000;
export const postgresPoolSizeMaxDefault = 10;

export async function openDatabase(url: string, options: OpenDatabaseOptions = {}): Promise<MetadataDatabase> {
  if (url.startsWith("sqlite:")) return openSqlite(url, options);
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) return openPostgres(url, options);
  throw new DbError("EUNSUPPORTED", `unsupported database URL (want sqlite:PATH or postgres://…): ${redact(url)}`);
}

function sqlitePath(url: string): string {
  let path = url.slice("sqlite:".length);
  if (path.startsWith("//")) path = path.slice(2);
  if (path === "") throw new DbError("EINVALID", "sqlite: URL without a path (use sqlite::memory: for a private in-memory database)");
  return path;
}

function openSqlite(url: string, options: OpenDatabaseOptions): MetadataDatabase {
  const path = sqlitePath(url);
  const inMemory = path === ":memory:";
  if (!inMemory) mkdirSync(dirname(path), { recursive: true });
  const busyTimeoutMs = options.busyTimeoutMs ?? sqliteBusyTimeoutMsDefault;
  const database = new DatabaseSync(path, { enableForeignKeyConstraints: true, timeout: busyTimeoutMs });
  try {
    // WAL: readers never block the writer and a commit is one append; the default
    // synchronous=FULL keeps every committed commission across a power cut.
    if (!inMemory) database.exec("pragma journal_mode = wal");
    database.exec("pragma foreign_keys = on");
    database.exec(`pragma busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
  } catch (error) {
    database.close();
    throw error;
  }
  const kysely = new Kysely<Database>({ dialect: new NodeSqliteDialect({ database }) });
  return {
    engine: "sqlite",
    kysely,
    description: url,
    close: once(async () => {
      await kysely.destroy();
      // destroy() closes the file only if a query ever ran.
      if (database.isOpen) database.close();
    }),
  };
}

function openPostgres(url: string, options: OpenDatabaseOptions): MetadataDatabase {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSizeMax ?? postgresPoolSizeMaxDefault,
    application_name: "okeanos",
    types: { getTypeParser },
  });
  const onIdleError = options.onIdleConnectionError ?? (() => {});
  pool.on("error", onIdleError);
  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    engine: "postgres",
    kysely,
    description: redact(url),
    close: once(() => kysely.destroy()), // ends the pool
  };
}

/** close() may be called again (a test's cleanup after the test closed it): same promise. */
function once(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => (closing ??= close());
}

const int8Oid = 20;

/**
 * pg returns bigint (int8) columns as strings, since they may exceed 2^53. Ours hold
 * milliseconds and quantities checked to be safe integers on the way in, and COUNT(*): read
 * them as numbers, the same as SQLite gives. Per pool, not pg's global parser table.
 */
const getTypeParser = ((oid: number, format?: "text" | "binary") => {
  if (oid === int8Oid && format !== "binary") return parseInt8;
  return pg.types.getTypeParser(oid, format);
}) as typeof pg.types.getTypeParser;

function parseInt8(text: string): number {
  const value = Number(text);
  assert(Number.isSafeInteger(value), `bigint column value ${text} is not a safe integer`);
  return value;
}

function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
}
