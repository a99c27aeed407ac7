/**
 * /servers/{id}/os-volume_attachments as the clients use it (volume-attachments.ts header):
 * the SDK's POST with `device: null` (`openstack server add volume`), novaclient's list
 * (`server volume list`), the SDK's DELETE (`server remove volume`), and Nova's shapes and
 * faults; the server view's os-extended-volumes:volumes_attached.
 */
import { describe, expect, it } from "vitest";
import { computeHarness, expectFault, testUsers, type ComputeHarness } from "./testing/harness.ts";

const api = "/compute/v2.1";

async function activeServer(h: ComputeHarness, token: "alice" | "bob" = "alice"): Promise<string> {
  const created = await h.request("POST", `${api}/servers`, { token, json: { server: { name: "vm", imageRef: "img", flavorRef: "1" } } });
  const { id } = (created.json() as { server: { id: string } }).server;
  h.fake.activate(id);
  return id;
}

describe("os-volume_attachments", () => {
  it("attach answers 200 with Nova's body (id = the volume id); list, show, volumes_attached; detach 202", async () => {
    const h = await computeHarness();
    const server = await activeServer(h);
    const volume = h.fake.addVolume(testUsers.alice);
    const base = `${api}/servers/${server}/os-volume_attachments`;

    // The SDK (openstacksdk 0.101) sends device null when `--device` is not given.
    const attached = await h.request("POST", base, { json: { volumeAttachment: { volumeId: volume, device: null } } });
    expect(attached.statusCode, attached.body).toBe(200);
    const body = { id: volume, serverId: server, volumeId: volume, device: "/dev/vdc" };
    expect(attached.json()).toEqual({ volumeAttachment: body });
    expect(h.fake.calls.at(-1)).toMatchObject({ method: "attachVolume", args: [{ userUuid: testUsers.alice }, server, { volumeId: volume, device: null }] });

    // novaclient pins 2.1: `server volume list` reads id, device, serverId, volumeId.
    const list = await h.request("GET", base, { headers: { "x-openstack-nova-api-version": "2.1" } });
    expect(list.json()).toEqual({ volumeAttachments: [body] });
    expect((await h.request("GET", `${base}?offset=1`)).json()).toEqual({ volumeAttachments: [] });
    expect((await h.request("GET", `${base}/${volume}`)).json()).toEqual({ volumeAttachment: body });

    const show = (version: string) => h.request("GET", `${api}/servers/${server}`, { headers: { "x-openstack-nova-api-version": version } });
    expect(((await show("2.1")).json() as { server: Record<string, unknown> }).server["os-extended-volumes:volumes_attached"]).toEqual([{ id: volume }]);
    expect(((await show("2.3")).json() as { server: Record<string, unknown> }).server["os-extended-volumes:volumes_attached"]).toEqual([
      { id: volume, delete_on_termination: false },
    ]);

    const detached = await h.request("DELETE", `${base}/${volume}`);
    expect(detached.statusCode).toBe(202);
    expect(detached.body).toBe("");
    expect((await h.request("GET", base)).json()).toEqual({ volumeAttachments: [] });
    expect(expectFault(await h.request("GET", `${base}/${volume}`), 404, "itemNotFound")).toBe(`volume_id not found: ${volume}`);
    expect(expectFault(await h.request("DELETE", `${base}/${volume}`), 404, "itemNotFound")).toBe(`volume_id not found: ${volume}`);
  });

  it("takes a requested device and a volume id in any case, with or without dashes", async () => {
    const h = await computeHarness();
    const server = await activeServer(h);
    const volume = h.fake.addVolume(testUsers.alice);
    const answer = await h.request("POST", `${api}/servers/${server}/os-volume_attachments`, {
      json: { volumeAttachment: { volumeId: volume.replaceAll("-", "").toUpperCase(), device: "/dev/vdd" } },
    });
    expect(answer.statusCode, answer.body).toBe(200);
    expect(answer.json()).toMatchObject({ volumeAttachment: { volumeId: volume, device: "/dev/vdd" } });
  });

  it("refuses bad bodies with Nova's schema words (400)", async () => {
    const h = await computeHarness();
    const server = await activeServer(h);
    const volume = h.fake.addVolume(testUsers.alice);
    const post = (json: unknown) => h.request("POST", `${api}/servers/${server}/os-volume_attachments`, { json });
    const cases: Array<[unknown, RegExp]> = [
      [{}, /volumeAttachment. Value: None. 'volumeAttachment' is a required property/],
      [{ volumeAttachment: {} }, /'volumeId' is a required property/],
      [{ volumeAttachment: { volumeId: 7 } }, /7 is not of type 'string'/],
      [{ volumeAttachment: { volumeId: "not-a-uuid" } }, /is not a 'uuid'/],
      [{ volumeAttachment: { volumeId: volume, device: "vdb" } }, /does not match/],
      [{ volumeAttachment: { volumeId: volume, device: 5 } }, /is not of type 'string', 'null'/],
      // `tag` is 2.49, delete_on_termination 2.79: above what we serve.
      [{ volumeAttachment: { volumeId: volume, tag: "db" } }, /Additional properties are not allowed \('tag' was unexpected\)/],
      [{ volumeAttachment: { volumeId: volume, delete_on_termination: true } }, /'delete_on_termination' was unexpected/],
    ];
    for (const [json, message] of cases) expect(expectFault(await post(json), 400, "badRequest"), JSON.stringify(json)).toMatch(message);
    expect(h.fake.calls.filter((call) => call.method === "attachVolume")).toEqual([]);
  });

  it("404 for another's server or volume, 400 for an attached volume, 409 for a taken device or a server in a task", async () => {
    const h = await computeHarness();
    const server = await activeServer(h);
    const volume = h.fake.addVolume(testUsers.alice);
    const bobs = h.fake.addVolume(testUsers.bob);
    const base = `${api}/servers/${server}/os-volume_attachments`;
    const attach = (volumeId: string, extra: Record<string, unknown> = {}, token: "alice" | "bob" = "alice") =>
      h.request("POST", base, { token, json: { volumeAttachment: { volumeId, ...extra } } });

    expect(expectFault(await attach(bobs), 404, "itemNotFound")).toBe(`Volume ${bobs} could not be found.`);
    expectFault(await attach(volume, {}, "bob"), 404, "itemNotFound"); // bob does not see alice's server
    expectFault(await h.request("GET", base, { token: "bob" }), 404, "itemNotFound");
    expect((await attach(volume, { device: "/dev/vdc" })).statusCode).toBe(200);
    expect(expectFault(await attach(volume), 400, "badRequest")).toMatch(/Currently in 'in-use'/);
    const other = h.fake.addVolume(testUsers.alice);
    expect(expectFault(await attach(other, { device: "/dev/vdc" }), 409, "conflictingRequest")).toBe("The supplied device path (/dev/vdc) is in use.");
    h.fake.servers.get(server)!.taskState = "powering-off";
    expect(expectFault(await attach(other), 409, "conflictingRequest")).toMatch(/Cannot 'attach_volume' instance .* task_state powering-off/);
    // Without a token: 401 before anything.
    expectFault(await h.request("GET", base, { token: null }), 401, "unauthorized");
  });
});
