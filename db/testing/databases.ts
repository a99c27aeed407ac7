/**
 * Runs a test suite against both engines: SQLite in a temporary file and a real PostgreSQL
 * this harness starts (postgres-server.ts).
 *
 *   describeEachEngine("users", (databases) => {
 *     it("…", async () => { const db = await databases.open(); … });
 *   });
 *
 * gives "users [sqlite]" and "users [postgres]". Each open() is a new, migrated database, closed
 * (and its server stopped) after the suite. Without PostgreSQL installed the postgres half is
 * skipped with a warning, except under CI=true, where it fails: CI must run both.
 * One describeEachEngine per file keeps it to one server per file.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { openDatabase, type DatabaseEngine, type MetadataDatabase, type OpenDatabaseOptions } from "../connect.ts";
import { migrateToLatest } from "../migrations/index.ts";
import { findPostgres, TestPostgresServer } from "./postgres-server.ts";

export interface TestDatabases {
  readonly engine: DatabaseEngine;
  /** The URL of a new, empty database (no migrations run). */
  freshUrl(): Promise<string>;
  /** Opens a URL; the handle is closed after the suite unless the test closes it first. */
  connect(url: string, options?: OpenDatabaseOptions): Promise<MetadataDatabase>;
  /** A new database at the latest migration. */
  open(options?: OpenDatabaseOptions): Promise<MetadataDatabase>;
}

interface EngineContext {
  setUp(): Promise<void>;
  freshUrl(): Promise<string>;
  /** The URL of a new database already at the latest migration, where that is faster. */
  freshMigratedUrl(): Promise<string>;
  tearDown(): Promise<void>;
}

function sqliteContext(): EngineContext {
  let dir: string | undefined;
  let count = 0;
  return {
    async setUp() {
      dir = await mkdtemp(join(tmpdir(), "okeanos-sqlite-"));
    },
    async freshUrl() {
      return `sqlite:${join(dir!, `test-${++count}.db`)}`;
    },
    freshMigratedUrl() {
      return this.freshUrl(); // migrating a new SQLite file takes milliseconds
    },
    async tearDown() {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}

function postgresContext(): EngineContext {
  let server: TestPostgresServer | undefined;
  let template: string | undefined;
  const started = (): TestPostgresServer => {
    if (server === undefined) throw new Error("PostgreSQL server did not start (see the beforeAll failure)");
    return server;
  };
  return {
    async setUp() {
      const installation = findPostgres();
      if (installation === undefined) throw new Error(postgresMissing);
      server = await TestPostgresServer.start(installation);
      // Migrated once; each test's database is a copy (migrating each takes ~0.2 s more).
      template = await server.createDatabase();
      const db = await openDatabase(server.url(template));
      try {
        await migrateToLatest(db);
      } finally {
        await db.close();
      }
    },
    async freshUrl() {
      return started().url(await started().createDatabase());
    },
    async freshMigratedUrl() {
      return started().url(await started().createDatabase(template));
    },
    async tearDown() {
      await server?.stop();
    },
  };
}

const postgresMissing =
  "PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/initdb): apt-get install postgresql, " +
  "or set OKEANOS_POSTGRES_BIN to a folder with initdb, pg_ctl and postgres";

function describeOnEngine(title: string, engine: DatabaseEngine, context: EngineContext, suite: (databases: TestDatabases) => void): void {
  describe(`${title} [${engine}]`, () => {
    const opened: MetadataDatabase[] = [];
    const databases: TestDatabases = {
      engine,
      freshUrl: () => context.freshUrl(),
      async connect(url, options) {
        const db = await openDatabase(url, options);
        opened.push(db);
        return db;
      },
      async open(options) {
        const db = await databases.connect(await context.freshMigratedUrl(), options);
        await migrateToLatest(db); // nothing to do on PostgreSQL: a copy of a migrated template
        return db;
      },
    };
    beforeAll(() => context.setUp());
    afterAll(async () => {
      // close() is idempotent through Kysely; a test may have closed some already.
      await Promise.allSettled(opened.map((db) => db.close()));
      await context.tearDown();
    });
    suite(databases);
  });
}

export function describeEachEngine(title: string, suite: (databases: TestDatabases) => void): void {
  describeOnEngine(title, "sqlite", sqliteContext(), suite);
  if (findPostgres() !== undefined) {
    describeOnEngine(title, "postgres", postgresContext(), suite);
  } else if (process.env.CI === "true") {
    describe(`${title} [postgres]`, () => {
      it("needs PostgreSQL under CI", () => {
        throw new Error(postgresMissing);
      });
    });
  } else {
    console.warn(`\n*** ${title} [postgres] SKIPPED: ${postgresMissing}. CI runs it; it will fail there if this is broken. ***\n`);
    describe.skip(`${title} [postgres] (PostgreSQL not installed)`, () => suite(unavailable));
  }
}

const unavailable: TestDatabases = {
  engine: "postgres",
  freshUrl: () => Promise.reject(new Error(postgresMissing)),
  connect: () => Promise.reject(new Error(postgresMissing)),
  open: () => Promise.reject(new Error(postgresMissing)),
};
