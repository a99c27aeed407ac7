import { expect, it } from "vitest";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith, seedUser, testResources } from "../testing/fixtures.ts";
import { ensureResources, getQuota, getQuotas, listResources, setLimit, setResourceDefaultLimit, standardResources } from "./quotas.ts";

const gib = 2 ** 30;
const nobody = "00000000-0000-4000-8000-000000000000";

describeEachEngine("quotas", (databases) => {
  it("list every registered resource with the default limit until one is set", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    expect(await ensureResources(db, testResources)).toEqual([]); // registered once
    expect((await ensureResources(db, standardResources)).sort()).toEqual(
      ["compute.cpu", "object-store.diskspace"], // the others were registered by seedUser
    );
    expect((await listResources(db)).map((r) => r.name)).toEqual([
      "compute.cpu",
      "compute.ram",
      "compute.vm",
      "object-store.diskspace",
      "volume.disk",
    ]);
    const blank = { usage: 0, pendingIncrease: 0, pendingDecrease: 0 };
    expect(await getQuota(db, alice.uuid, "compute.vm")).toEqual({
      resource: "compute.vm",
      unit: "count",
      limit: 2,
      limitIsDefault: true,
      ...blank,
    });
    await setLimit(db, alice.uuid, "compute.vm", 5);
    await setResourceDefaultLimit(db, "compute.ram", 4 * gib);
    const quotas = await getQuotas(db, alice.uuid);
    expect(quotas.map((q) => [q.resource, q.limit, q.limitIsDefault])).toEqual([
      // Registered from standardResources: their base quotas.
      ["compute.cpu", standardDefault("compute.cpu"), true],
      ["compute.ram", 4 * gib, true],
      ["compute.vm", 5, false],
      ["object-store.diskspace", standardDefault("object-store.diskspace"), true],
      ["volume.disk", 0, true],
    ]);
    await setLimit(db, alice.uuid, "compute.vm", null);
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ limit: 2, limitIsDefault: true });
  });

  it("refuse unknown users and resources, and bad limits", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    await rejectsWith(setLimit(db, nobody, "compute.vm", 1), "ENOT_FOUND");
    await rejectsWith(setLimit(db, alice.uuid, "no.such", 1), "ENOT_FOUND");
    await rejectsWith(setLimit(db, alice.uuid, "compute.vm", -1), "EINVALID");
    await rejectsWith(setLimit(db, alice.uuid, "compute.vm", 0.5), "EINVALID");
    await rejectsWith(getQuotas(db, nobody), "ENOT_FOUND");
    await rejectsWith(getQuota(db, alice.uuid, "no.such"), "ENOT_FOUND");
    await rejectsWith(setResourceDefaultLimit(db, "no.such", 1), "ENOT_FOUND");
    await rejectsWith(ensureResources(db, [{ name: "Bad Name", description: "", unit: "count", defaultLimit: 0 }]), "EINVALID");
  });
});

function standardDefault(name: string): number {
  const resource = standardResources.find((candidate) => candidate.name === name);
  if (resource === undefined) throw new Error(`${name} is not a standard resource`);
  return resource.defaultLimit;
}
