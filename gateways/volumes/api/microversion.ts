/**
 * Cinder's microversions (cinder/api/openstack/api_version_request.py): the client asks in
 * `OpenStack-API-Version: volume 3.x`; we also take `X-OpenStack-Volume-API-Version: 3.x`
 * (the shape Nova's legacy header has). No header means the minimum, `latest` the maximum,
 * a malformed one 400, one outside the range 406. Every answer of the versioned API echoes
 * the version used, with Vary.
 *
 * Why only 3.0: it is the version every change after it builds on, and the one OSC 6.0 pins
 * (`--os-volume-api-version` defaults to 3, cinderclient sends 3.0). The next versions add
 * APIs this subset does not serve (3.3 messages, 3.7 clusters, 3.8 manage, 3.9 backups…), and
 * advertising them would tell the SDK those exist. Everything 3.0 says about volumes,
 * snapshots, metadata, limits and types that docs/volumes.md lists as implemented is.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { VolumeError } from "../errors.ts";

export const microversionMajor = 3;
export const microversionMinMinor = 0;
export const microversionMaxMinor = 0;

export const microversionMin = `${microversionMajor}.${microversionMinMinor}`;
export const microversionMax = `${microversionMajor}.${microversionMaxMinor}`;

/** Cinder's format check: no leading zeros, major and minor decimal. */
const versionPattern = /^([1-9]\d*)\.(0|[1-9]\d*)$/;

const headerNew = "openstack-api-version";
const headerLegacy = "x-openstack-volume-api-version";
const serviceType = "volume";

function headerValues(request: FastifyRequest, name: string): string[] {
  const value = request.headers[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).flatMap((item) => item.split(","));
}

/** The version asked for: `OpenStack-API-Version` naming volume wins, then the legacy header. */
export function requestedMicroversion(request: FastifyRequest): string | undefined {
  for (const entry of headerValues(request, headerNew)) {
    const [service, version, ...rest] = entry.trim().split(/\s+/);
    if (service?.toLowerCase() === serviceType && version !== undefined && rest.length === 0) return version;
  }
  const legacy = headerValues(request, headerLegacy)
    .map((value) => value.trim())
    .filter((value) => value !== "");
  return legacy.length === 0 ? undefined : legacy[legacy.length - 1];
}

/** The minor version to serve: 400 for a malformed version, 406 outside [min, max]. */
export function negotiateMicroversion(requested: string | undefined): number {
  if (requested === undefined) return microversionMinMinor;
  if (requested.toLowerCase() === "latest") return microversionMaxMinor;
  const match = versionPattern.exec(requested);
  if (match === null) {
    throw new VolumeError("EBAD_REQUEST", `API Version String ${requested.slice(0, 40)} is of invalid format. Must be of format MajorNum.MinorNum.`);
  }
  const major = Number(match[1]);
  const minor = Number(match[2]);
  if (major !== microversionMajor || minor < microversionMinMinor || minor > microversionMaxMinor) {
    throw new VolumeError("ENOT_ACCEPTABLE", `Version ${requested} is not supported by the API. Minimum is ${microversionMin} and maximum is ${microversionMax}.`);
  }
  return minor;
}

export function echoMicroversion(reply: FastifyReply, minor: number): void {
  reply.header("openstack-api-version", `${serviceType} ${microversionMajor}.${minor}`);
  reply.header("vary", "OpenStack-API-Version");
}
