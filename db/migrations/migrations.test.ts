import { sql } from "kysely";
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../testing/databases.ts";
import { latestMigration, migrateDownToEmpty, migrateToLatest, migrationNames, migratorFor } from "./index.ts";

const identityTables = ["commission_provisions", "commissions", "quota_holdings", "quota_resources", "tokens", "users"];
const pithosTables = ["pithos_accounts", "pithos_containers", "pithos_groups", "pithos_objects", "pithos_sharing", "pithos_versions"];
const planktonTables = ["plankton_images"];
const computeTables = ["compute_flavors", "compute_jobs", "compute_keypairs", "compute_server_metadata", "compute_servers", "compute_volume_attachments"];
const volumeTables = ["volume_metadata", "volume_snapshots", "volumes"];

describeEachEngine("migrations", (databases) => {
  it("run up from an empty database, then find nothing more to do", async () => {
    const db = await databases.connect(await databases.freshUrl());
    const results = await migrateToLatest(db);
    expect(results.map((r) => [r.migrationName, r.direction, r.status])).toEqual(migrationNames.map((name) => [name, "Up", "Success"]));
    const tables = (await db.kysely.introspection.getTables()).map((t) => t.name).sort();
    expect(tables).toEqual([...identityTables, ...pithosTables, ...planktonTables, ...computeTables, ...volumeTables].sort());
    expect(await migrateToLatest(db)).toEqual([]);
  });

  it("run down to empty and up again", async () => {
    const db = await databases.open();
    const down = await migrateDownToEmpty(db);
    expect(down.map((r) => [r.migrationName, r.direction, r.status])).toEqual(
      [...migrationNames].reverse().map((name) => [name, "Down", "Success"]),
    );
    expect((await db.kysely.introspection.getTables()).map((t) => t.name)).toEqual([]);
    expect((await migrateToLatest(db)).map((r) => r.status)).toEqual(migrationNames.map(() => "Success"));
  });

  it("survive a reopen: the second open finds the schema in place", async () => {
    const url = await databases.freshUrl();
    const first = await databases.connect(url);
    await migrateToLatest(first);
    await first.close();
    const second = await databases.connect(url);
    expect(await migrateToLatest(second)).toEqual([]);
  });

  it("enforce the schema's constraints on both engines", async () => {
    const db = await databases.open();
    const now = 1_700_000_000_000;
    const user = { uuid: "u1", name: "alice", email: null, password_hash: null, created_at: now, updated_at: now };
    await expect(db.kysely.insertInto("users").values({ ...user, state: "frozen" as "active" }).execute()).rejects.toThrow();
    await db.kysely.insertInto("users").values({ ...user, state: "active" }).execute();
    await expect(db.kysely.insertInto("users").values({ ...user, uuid: "u2", state: "active" }).execute()).rejects.toThrow();
    // Foreign keys are on (SQLite has them off unless asked).
    await expect(
      db.kysely.insertInto("tokens").values({ token_hash: "h", user_uuid: "nobody", issued_at: now, expires_at: now, revoked_at: null }).execute(),
    ).rejects.toThrow();
    await db.kysely.insertInto("quota_resources").values({ name: "r", description: "", unit: "count", default_limit: 1 }).execute();
    const holding = { user_uuid: "u1", resource: "r", quota_limit: null, usage: 0, pending_increase: 0, pending_decrease: 0 };
    await expect(db.kysely.insertInto("quota_holdings").values({ ...holding, usage: -1 }).execute()).rejects.toThrow();
    await db.kysely.insertInto("quota_holdings").values(holding).execute();
    // Deleting the user takes their holdings along.
    await db.kysely.deleteFrom("users").where("uuid", "=", "u1").execute();
    const count = await db.kysely.selectFrom("quota_holdings").select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(0);
  });

  it("store times and quantities beyond 2^32 exactly, read back as numbers", async () => {
    const db = await databases.open();
    const big = 2 ** 53 - 1;
    await db.kysely.insertInto("quota_resources").values({ name: "big", description: "", unit: "bytes", default_limit: big }).execute();
    const row = await db.kysely.selectFrom("quota_resources").select("default_limit").executeTakeFirstOrThrow();
    expect(row.default_limit).toBe(big);
  });

  it("0005 backfills what existing versions were charged: their size", async () => {
    const db = await databases.connect(await databases.freshUrl());
    const { error } = await migratorFor(db).migrateTo("0004-compute");
    expect(error).toBeUndefined();
    const now = 1_700_000_000_000;
    await sql`insert into pithos_accounts (account, created_at, modified_at) values ('a', ${now}, ${now})`.execute(db.kysely);
    await sql`insert into pithos_containers (account, name, created_at, modified_at) values ('a', 'c', ${now}, ${now})`.execute(db.kysely);
    await sql`insert into pithos_objects (container_id, path, uuid) select id, 'o', 'u' from pithos_containers`.execute(db.kysely);
    for (const [state, size, ended] of [["history", 7, now], ["current", 12_345, null]] as const) {
      await sql`insert into pithos_versions (object_id, state, map_name, size_bytes, content_hash, etag, content_type, modified_at, modified_by, ended_at)
        select id, ${state}, ${`m${size}`}, ${size}, 'h', 'e', 't', ${now}, 'a', ${ended} from pithos_objects`.execute(db.kysely);
    }
    await migrateToLatest(db);
    const rows = await db.kysely.selectFrom("pithos_versions").select(["size_bytes", "charged_bytes"]).orderBy("serial").execute();
    expect(rows).toEqual([
      { size_bytes: 7, charged_bytes: 7 },
      { size_bytes: 12_345, charged_bytes: 12_345 },
    ]);
  });

  it("0007 lets jobs attach and detach volumes, keeping every job, its id, the id counter and the one-queued rule", async () => {
    const db = await databases.connect(await databases.freshUrl());
    const { error } = await migratorFor(db).migrateTo("0006-volumes");
    expect(error).toBeUndefined();
    const now = 1_700_000_000_000;
    const server = "5e0c1a52-8f0e-4d7b-9a57-0d1b6a0c9e11";
    await sql`insert into compute_servers (id, user_uuid, name, flavor_id, vcpus, ram_mib, disk_gib, root_volume, vm_state, created_at, updated_at)
      values (${server}, 'u', 'vm', '1', 1, 512, 1, 'server-x', 'active', ${now}, ${now})`.execute(db.kysely);
    const job = async (action: string, state: string): Promise<number> => {
      const result = await sql<{ id: number }>`insert into compute_jobs (server_id, action, state, created_at, updated_at)
        values (${server}, ${action}, ${state}, ${now}, ${now}) returning id`.execute(db.kysely);
      return Number(result.rows[0]!.id);
    };
    await expect(job("attachVolume", "done")).rejects.toThrow();
    await job("create", "done");
    const withdrawn = await job("stop", "failed");
    await sql`delete from compute_jobs where id = ${withdrawn}`.execute(db.kysely); // its id is never reused
    await migrateToLatest(db);
    expect(await job("attachVolume", "queued")).toBeGreaterThan(withdrawn);
    expect((await db.kysely.selectFrom("compute_jobs").select(["id", "action"]).orderBy("id").execute()).map((row) => row.action)).toEqual(["create", "attachVolume"]);
    await expect(job("detachVolume", "queued")).rejects.toThrow(); // still one queued job per server
    await expect(job("fly", "done")).rejects.toThrow();
  });

  // SQLite: one process holds one handle per file (node:sqlite is synchronous, see
  // sqlite-dialect.ts); API nodes sharing a database are PostgreSQL.
  it.runIf(databases.engine === "postgres")("apply once when three nodes migrate one database at once", async () => {
    const url = await databases.freshUrl();
    const nodes = await Promise.all([databases.connect(url), databases.connect(url), databases.connect(url)]);
    const results = await Promise.all(nodes.map((db) => migrateToLatest(db)));
    expect(results.map((r) => r.length).sort()).toEqual([0, 0, migrationNames.length]);
  });
});

describe("latestMigration", () => {
  it("names the last migration", () => {
    expect(latestMigration).toBe("0007-compute-volume-jobs");
  });
});
