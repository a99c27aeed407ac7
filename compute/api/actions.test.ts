/**
 * POST /servers/{id}/action and remote-consoles (openstack-clients.md 3.3, 3.5, 3.6).
 */
import { describe, expect, it } from "vitest";
import { computeHarness, expectFault, type ComputeHarness } from "./testing/harness.ts";

const api = "/compute/v2.1";

async function activeServer(h: ComputeHarness): Promise<string> {
  const answer = await h.request("POST", `${api}/servers`, { json: { server: { name: "vm1", imageRef: "img", flavorRef: "1" } } });
  const { id } = (answer.json() as { server: { id: string } }).server;
  h.fake.activate(id);
  return id;
}

function lastAction(h: ComputeHarness): unknown {
  return h.fake.calls.filter((call) => call.method === "serverAction").at(-1)?.args[2];
}

describe("server actions", () => {
  it("queues os-stop, os-start, reboot and resize with 202 and no body", async () => {
    const h = await computeHarness();
    const id = await activeServer(h);
    const cases: Array<[unknown, unknown]> = [
      [{ "os-stop": null }, { kind: "stop" }],
      [{ "os-start": null }, { kind: "start" }],
      [{ reboot: { type: "SOFT" } }, { kind: "reboot", hard: false }],
      [{ reboot: { type: "hard" } }, { kind: "reboot", hard: true }],
      [{ resize: { flavorRef: "2" } }, { kind: "resize", flavorRef: "2" }],
      [{ resize: { flavorRef: 2, "OS-DCF:diskConfig": "AUTO" } }, { kind: "resize", flavorRef: "2" }],
    ];
    for (const [body, action] of cases) {
      // The fake refuses to start a running server or stop a stopped one.
      h.fake.activate(id);
      if ((action as { kind: string }).kind === "start") h.fake.servers.get(id)!.vmState = "stopped";
      const answer = await h.request("POST", `${api}/servers/${id}/action`, { json: body });
      expect(answer.statusCode, answer.body).toBe(202);
      expect(answer.body).toBe("");
      expect(lastAction(h)).toEqual(action);
    }
  });

  it("answers the service's conflict with 409 conflictingRequest", async () => {
    const h = await computeHarness();
    const id = await activeServer(h);
    const message = expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { "os-start": null } }), 409, "conflictingRequest");
    expect(message).toContain("Cannot 'start'");
  });

  it("answers createImage with 202 and a Location in the image service at 2.1 and at our maximum", async () => {
    const h = await computeHarness();
    const id = await activeServer(h);
    for (const version of ["2.1", "2.10"]) {
      const answer = await h.request("POST", `${api}/servers/${id}/action`, { json: { createImage: { name: "snap1", metadata: { k: "v" } } }, headers: { "x-openstack-nova-api-version": version, accept: "" } });
      expect(answer.statusCode).toBe(202);
      // {"image_id"} only from 2.45, which we do not advertise: the SDK reads the Location (3.6).
      expect(answer.body).toBe("");
      expect(answer.headers["location"]).toMatch(/^http:\/\/cloud\.test:8080\/image\/v2\/images\/[0-9a-f-]{36}$/);
      expect(lastAction(h)).toEqual({ kind: "createImage", name: "snap1", metadata: { k: "v" } });
    }
    expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { createImage: {} } }), 400, "badRequest");
    expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { createImage: { name: "s", metadata: [] } } }), 400, "badRequest");
  });

  it("answers os-getVNCConsole with the console websocket URL", async () => {
    const h = await computeHarness();
    const id = await activeServer(h);
    const answer = await h.request("POST", `${api}/servers/${id}/action`, { json: { "os-getVNCConsole": { type: "novnc" } } });
    expect(answer.statusCode).toBe(200);
    const { console } = answer.json() as { console: { type: string; url: string } };
    expect(console.type).toBe("novnc");
    expect(console.url).toMatch(/^http:\/\/cloud\.test:8080\/compute\/console\/[0-9a-f-]{36}$/);
    expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { "os-getVNCConsole": { type: "xvpvnc" } } }), 400, "badRequest");
    expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { "os-getVNCConsole": {} } }), 400, "badRequest");
  });

  it("answers os-getConsoleOutput with the log's tail, control characters removed", async () => {
    const h = await computeHarness();
    const id = await activeServer(h);
    const all = await h.request("POST", `${api}/servers/${id}/action`, { json: { "os-getConsoleOutput": {} } });
    expect(all.json()).toEqual({ output: "boot ok\r\nlogin: [0m" });
    for (const [length, lines] of [[1, 1], ["1", 1], [null, undefined], [-1, undefined]] as const) {
      expect((await h.request("POST", `${api}/servers/${id}/action`, { json: { "os-getConsoleOutput": { length } } })).statusCode).toBe(200);
      expect(h.fake.calls.at(-1)!.args[2]).toBe(lines);
    }
    for (const length of [-2, "x", 1.5, {}]) {
      expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { "os-getConsoleOutput": { length } } }), 400, "badRequest");
    }
  });

  it("refuses unknown actions with Nova's 400, Nova actions we lack with 501, and malformed bodies with 400", async () => {
    const h = await computeHarness();
    const id = await activeServer(h);
    expect(expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { fly: null } }), 400, "badRequest")).toBe("There is no such action: fly");
    expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { rebuild: { imageRef: "x" } } }), 501, "notImplemented");
    expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json: { confirmResize: null } }), 400, "badRequest");
    for (const json of [{}, { "os-start": null, "os-stop": null }, [], { reboot: null }, { reboot: { type: "MEDIUM" } }, { reboot: {} }, { resize: {} }, { resize: { flavorRef: "2", x: 1 } }]) {
      expectFault(await h.request("POST", `${api}/servers/${id}/action`, { json }), 400, "badRequest");
    }
    expectFault(await h.request("POST", `${api}/servers/nosuch/action`, { json: { "os-stop": null } }), 404, "itemNotFound");
  });
});

