/**
 * The early connection (early-store.ts): what the command-line scan finds, when a connection
 * is started at all, and that the command gets it only for the same store and Ceph client.
 * The rados cases run on the test cluster (CI=true or OKEANOS_TEST_CEPH=1, else skipped
 * loudly); cli/rados.test.ts runs whole commands that go through it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { describeRados, testNamespace } from "../engine/blocker/rados/testing/target.ts";
import { closeUntakenStore, openStoreEarly, scanArgs, takeEarlyStore } from "./early-store.ts";

afterEach(async () => {
  await closeUntakenStore();
});

describe("scanArgs", () => {
  it("finds the first word that is not an option or a global option's value", () => {
    expect(scanArgs(["--store", "rados:p", "volume", "list"]).firstWord).toBe("volume");
    expect(scanArgs(["--json", "--ceph-id", "volume", "store", "list"]).firstWord).toBe("store");
    expect(scanArgs(["--store=rados:p", "volume"]).firstWord).toBe("volume");
    expect(scanArgs(["--", "volume"]).firstWord).toBeUndefined();
    expect(scanArgs([]).firstWord).toBeUndefined();
  });

  it("takes each global option's last value, in either spelling, wherever it is", () => {
    const { globalValues } = scanArgs(["--store", "a", "volume", "list", "--store=rados:b/ns", "--ceph-conf", "/c.conf", "--ceph-id=okeanos"]);
    expect(Object.fromEntries(globalValues)).toEqual({ "--store": "rados:b/ns", "--ceph-conf": "/c.conf", "--ceph-id": "okeanos" });
    // A trailing option without its value is commander's to refuse.
    expect(scanArgs(["volume", "list", "--store"]).globalValues.size).toBe(0);
    // After `--` everything is an argument.
    expect(scanArgs(["volume", "--", "--store", "x"]).globalValues.size).toBe(0);
  });

  it("notices a request for help", () => {
    expect(scanArgs(["volume", "snapshot", "--help"]).asksForHelp).toBe(true);
    expect(scanArgs(["-h"]).asksForHelp).toBe(true);
    expect(scanArgs(["volume", "list"]).asksForHelp).toBe(false);
  });
});

describe("openStoreEarly starts nothing", () => {
  const cases: Array<[string, string[], NodeJS.ProcessEnv]> = [
    ["for a file store", ["--store", "file:/tmp/x", "volume", "list"], {}],
    ["without a store (the default is a file store)", ["volume", "list"], {}],
    ["for a command that opens no store", ["--store", "rados:p", "user", "list"], {}],
    ["when help is asked for", ["--store", "rados:p", "volume", "list", "--help"], {}],
    ["for a malformed rados URI", ["--store", "rados:", "volume", "list"], {}],
  ];
  it.each(cases)("%s", async (_label, args, env) => {
    await openStoreEarly(args, env);
    expect(takeEarlyStore("rados:p", {}, env)).toBeUndefined();
    expect(await closeUntakenStore()).toBe("none");
  });
});

describeRados("openStoreEarly on the test cluster", (target) => {
  const env = { CEPH_CONF: target.cephConf };

  it("hands the command an open connection to the store it asks for, once", async () => {
    const uri = `rados:${target.pool}/${testNamespace("early")}`;
    await openStoreEarly(["--store", uri, "volume", "list"], env);
    // The same store and client as commander will parse them ($CEPH_CONF filling in --ceph-conf).
    const early = takeEarlyStore(uri, { cephConf: target.cephConf }, env);
    expect(early).toBeDefined();
    const store = await early!;
    try {
      await store.write("early-probe", 0, Buffer.from("hello"));
      expect((await store.read("early-probe", 0, 5)).toString()).toBe("hello");
    } finally {
      await store.close();
    }
    expect(takeEarlyStore(uri, { cephConf: target.cephConf }, env)).toBeUndefined();
    expect(await closeUntakenStore()).toBe("none");
  });

  it("keeps it from a command that asks for another store or client, and closes it", async () => {
    const uri = `rados:${target.pool}/${testNamespace("early-other")}`;
    await openStoreEarly(["--store", uri, "--ceph-id", "admin", "volume", "list"], env);
    expect(takeEarlyStore(uri, { cephConf: target.cephConf, cephId: "someone-else" }, env)).toBeUndefined();
    expect(await closeUntakenStore()).toBe("none");

    await openStoreEarly(["--store", uri, "volume", "list"], env);
    expect(takeEarlyStore(`${uri}-2`, {}, env)).toBeUndefined();
  });

  it("an untaken connection is closed once connected; one still connecting is reported pending", async () => {
    const uri = `rados:${target.pool}/${testNamespace("early-untaken")}`;
    await openStoreEarly(["--store", uri, "volume", "list"], env);
    await new Promise((resolve) => setTimeout(resolve, 3000)); // a live cluster answers well within this
    expect(await closeUntakenStore()).toBe("closed");

    // No event-loop turn since the connect was issued: its completion cannot have run yet.
    await openStoreEarly(["--store", uri, "volume", "list"], env);
    expect(await closeUntakenStore()).toBe("pending");
  }, 20_000);
});
