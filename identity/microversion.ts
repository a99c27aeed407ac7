/**
 * OpenStack microversion negotiation (the API-WG's microversion guideline, as Nova's and
 * Cinder's api_version_request.py implement it), shared by every OpenStack API okeanos
 * serves. A client asks in `OpenStack-API-Version: <service-type> X.Y` (the header may name
 * several services, `compute 2.10, volume 3.0`) or in the service's legacy header; no header
 * means the minimum, `latest` the maximum, a malformed version is refused (400), one outside
 * the range too (406). Each API keeps its own range and error type: this module answers with
 * a typed refusal and the API turns it into its own fault body.
 */
import type { FastifyReply, FastifyRequest } from "fastify";

export interface MicroversionRange {
  /** The service type named in `OpenStack-API-Version` (compute, volume…). */
  serviceType: string;
  /** The service's pre-guideline header, lower case (x-openstack-nova-api-version…). */
  legacyHeader: string;
  /** Whether answers echo the version in the legacy header too (Nova does). */
  echoLegacy: boolean;
  major: number;
  minMinor: number;
  maxMinor: number;
}

export type MicroversionRefusal =
  | { code: "EBAD_REQUEST"; message: string }
  | { code: "ENOT_ACCEPTABLE"; message: string };

/** No leading zeros, major and minor decimal: the services' own format check. */
const versionPattern = /^([1-9]\d*)\.(0|[1-9]\d*)$/;

/** Long enough for any real version, short enough to keep an echoed error readable. */
const echoedVersionLengthMax = 40;

const guidelineHeader = "openstack-api-version";

export function versionText(range: MicroversionRange, minor: number): string {
  return `${range.major}.${minor}`;
}

function headerValues(request: FastifyRequest, name: string): string[] {
  const value = request.headers[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).flatMap((item) => item.split(","));
}

/** The version asked for, as text: the guideline header naming this service wins, then the legacy one. */
export function requestedMicroversion(request: FastifyRequest, range: MicroversionRange): string | undefined {
  for (const entry of headerValues(request, guidelineHeader)) {
    const [service, version, ...rest] = entry.trim().split(/\s+/);
    if (service?.toLowerCase() === range.serviceType && version !== undefined && rest.length === 0) return version;
  }
  const legacy = headerValues(request, range.legacyHeader)
    .map((value) => value.trim())
    .filter((value) => value !== "");
  return legacy.length === 0 ? undefined : legacy[legacy.length - 1];
}

/** The minor version to serve, or why the request's version is refused. */
export function negotiateMicroversion(range: MicroversionRange, requested: string | undefined): number | MicroversionRefusal {
  if (requested === undefined) return range.minMinor;
  if (requested.toLowerCase() === "latest") return range.maxMinor;
  const shown = requested.slice(0, echoedVersionLengthMax);
  const match = versionPattern.exec(requested);
  if (match === null) {
    return { code: "EBAD_REQUEST", message: `API Version String ${shown} is of invalid format. Must be of format MajorNum.MinorNum.` };
  }
  const major = Number(match[1]);
  const minor = Number(match[2]);
  if (major !== range.major || minor < range.minMinor || minor > range.maxMinor) {
    const bounds = `Minimum is ${versionText(range, range.minMinor)} and maximum is ${versionText(range, range.maxMinor)}.`;
    return { code: "ENOT_ACCEPTABLE", message: `Version ${shown} is not supported by the API. ${bounds}` };
  }
  return minor;
}

/** The version served, in the headers the client may read it from; Vary for caches. */
export function echoMicroversion(reply: FastifyReply, range: MicroversionRange, minor: number): void {
  const version = versionText(range, minor);
  reply.header(guidelineHeader, `${range.serviceType} ${version}`);
  if (!range.echoLegacy) {
    reply.header("vary", "OpenStack-API-Version");
    return;
  }
  reply.header(range.legacyHeader, version);
  reply.header("vary", `OpenStack-API-Version, ${legacyHeaderDisplayName(range.legacyHeader)}`);
}

/** x-openstack-nova-api-version → X-OpenStack-Nova-API-Version, as the services spell it. */
function legacyHeaderDisplayName(header: string): string {
  return header
    .split("-")
    .map((word) => (word === "openstack" ? "OpenStack" : word === "api" ? "API" : word.charAt(0).toUpperCase() + word.slice(1)))
    .join("-");
}
