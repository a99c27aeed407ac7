/**
 * A Kysely dialect over Node's built-in `node:sqlite` (no native build, nothing to install).
 *
 * Kysely's own SqliteDialect drives any database with better-sqlite3's shape
 * (`SqliteDatabase`: `prepare(sql)` → a statement with `reader`, `all`, `run`, `iterate`).
 * `node:sqlite`'s `StatementSync` has `all/run/iterate` taking spread parameters, and no
 * `reader`: a statement returns rows exactly when it has result columns (a SELECT, a PRAGMA
 * that answers, an INSERT … RETURNING). So the adapter is small:
 *
 *   Kysely ── SqliteDriver (Kysely's) ── NodeSqliteDatabase ── DatabaseSync (node:sqlite)
 *              └ begin → BEGIN IMMEDIATE   └ prepare → NodeSqliteStatement (reader = columns > 0)
 *
 * Two departures from Kysely's SqliteDialect, both for correctness:
 * - Transactions begin with BEGIN IMMEDIATE: the write lock is taken at the start, so a
 *   read-then-write transaction (check a quota, then reserve) cannot be overtaken by another
 *   process between its read and its write, and never fails with SQLITE_BUSY half-way through
 *   (it waits up to the busy timeout at BEGIN instead).
 * - DDL is transactional (SQLite has always supported it; Kysely's adapter says no to be
 *   safe): the migrator then runs each migration batch in one transaction, so two processes
 *   migrating the same file at once serialise instead of racing.
 *
 * node:sqlite is synchronous: every query runs on the event loop thread, and a BEGIN waiting
 * for another process's write lock blocks the loop up to the busy timeout. That is fine for
 * the embedded default (one API process, small metadata queries); many API nodes use
 * PostgreSQL. Within one process Kysely serialises all use of the single connection
 * (SqliteAdapter.supportsMultipleConnections is false), so transactions never interleave.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite";
import {
  CompiledQuery,
  SqliteAdapter,
  SqliteDriver,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type SqliteDatabase,
  type SqliteStatement,
} from "kysely";

/** A prepared statement in better-sqlite3's shape. */
class NodeSqliteStatement implements SqliteStatement {
  readonly reader: boolean;
  readonly #statement: StatementSync;
  /** Iterators not yet finished: while one runs, the statement is not handed out again (a new call would reset it). */
  #iterating = 0;

  constructor(statement: StatementSync) {
    this.#statement = statement;
    this.reader = statement.columns().length > 0;
  }

  get iterating(): boolean {
    return this.#iterating > 0;
  }

  all(parameters: ReadonlyArray<unknown>): unknown[] {
    return this.#statement.all(...toSqliteParameters(parameters));
  }

  run(parameters: ReadonlyArray<unknown>): { changes: number | bigint; lastInsertRowid: number | bigint } {
    return this.#statement.run(...toSqliteParameters(parameters));
  }

  *iterate(parameters: ReadonlyArray<unknown>): IterableIterator<unknown> {
    this.#iterating++;
    try {
      yield* this.#statement.iterate(...toSqliteParameters(parameters)) as IterableIterator<unknown>;
    } finally {
      this.#iterating--;
    }
  }
}

/** Statements kept prepared, by SQL text: the hot queries are a few dozen. */
const statementCacheMax = 256;

/**
 * A node:sqlite database in better-sqlite3's shape. Statements are cached by their SQL:
 * Kysely prepares every query it runs, and preparing (parsing and planning) cost as much as
 * running on the object store's small-PUT path.
 */
export class NodeSqliteDatabase implements SqliteDatabase {
  readonly #database: DatabaseSync;
  /** Least recently used first (Map keeps insertion order; a hit re-inserts). */
  readonly #statements = new Map<string, NodeSqliteStatement>();

  constructor(database: DatabaseSync) {
    this.#database = database;
  }

  prepare(sql: string): SqliteStatement {
    const cached = this.#statements.get(sql);
    if (cached !== undefined && !cached.iterating) {
      this.#statements.delete(sql);
      this.#statements.set(sql, cached);
      return cached;
    }
    const statement = new NodeSqliteStatement(this.#database.prepare(sql));
    // A statement whose namesake is mid-iteration is used once and not kept.
    if (cached === undefined) {
      this.#statements.set(sql, statement);
      if (this.#statements.size > statementCacheMax) this.#statements.delete(this.#statements.keys().next().value as string);
    }
    return statement;
  }

  close(): void {
    this.#statements.clear();
    if (this.#database.isOpen) this.#database.close();
  }
}

/**
 * node:sqlite binds null, numbers, bigints, strings and byte arrays. Booleans become 0/1 as
 * SQLite stores them (newer Node versions do this themselves, 22.x refuses them); anything
 * else is a caller's bug and node:sqlite's own error says which parameter.
 */
function toSqliteParameters(parameters: ReadonlyArray<unknown>): SQLInputValue[] {
  return parameters.map((value) => (typeof value === "boolean" ? (value ? 1 : 0) : (value as SQLInputValue)));
}

class NodeSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }
}

class NodeSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

export interface NodeSqliteDialectConfig {
  /** An open node:sqlite database; Kysely's destroy() closes it. */
  database: DatabaseSync;
}

export class NodeSqliteDialect implements Dialect {
  readonly #database: NodeSqliteDatabase;

  constructor(config: NodeSqliteDialectConfig) {
    this.#database = new NodeSqliteDatabase(config.database);
  }

  createDriver(): Driver {
    return new NodeSqliteDriver({ database: this.#database });
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new NodeSqliteAdapter();
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Kysely's Dialect signature
  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}