describe("remote consoles", () => {
  it("is there from 2.6, as the SDK uses it at 2.8 (3.5)", async () => {
    const h = await computeHarness();
    const id = await activeServer(h);
    const body = { remote_console: { protocol: "vnc", type: "novnc" } };
    expectFault(await h.request("POST", `${api}/servers/${id}/remote-consoles`, { json: body }), 404, "itemNotFound");
    const headers = { "openstack-api-version": "compute 2.8", "x-openstack-nova-api-version": "2.8" };
    const answer = await h.request("POST", `${api}/servers/${id}/remote-consoles`, { json: body, headers });
    expect(answer.statusCode).toBe(200);
    const { remote_console: remote } = answer.json() as { remote_console: Record<string, string> };
    expect(remote).toMatchObject({ protocol: "vnc", type: "novnc" });
    expect(remote["url"]).toMatch(/^http:\/\/cloud\.test:8080\/compute\/console\/[0-9a-f-]{36}$/);
    for (const remoteConsole of [{ protocol: "spice", type: "spice-html5" }, { protocol: "mks", type: "webmks" }, { protocol: "vnc", type: "xvpvnc" }, { protocol: "telnet", type: "novnc" }, { protocol: "vnc" }]) {
      expectFault(await h.request("POST", `${api}/servers/${id}/remote-consoles`, { json: { remote_console: remoteConsole }, headers }), 400, "badRequest");
    }
    expectFault(await h.request("POST", `${api}/servers/${id}/remote-consoles`, { json: { remote_console: { protocol: "mks", type: "webmks" } }, headers: { "x-openstack-nova-api-version": "2.6" } }), 400, "badRequest");
    h.fake.servers.get(id)!.vmState = "stopped";
    expectFault(await h.request("POST", `${api}/servers/${id}/remote-consoles`, { json: body, headers }), 409, "conflictingRequest");
  });
});
