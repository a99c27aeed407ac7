/** Small helpers shared by the query tests. */
import { expect } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { isDbError, type DbError, type DbErrorCode } from "../errors.ts";
import { ensureResources, setLimit, type QuotaResource } from "../queries/quotas.ts";
import { createUser, type User } from "../queries/users.ts";

export const testResources: readonly QuotaResource[] = [
  { name: "compute.vm", description: "Virtual machines", unit: "count", defaultLimit: 2 },
  { name: "compute.ram", description: "Memory", unit: "bytes", defaultLimit: 0 },
  { name: "volume.disk", description: "Volumes", unit: "bytes", defaultLimit: 0 },
];

/** A user with the test resources registered and the given explicit limits. */
export async function seedUser(db: MetadataDatabase, name: string, limits: Record<string, number> = {}): Promise<User> {
  await ensureResources(db, testResources);
  const user = await createUser(db, { name, email: `${name}@example.org` });
  for (const [resource, limit] of Object.entries(limits)) await setLimit(db, user.uuid, resource, limit);
  return user;
}

/** Awaits a promise expected to fail with a DbError of this code; returns the error. */
export async function rejectsWith(promise: Promise<unknown>, code: DbErrorCode): Promise<DbError> {
  const error = await promise.then(
    (value) => ({ resolvedWith: value }),
    (caught: unknown) => caught,
  );
  expect(isDbError(error, code), `expected ${code}, got ${JSON.stringify(error) ?? String(error)} ${String(error)}`).toBe(true);
  return error as DbError;
}
