/**
 * Schema migrations, in code (no files read at run time, so they ship inside the package and
 * a bundle). Kysely's Migrator records applied ones in `kysely_migration` and runs a batch
 * under its lock: a transaction on both engines (SQLite's DDL is transactional, see
 * sqlite-dialect.ts), plus a table lock on PostgreSQL so API nodes starting together
 * migrate once.
 *
 * Adding one: a new file `NNNN-what.ts` exporting up(db, engine) (and down(db) where it can
 * be undone), appended to `migrations` below. Never edit one that has shipped.
 */
import type { Kysely } from "kysely";
import { Migrator, NO_MIGRATIONS, type Migration, type MigrationProvider, type MigrationResult } from "kysely/migration";
import type { DatabaseEngine, MetadataDatabase } from "../connect.ts";
import * as identity from "./0001-identity.ts";
import * as pithos from "./0002-pithos.ts";
import * as plankton from "./0003-plankton.ts";
import * as compute from "./0004-compute.ts";
import * as pithosCharges from "./0005-pithos-charges.ts";
import * as volumes from "./0006-volumes.ts";
import * as computeVolumeJobs from "./0007-compute-volume-jobs.ts";

interface EngineMigration {
  up(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void>;
  down?(db: Kysely<unknown>, engine: DatabaseEngine): Promise<void>;
}

/** In order; names sort in the same order (Kysely checks). */
const migrations: ReadonlyArray<readonly [string, EngineMigration]> = [
  ["0001-identity", identity],
  ["0002-pithos", pithos],
  ["0003-plankton", plankton],
  ["0004-compute", compute],
  ["0005-pithos-charges", pithosCharges],
  ["0006-volumes", volumes],
  ["0007-compute-volume-jobs", computeVolumeJobs],
];

export const migrationNames: readonly string[] = migrations.map(([name]) => name);
export const latestMigration = migrations[migrations.length - 1]![0];

class InCodeMigrationProvider implements MigrationProvider {
  readonly #engine: DatabaseEngine;

  constructor(engine: DatabaseEngine) {
    this.#engine = engine;
  }

  async getMigrations(): Promise<Record<string, Migration>> {
    const engine = this.#engine;
    const byName: Record<string, Migration> = {};
    for (const [name, migration] of migrations) {
      const { down } = migration;
      byName[name] = {
        up: (db) => migration.up(db as Kysely<unknown>, engine),
        ...(down ? { down: (db: Kysely<unknown>) => down(db, engine) } : {}),
      };
    }
    return byName;
  }
}

export function migratorFor(db: MetadataDatabase): Migrator {
  return new Migrator({ db: db.kysely, provider: new InCodeMigrationProvider(db.engine) });
}

/** Applies every migration not yet applied; throws the first failure (its batch rolled back). */
export async function migrateToLatest(db: MetadataDatabase): Promise<MigrationResult[]> {
  const { error, results } = await migratorFor(db).migrateToLatest();
  if (error !== undefined) throw error;
  return results ?? [];
}

/** Undoes every migration (tests of down migrations; no command offers this). */
export async function migrateDownToEmpty(db: MetadataDatabase): Promise<MigrationResult[]> {
  const { error, results } = await migratorFor(db).migrateTo(NO_MIGRATIONS);
  if (error !== undefined) throw error;
  return results ?? [];
}
