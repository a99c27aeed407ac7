/**
 * Nova's microversions (nova/api/openstack/api_version_request.py): the client asks for a
 * version in `OpenStack-API-Version: compute 2.x` (preferred) or the legacy
 * `X-OpenStack-Nova-API-Version: 2.x`; no header means the minimum, `latest` the maximum.
 * Every answer of the versioned API echoes the version used in both headers, with Vary.
 *
 * Why 2.10 (openstack-clients.md 3.1 "Advertise only the shapes you implement"): OSC's
 * `server …` commands pin 2.1; the SDK caps keypairs at 2.10, remote consoles at 2.8 and
 * servers at 2.73. Every change up to 2.10 is implemented here:
 *   2.2  keypair `type`; keypair create answers 201, delete 204
 *   2.3  extended server attributes (admin-only in Nova's policy; not shown: see views.ts)
 *   2.6  POST /servers/{id}/remote-consoles (the SDK's `console url show` uses it, at 2.8)
 *   2.8  the `mks` console protocol (refused: only VNC here)
 *   2.9  server `locked`
 *   2.10 keypairs' `user_id` (admin: someone else's keys)
 * The next ones would need what the model lacks: 2.19 a server description, 2.26 tags,
 * 2.36 the proxy APIs gone, 2.47 the embedded flavor (OSC then reads `original_name`).
 * `createImage` answers `{"image_id"}` from 2.45 (actions.ts), so without it the SDK reads
 * the Location header (3.6) — which we always send.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { ComputeError } from "../errors.ts";

/** Nova's v2.1 microversions all have major version 2; we carry the minor number. */
export const microversionMajor = 2;
export const microversionMinMinor = 1;
export const microversionMaxMinor = 10;

export const microversionMin = `${microversionMajor}.${microversionMinMinor}`;
export const microversionMax = `${microversionMajor}.${microversionMaxMinor}`;

/** Nova's format check: no leading zeros, major and minor decimal. */
const versionPattern = /^([1-9]\d*)\.(0|[1-9]\d*)$/;

const headerNew = "openstack-api-version";
const headerLegacy = "x-openstack-nova-api-version";
const serviceType = "compute";

function headerValues(request: FastifyRequest, name: string): string[] {
  const value = request.headers[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).flatMap((item) => item.split(","));
}

/**
 * The version the client asked for, as text: `OpenStack-API-Version` wins when it names
 * compute (it may list several services, `compute 2.10, image 2.5`), then the legacy header.
 */
export function requestedMicroversion(request: FastifyRequest): string | undefined {
  for (const entry of headerValues(request, headerNew)) {
    const [service, version, ...rest] = entry.trim().split(/\s+/);
    if (service?.toLowerCase() === serviceType && version !== undefined && rest.length === 0) return version;
  }
  const legacy = headerValues(request, headerLegacy).map((value) => value.trim()).filter((value) => value !== "");
  return legacy.length === 0 ? undefined : legacy[legacy.length - 1];
}

/** The minor version to serve: 400 for a malformed version, 406 outside [min, max]. */
export function negotiateMicroversion(requested: string | undefined): number {
  if (requested === undefined) return microversionMinMinor;
  if (requested.toLowerCase() === "latest") return microversionMaxMinor;
  const match = versionPattern.exec(requested);
  if (match === null) {
    throw new ComputeError("EBAD_REQUEST", `API Version String ${requested} is of invalid format. Must be of format MajorNum.MinorNum.`);
  }
  const major = Number(match[1]);
  const minor = Number(match[2]);
  if (major !== microversionMajor || minor < microversionMinMinor || minor > microversionMaxMinor) {
    throw new ComputeError("ENOT_ACCEPTABLE", `Version ${requested} is not supported by the API. Minimum is ${microversionMin} and maximum is ${microversionMax}.`);
  }
  return minor;
}

/** Both headers, so any client sees the version it got; Vary for caches. */
export function echoMicroversion(reply: FastifyReply, minor: number): void {
  const version = `${microversionMajor}.${minor}`;
  reply.header("openstack-api-version", `${serviceType} ${version}`);
  reply.header("x-openstack-nova-api-version", version);
  reply.header("vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version");
}
