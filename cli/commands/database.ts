/**
 * What the identity commands (serve, user, token) share: the --database option and opening
 * the metadata database with migrations run.
 */
import { Option, type Command } from "commander";
import { isDbError, migrateToLatest, openDatabase, type MetadataDatabase } from "../../db/index.ts";
import { UsageError } from "../output.ts";

/** Beside the file store's default `./data`, so one folder holds a whole embedded install. */
export const databaseUrlDefault = "sqlite:./data/okeanos.db";

export function databaseOption(): Option {
  return new Option("--database <url>", "metadata database: sqlite:PATH or postgres://user:pw@host/db").env("OKEANOS_DATABASE").default(databaseUrlDefault);
}

export function databaseUrl(command: Command): string {
  return command.optsWithGlobals<{ database?: string }>().database ?? databaseUrlDefault;
}

/** Opens and migrates the database, runs `action`, closes it; DbErrors become one-line usage errors. */
export async function withDatabase<T>(url: string, action: (db: MetadataDatabase) => Promise<T>): Promise<T> {
  const db = await openDatabase(url);
  try {
    await migrateToLatest(db);
    return await action(db);
  } catch (error) {
    // TODO(cli/output.ts): give DbError codes their own exit codes, as engine errors have.
    if (isDbError(error)) throw new UsageError(error.message);
    throw error;
  } finally {
    await db.close();
  }
}
