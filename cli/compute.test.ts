/**
 * `okeanos flavor …` and `okeanos server …` as an administrator runs them, without
 * `okeanos serve`: real CLI processes over a temporary file store and SQLite database. The CLI
 * records and queues (compute/README.md "Jobs"); nothing runs the jobs here, so servers stay
 * in BUILD and `--wait` can only time out — which is tested, with a short --timeout.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Flavor, Server } from "../compute/model.ts";
import { exitCodes } from "./output.ts";
import { ok, okJson, runCli, type CliResult } from "./testing/run-cli.ts";

/** Each command is a fresh Node process that opens the store and the database. */
const cliTimeoutMs = 120_000;

describe("okeanos flavor and server, without okeanos serve", () => {
  let dir: string;
  let okeanos: (...args: string[]) => Promise<CliResult>;
  let alice: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-compute-cli-"));
    const env = { OKEANOS_DATABASE: `sqlite:${join(dir, "okeanos.db")}`, OKEANOS_STORE: `file:${join(dir, "store")}`, OKEANOS_COMPUTE_DIR: join(dir, "compute") };
    okeanos = (...args) => runCli(args, { cwd: dir, env });
    await ok(okeanos("store", "init"));
    await ok(okeanos("volume", "create", "base", "--size", "1M"));
    alice = (await okJson<{ uuid: string }>(okeanos("--json", "user", "create", "alice"))).uuid;
    await ok(okeanos("user", "create", "bob"));
    // A registered image, as Plankton's API or a frozen volume makes one.
    await ok(okeanos("image", "create", "tiny-os", "--from-volume", "base", "--owner", "alice", "--public"));
  }, cliTimeoutMs);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("flavor create takes sizes with units or bare numbers; ids and names are unique; list; delete", async () => {
    const tiny = await ok(okeanos("flavor", "create", "m1.tiny", "--vcpus", "1", "--ram", "512M"));
    expect(tiny).toMatch(/^Flavor m1\.tiny created\nID\s+NAME\s+VCPUS\s+RAM\s+DISK\s+PUBLIC\n1\s+m1\.tiny\s+1\s+512 MiB\s+image size\s+yes\n$/);
    // Bare numbers: --ram in MiB, --disk in GiB; ids count on from the largest.
    const small = await okJson<Flavor>(okeanos("--json", "flavor", "create", "m1.small", "--vcpus", "2", "--ram", "1024", "--disk", "1"));
    expect(small).toMatchObject({ id: "2", name: "m1.small", vcpus: 2, ramMiB: 1024, diskGiB: 1, isPublic: true });
    const hidden = await okJson<Flavor>(okeanos("--json", "flavor", "create", "hidden", "--vcpus", "1", "--ram", "1G", "--disk", "2G", "--id", "x1", "--private"));
    expect(hidden).toMatchObject({ id: "x1", ramMiB: 1024, diskGiB: 2, isPublic: false });

    const sameName = await okeanos("flavor", "create", "m1.tiny", "--vcpus", "4", "--ram", "1G");
    expect(sameName.code).toBe(exitCodes.compute.ECONFLICT);
    expect(sameName.code).toBe(75);
    expect(sameName.stderr).toBe("okeanos: a flavor named m1.tiny exists (id 1)\n");
    const sameId = await okeanos("flavor", "create", "m1.other", "--vcpus", "1", "--ram", "1G", "--id", "2");
    expect(sameId.code).toBe(exitCodes.compute.ECONFLICT);
    expect(sameId.stderr).toBe("okeanos: flavor id 2 is taken (by m1.small)\n");
    for (const bad of [["--ram", "1000K"], ["--ram", "0"], ["--vcpus", "0"], ["--disk", "-1"]]) {
      const args = { "--vcpus": "1", "--ram": "1G", [bad[0]!]: bad[1]! };
      expect((await okeanos("flavor", "create", "bad", ...Object.entries(args).flat())).code).toBe(exitCodes.usage);
    }

    const listed = await okJson<Flavor[]>(okeanos("--json", "flavor", "list"));
    expect(listed.map((flavor) => flavor.name).sort()).toEqual(["hidden", "m1.small", "m1.tiny"]);
    expect(await ok(okeanos("flavor", "list"))).toMatch(/^x1\s+hidden\s+1\s+1 GiB\s+2 GiB\s+no$/m);

    expect(await ok(okeanos("flavor", "delete", "hidden"))).toBe("Flavor hidden (x1) deleted\n");
    const gone = await okeanos("flavor", "delete", "hidden");
    expect(gone.code).toBe(exitCodes.compute.ENOT_FOUND);
    expect(gone.stderr).toBe("okeanos: no flavor hidden (okeanos flavor list)\n");
  }, cliTimeoutMs);

  it("server create queues a build; show, list; stop refused while it builds; ambiguous names; delete queues", async () => {
    const created = await okJson<Server>(okeanos("--json", "server", "create", "vm1", "--image", "tiny-os", "--flavor", "m1.tiny", "--user", "alice", "--property", "role=web", "--property", "tier=1"));
    expect(created).toMatchObject({ name: "vm1", status: "BUILD", taskState: "spawning", userUuid: alice, flavorId: "1", vcpus: 1, ramMiB: 512, metadata: { role: "web", tier: "1" } });
    const text = await ok(okeanos("server", "show", "vm1"));
    expect(text).toMatch(/^status:\s+BUILD$/m);
    expect(text).toMatch(/^task:\s+spawning$/m);
    expect(text).toMatch(/^flavor:\s+1 \(1 vCPU, 512 MiB, disk image size\)$/m);
    expect((await okJson<Server[]>(okeanos("--json", "server", "list", "--user", "alice"))).map((one) => one.id)).toEqual([created.id]);
    expect(await okJson<Server[]>(okeanos("--json", "server", "list", "--user", "bob"))).toEqual([]);

    const stop = await okeanos("server", "stop", "vm1");
    expect(stop.code).toBe(exitCodes.compute.ECONFLICT);
    expect(stop.stderr).toMatch(/^okeanos: Cannot 'stop' instance .* while it is in task_state spawning\n$/);
    expect((await okeanos("server", "snapshot", "vm1", "snap")).code).toBe(exitCodes.compute.ECONFLICT);
    // Never started: an empty console, not an error.
    expect(await okJson<{ output: string }>(okeanos("--json", "server", "console", "vm1"))).toEqual({ output: "" });

    // Nova allows two servers of one name; the CLI then wants the id.
    const twin = await okJson<Server>(okeanos("--json", "server", "create", "vm1", "--image", "tiny-os", "--flavor", "m1.small", "--user", "alice"));
    const ambiguous = await okeanos("server", "show", "vm1");
    expect(ambiguous.code).toBe(exitCodes.compute.ECONFLICT);
    expect(ambiguous.stderr).toBe("okeanos: more than one server is named vm1: use its id\n");

    expect(await okJson(okeanos("--json", "server", "delete", twin.id))).toEqual({ id: twin.id, name: "vm1", deleted: false });
    expect(await okJson<Server>(okeanos("--json", "server", "show", twin.id))).toMatchObject({ status: "BUILD", taskState: "deleting" });
    // The build and the delete are jobs for okeanos serve: both servers are still there.
    expect(await okJson<Server[]>(okeanos("--json", "server", "list"))).toHaveLength(2);
  }, cliTimeoutMs);

  it("unknown servers, images, flavors, key pairs and users: the not-found exit codes", async () => {
    for (const args of [["show", "nosuch"], ["stop", "nosuch"], ["delete", "nosuch"], ["console", "nosuch"], ["show", "00000000-0000-4000-8000-000000000000"]]) {
      const missing = await okeanos("server", ...args);
      expect(missing.code, args.join(" ")).toBe(exitCodes.compute.ENOT_FOUND);
      expect(missing.code).toBe(74);
    }
    const create = (...args: string[]) => okeanos("server", "create", "vm9", "--image", "tiny-os", "--flavor", "m1.tiny", "--user", "alice", ...args);
    expect((await create("--image", "nope")).stderr).toBe("okeanos: no image nope that alice can use (okeanos image list --owner alice)\n");
    expect((await create("--image", "nope")).code).toBe(exitCodes.compute.ENOT_FOUND);
    expect((await create("--flavor", "m9.huge")).code).toBe(exitCodes.compute.ENOT_FOUND);
    expect((await create("--key-name", "laptop")).stderr).toBe("okeanos: alice has no key pair laptop\n");
    expect((await create("--user", "carol")).code).toBe(exitCodes.database.ENOT_FOUND);
    expect((await create("--property", "novalue")).code).toBe(exitCodes.usage);
    expect((await create("--user-data", join(dir, "missing.yaml"))).code).toBe(exitCodes.file);
  }, cliTimeoutMs);

  it("over quota: refused with exit 73, and no server is left behind", async () => {
    await ok(okeanos("quota", "set", "bob", "compute.cpu", "1"));
    const refused = await okeanos("server", "create", "big", "--image", "tiny-os", "--flavor", "m1.small", "--user", "bob");
    expect(refused.code).toBe(exitCodes.compute.EQUOTA);
    expect(refused.code).toBe(73);
    expect(refused.stderr).toMatch(/^okeanos: Quota exceeded for cores: Requested 2, but already used 0 of 1 cores\n$/);
    expect(await okJson<Server[]>(okeanos("--json", "server", "list", "--user", "bob"))).toEqual([]);
    const quotas = await okJson<{ quotas: Array<{ resource: string; usage: number; pendingIncrease: number }> }>(okeanos("--json", "quota", "show", "bob"));
    expect(quotas.quotas.find((quota) => quota.resource === "compute.cpu")).toMatchObject({ usage: 0, pendingIncrease: 0 });
  }, cliTimeoutMs);

  it("--wait gives up after --timeout with exit 79, asking whether okeanos serve runs; the job stays queued", async () => {
    const started = performance.now();
    const waited = await okeanos("server", "create", "vm2", "--image", "tiny-os", "--flavor", "m1.tiny", "--user", "bob", "--wait", "--timeout", "1s");
    expect(waited.code).toBe(exitCodes.compute.EHYPERVISOR);
    expect(waited.code).toBe(79);
    expect(waited.stderr).toBe("okeanos: server vm2 is still BUILD (spawning) after 1s: jobs run in okeanos serve — is it running? (the job stays queued)\n");
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(await okJson<Server>(okeanos("--json", "server", "show", "vm2"))).toMatchObject({ status: "BUILD", taskState: "spawning" });

    const gone = await okeanos("server", "delete", "vm2", "--wait", "--timeout", "1s");
    expect(gone.code).toBe(exitCodes.compute.EHYPERVISOR);
    expect(gone.stderr).toMatch(/^okeanos: server [0-9a-f-]{36} is still there after 1s: jobs run in okeanos serve — is it running\?/);
    expect((await okeanos("server", "stop", "vm2", "--wait", "--timeout", "soon")).code).toBe(exitCodes.usage);
  }, cliTimeoutMs);
});
