import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { echoMicroversion, negotiateMicroversion, requestedMicroversion, type MicroversionRange } from "./microversion.ts";

const compute: MicroversionRange = { serviceType: "compute", legacyHeader: "x-openstack-nova-api-version", echoLegacy: true, major: 2, minMinor: 1, maxMinor: 10 };
const volume: MicroversionRange = { serviceType: "volume", legacyHeader: "x-openstack-volume-api-version", echoLegacy: false, major: 3, minMinor: 0, maxMinor: 0 };

/** One request through a real fastify, answering what was asked and what was negotiated. */
async function ask(range: MicroversionRange, headers: Record<string, string | string[]>) {
  const app = Fastify();
  app.get("/", async (request, reply) => {
    const requested = requestedMicroversion(request, range);
    const outcome = negotiateMicroversion(range, requested);
    if (typeof outcome === "number") echoMicroversion(reply, range, outcome);
    return { requested: requested ?? null, outcome };
  });
  const response = await app.inject({ method: "GET", url: "/", headers });
  await app.close();
  return { body: response.json() as { requested: string | null; outcome: number | { code: string; message: string } }, headers: response.headers };
}

describe("OpenStack microversions", () => {
  it("no header serves the minimum, latest the maximum", async () => {
    expect((await ask(compute, {})).body).toEqual({ requested: null, outcome: 1 });
    expect((await ask(compute, { "openstack-api-version": "compute latest" })).body.outcome).toBe(10);
    expect((await ask(volume, { "openstack-api-version": "volume LATEST" })).body.outcome).toBe(0);
  });

  it("picks this service's entry from a list naming several, and prefers it to the legacy header", async () => {
    const { body } = await ask(compute, { "openstack-api-version": "image 2.5, compute 2.6", "x-openstack-nova-api-version": "2.9" });
    expect(body).toEqual({ requested: "2.6", outcome: 6 });
    expect((await ask(compute, { "openstack-api-version": "volume 3.0", "x-openstack-nova-api-version": "2.9" })).body.outcome).toBe(9);
  });

  it("refuses a malformed version (400) and one out of range (406), echoing at most 40 characters", async () => {
    for (const version of ["2.01", "2", "x.y", "02.1", "2.1.0"]) {
      const { body } = await ask(compute, { "openstack-api-version": `compute ${version}` });
      expect(body.outcome, version).toMatchObject({ code: "EBAD_REQUEST" });
    }
    for (const version of ["2.0", "2.11", "3.1"]) {
      const { body } = await ask(compute, { "openstack-api-version": `compute ${version}` });
      expect(body.outcome).toEqual({ code: "ENOT_ACCEPTABLE", message: `Version ${version} is not supported by the API. Minimum is 2.1 and maximum is 2.10.` });
    }
    const long = `1${"0".repeat(200)}.0`;
    const { body } = await ask(volume, { "x-openstack-volume-api-version": long });
    expect(typeof body.outcome === "object" && body.outcome.message.includes("0".repeat(41))).toBe(false);
  });

  it("echoes the version served: both headers for Nova, only the guideline one for Cinder", async () => {
    const nova = await ask(compute, { "x-openstack-nova-api-version": "2.3" });
    expect(nova.headers["openstack-api-version"]).toBe("compute 2.3");
    expect(nova.headers["x-openstack-nova-api-version"]).toBe("2.3");
    expect(nova.headers["vary"]).toBe("OpenStack-API-Version, X-OpenStack-Nova-API-Version");
    const cinder = await ask(volume, {});
    expect(cinder.headers["openstack-api-version"]).toBe("volume 3.0");
    expect(cinder.headers["x-openstack-volume-api-version"]).toBeUndefined();
    expect(cinder.headers["vary"]).toBe("OpenStack-API-Version");
  });
});
