/** The metadata database's public face: what identity/ and the other services import. */
export { openDatabase, type DatabaseEngine, type MetadataDatabase, type OpenDatabaseOptions } from "./connect.ts";
export { dbErrorCodes, DbError, isDbError, type DbErrorCode } from "./errors.ts";
export { latestMigration, migrateToLatest } from "./migrations/index.ts";
export type { CommissionState, Database, UserState } from "./schema.ts";
export { inTransaction } from "./transaction.ts";
export * from "./queries/users.ts";
export * from "./queries/tokens.ts";
export * from "./queries/quotas.ts";
export * from "./queries/commissions.ts";
export * as limits from "./queries/limits.ts";
