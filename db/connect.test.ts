import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "./connect.ts";
import { isDbError } from "./errors.ts";
import { migrateToLatest } from "./migrations/index.ts";
import { describeEachEngine } from "./testing/databases.ts";
import { inTransaction } from "./transaction.ts";

describe("openDatabase", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-connect-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses URLs of engines it does not speak", async () => {
    for (const url of ["mysql://localhost/x", "okeanos.db", "sqlite:"]) {
      const error = await openDatabase(url).catch((caught: unknown) => caught);
      expect(isDbError(error), `${url}: ${String(error)}`).toBe(true);
    }
  });

  it("opens a SQLite file with WAL, foreign keys and a busy timeout, creating its folder", async () => {
    const path = join(dir, "nested", "folder", "meta.db");
    const db = await openDatabase(`sqlite:${path}`, { busyTimeoutMs: 1234 });
    const pragma = async (name: string) => (await sql.raw<Record<string, unknown>>(`pragma ${name}`).execute(db.kysely)).rows[0];
    expect(await pragma("journal_mode")).toEqual({ journal_mode: "wal" });
    expect(await pragma("foreign_keys")).toEqual({ foreign_keys: 1 });
    expect(await pragma("busy_timeout")).toEqual({ timeout: 1234 });
    await db.close();
    await db.close(); // idempotent
  });

  it("accepts sqlite://PATH and sqlite::memory:", async () => {
    const file = await openDatabase(`sqlite://${join(dir, "slashes.db")}`);
    await migrateToLatest(file);
    await file.close();
    const memory = await openDatabase("sqlite::memory:");
    await migrateToLatest(memory);
    expect(await memory.kysely.selectFrom("users").selectAll().execute()).toEqual([]);
    await memory.close();
  });

  it("closes a database no query ever touched", async () => {
    const db = await openDatabase(`sqlite:${join(dir, "untouched.db")}`);
    await db.close();
  });

  it("hides a PostgreSQL password in the description", async () => {
    const db = await openDatabase("postgresql://okeanos:s3cret@db.invalid:5432/okeanos");
    expect(db.description).toBe("postgresql://okeanos:***@db.invalid:5432/okeanos");
    await db.close();
  });

  it("begins SQLite transactions IMMEDIATE: the write lock is held from the start", async () => {
    const path = join(dir, "immediate.db");
    const db = await openDatabase(`sqlite:${path}`);
    await migrateToLatest(db);
    const other = new DatabaseSync(path, { timeout: 0 });
    try {
      await db.kysely.transaction().execute(async (tx) => {
        await tx.selectFrom("users").selectAll().execute(); // a read only, so far
        expect(() => other.exec("begin immediate")).toThrow(/locked|busy/i);
      });
      other.exec("begin immediate");
      other.exec("rollback");
    } finally {
      other.close();
      await db.close();
    }
  });
});

describeEachEngine("the query layer's plumbing", (databases) => {
  it("returns rows, affected-row counts and RETURNING rows", async () => {
    const db = await databases.open();
    const resource = { description: "", unit: "count", default_limit: 0 };
    const inserted = await db.kysely
      .insertInto("quota_resources")
      .values([
        { name: "a", ...resource },
        { name: "b", ...resource },
      ])
      .executeTakeFirstOrThrow();
    expect(inserted.numInsertedOrUpdatedRows).toBe(2n);
    const returned = await db.kysely
      .updateTable("quota_resources")
      .set({ default_limit: 7 })
      .where("name", "=", "a")
      .returning(["name", "default_limit"])
      .execute();
    expect(returned).toEqual([{ name: "a", default_limit: 7 }]);
    const deleted = await db.kysely.deleteFrom("quota_resources").where("name", "=", "b").executeTakeFirst();
    expect(deleted.numDeletedRows).toBe(1n);
    // The adapter's iterate(). (PostgreSQL streams only with pg-cursor, which nothing needs yet.)
    if (databases.engine === "sqlite") {
      const streamed: string[] = [];
      for await (const row of db.kysely.selectFrom("quota_resources").select("name").stream()) streamed.push(row.name);
      expect(streamed).toEqual(["a"]);
    }
  });

  it("rolls a failed transaction back", async () => {
    const db = await databases.open();
    const failure = new Error("fail on purpose");
    await expect(
      inTransaction(db, async (tx) => {
        await tx.insertInto("quota_resources").values({ name: "gone", description: "", unit: "count", default_limit: 0 }).execute();
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await db.kysely.selectFrom("quota_resources").selectAll().execute()).toEqual([]);
  });
});
