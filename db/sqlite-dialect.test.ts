import { DatabaseSync } from "node:sqlite";
import { Kysely, sql } from "kysely";
import { describe, expect, it } from "vitest";
import { NodeSqliteDatabase, NodeSqliteDialect } from "./sqlite-dialect.ts";

interface Numbers {
  numbers: { n: number };
}

function numbersDatabase(count: number): Kysely<Numbers> {
  const database = new DatabaseSync(":memory:");
  database.exec("create table numbers (n integer primary key)");
  for (let n = 1; n <= count; n++) database.exec(`insert into numbers values (${n})`);
  return new Kysely<Numbers>({ dialect: new NodeSqliteDialect({ database }) });
}

describe("NodeSqliteDatabase statement cache", () => {
  it("hands out one prepared statement per SQL text, and another for other text", () => {
    const database = new NodeSqliteDatabase(new DatabaseSync(":memory:"));
    const first = database.prepare("select 1 as one");
    expect(database.prepare("select 1 as one")).toBe(first);
    expect(database.prepare("select 2 as two")).not.toBe(first);
    expect(first.all([])).toEqual([{ one: 1 }]);
    expect(first.all([])).toEqual([{ one: 1 }]);
  });

  it("does not reuse a statement that is mid-iteration: the same SQL prepared meanwhile gets its own", () => {
    // Kysely serialises its one connection (a query waits for a stream to end), so this is
    // the adapter's contract, driven directly.
    const sqlite = new DatabaseSync(":memory:");
    sqlite.exec("create table numbers (n integer primary key); insert into numbers values (1), (2), (3)");
    const database = new NodeSqliteDatabase(sqlite);
    const text = "select n from numbers where n > ? order by n";
    const streaming = database.prepare(text);
    const outer: unknown[] = [];
    const inner: unknown[][] = [];
    for (const row of streaming.iterate([0])) {
      outer.push(row);
      const again = database.prepare(text);
      expect(again).not.toBe(streaming);
      inner.push(again.all([1]));
    }
    expect(outer).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(inner).toEqual(Array.from({ length: 3 }, () => [{ n: 2 }, { n: 3 }]));
    // Finished (and an abandoned iteration, once returned): the cached statement is handed out again.
    const partial = streaming.iterate([0])[Symbol.iterator]();
    partial.next();
    partial.return?.();
    expect(database.prepare(text)).toBe(streaming);
    expect(streaming.all([2])).toEqual([{ n: 3 }]);
  });

  it("keeps statements valid across a schema change (SQLite re-prepares them)", async () => {
    const db = numbersDatabase(2);
    const count = async (): Promise<number> => Number((await sql<{ c: number }>`select count(*) as c from numbers`.execute(db)).rows[0]!.c);
    expect(await count()).toBe(2);
    await sql`alter table numbers add column label text`.execute(db);
    await sql`insert into numbers (n, label) values (3, 'three')`.execute(db);
    expect(await count()).toBe(3);
    await db.destroy();
  });

  it("stays bounded: a stream of distinct queries still runs correctly", async () => {
    const db = numbersDatabase(1);
    for (let k = 0; k < 600; k++) {
      const rows = (await sql<{ v: number }>`select ${sql.raw(String(k))} as v`.execute(db)).rows;
      expect(rows[0]!.v).toBe(k);
    }
    await db.destroy();
  });
});
