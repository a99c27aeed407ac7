/**
 * What the identity commands (serve, user, token) share: the --database option and opening
 * the metadata database with migrations run.
 */
import { Option, type Command } from "commander";
import type { MetadataDatabase } from "../../db/index.ts";

/** Beside the file store's default `./data`, so one folder holds a whole embedded install. */
export const databaseUrlDefault = "sqlite:./data/okeanos.db";

export function databaseOption(): Option {
  return new Option("--database <url>", "metadata database: sqlite:PATH or postgres://user:pw@host/db").env("OKEANOS_DATABASE").default(databaseUrlDefault);
}

export function databaseUrl(command: Command): string {
  return command.optsWithGlobals<{ database?: string }>().database ?? databaseUrlDefault;
}

/** Opens and migrates the database, runs `action`, closes it. DbErrors pass through: output.ts gives each code its exit code. */
export async function withDatabase<T>(url: string, action: (db: MetadataDatabase) => Promise<T>): Promise<T> {
  // Loaded here, not at the top: the database layer (Kysely, pg) is a third of a short
  // command's start-up, and engine-only commands never need it.
  const { migrateToLatest, openDatabase } = await import("../../db/index.ts");
  const db = await openDatabase(url);
  try {
    await migrateToLatest(db);
    return await action(db);
  } finally {
    await db.close();
  }
}
