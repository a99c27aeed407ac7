/** `okeanos quota …` as an administrator runs it: real CLI processes over a temporary SQLite database. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exitCodes } from "./output.ts";
import { ok, okJson, runCli } from "./testing/run-cli.ts";

describe("okeanos quota", () => {
  let dir: string;
  let okeanos: (...args: string[]) => ReturnType<typeof runCli>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-quota-cli-"));
    const env = { OKEANOS_DATABASE: `sqlite:${join(dir, "okeanos.db")}` };
    okeanos = (...args) => runCli(args, { cwd: dir, env });
    await ok(okeanos("user", "create", "alice"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("list shows the standard resources with units and defaults", async () => {
    const resources = await okJson<Array<{ name: string; unit: string; defaultLimit: number }>>(okeanos("--json", "quota", "list"));
    expect(resources.map((r) => r.name)).toEqual(["compute.cpu", "compute.ram", "compute.vm", "object-store.diskspace", "volume.disk"]);
    expect(resources.find((r) => r.name === "volume.disk")).toMatchObject({ unit: "bytes", defaultLimit: 40 * 1024 ** 3 });
    expect(await ok(okeanos("quota", "list"))).toMatch(/^RESOURCE\s+UNIT\s+DEFAULT\s+DESCRIPTION\n/);
  });

  it("set then show: limits (counts and sizes), usage and pending; default restores", async () => {
    expect(await ok(okeanos("quota", "set", "alice", "compute.vm", "4"))).toBe("alice: compute.vm limit 4\n");
    await ok(okeanos("quota", "set", "alice", "volume.disk", "10G"));
    const shown = await okJson<{ name: string; quotas: Array<Record<string, unknown>> }>(okeanos("--json", "quota", "show", "alice"));
    expect(shown.name).toBe("alice");
    expect(shown.quotas.find((q) => q["resource"] === "compute.vm")).toEqual({
      resource: "compute.vm", unit: "count", limit: 4, limitIsDefault: false, usage: 0, pendingIncrease: 0, pendingDecrease: 0,
    });
    expect(shown.quotas.find((q) => q["resource"] === "volume.disk")).toMatchObject({ limit: 10 * 1024 ** 3 });
    const text = await ok(okeanos("quota", "show", "alice"));
    expect(text).toMatch(/^RESOURCE\s+LIMIT\s+USAGE\s+PENDING\+\s+PENDING-\n/);
    expect(text).toMatch(/^volume\.disk\s+10737418240 \(10 GiB\)\s+0\s+0\s+0$/m);
    await ok(okeanos("quota", "set", "alice", "compute.vm", "default"));
    const back = await okJson<{ quotas: Array<Record<string, unknown>> }>(okeanos("--json", "quota", "show", "alice"));
    expect(back.quotas.find((q) => q["resource"] === "compute.vm")).toMatchObject({ limit: 2, limitIsDefault: true });
  });

  it("unknown user or resource exit with the database's ENOT_FOUND code, a bad limit with usage", async () => {
    const noUser = await okeanos("quota", "show", "bob");
    expect(noUser.code).toBe(exitCodes.database.ENOT_FOUND);
    expect(noUser.stderr).toBe("okeanos: no user bob\n");
    const noResource = await okeanos("quota", "set", "alice", "compute.gpu", "1");
    expect(noResource.code).toBe(exitCodes.database.ENOT_FOUND);
    expect(noResource.stderr).toBe("okeanos: no resource compute.gpu\n");
    expect((await okeanos("quota", "set", "alice", "compute.vm", "lots")).code).toBe(exitCodes.usage);
  });
});
