/** The object store answers at /v1 and at /v1.0 (both in /info's valid_api_versions); other versions are not routed (404). */
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { servePithos, type ServedPithos } from "./testing/server.ts";

describeEachEngine("object store API versions", (databases) => {
  let served: ServedPithos;
  beforeAll(async () => {
    served = await servePithos(await databases.open());
  });
  afterAll(async () => served?.close());

  it("/v1 and /v1.0 name the same account; another version is not found", async () => {
    const alice = await served.addUser("alice", "pw");
    const { token } = await served.login("alice", "pw");
    const base = `${served.baseUrl}/object-store`;
    const headers = { "x-auth-token": token };
    expect((await fetch(`${base}/v1/AUTH_${alice.uuid}/c`, { method: "PUT", headers })).status).toBe(201);
    expect((await fetch(`${base}/v1.0/AUTH_${alice.uuid}/c/o`, { method: "PUT", headers, body: "via v1.0" })).status).toBe(201);
    expect(await (await fetch(`${base}/v1/AUTH_${alice.uuid}/c/o`, { headers })).text()).toBe("via v1.0");
    const info = (await (await fetch(`${base}/info`)).json()) as { swift: { valid_api_versions: string[] } };
    expect(info.swift.valid_api_versions).toEqual(["v1", "v1.0"]);
    expect((await fetch(`${base}/v2/AUTH_${alice.uuid}/c/o`, { headers })).status).toBe(404);
  });
});
