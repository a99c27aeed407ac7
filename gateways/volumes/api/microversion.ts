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
import * as shared from "../../../identity/microversion.ts";
import { VolumeError } from "../errors.ts";

export const volumeMicroversions: shared.MicroversionRange = {
  serviceType: "volume",
  legacyHeader: "x-openstack-volume-api-version",
  echoLegacy: false,
  major: 3,
  minMinor: 0,
  maxMinor: 0,
};

export const microversionMin = shared.versionText(volumeMicroversions, volumeMicroversions.minMinor);
export const microversionMax = shared.versionText(volumeMicroversions, volumeMicroversions.maxMinor);

/** The minor version to serve: VolumeError 400 for a malformed version, 406 outside the range. */
export function negotiateMicroversion(request: FastifyRequest): number {
  const outcome = shared.negotiateMicroversion(volumeMicroversions, shared.requestedMicroversion(request, volumeMicroversions));
  if (typeof outcome !== "number") throw new VolumeError(outcome.code, outcome.message);
  return outcome;
}

export function echoMicroversion(reply: FastifyReply, minor: number): void {
  shared.echoMicroversion(reply, volumeMicroversions, minor);
}
