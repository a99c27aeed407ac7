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
import * as shared from "../../identity/microversion.ts";
import { ComputeError } from "../errors.ts";

export const computeMicroversions: shared.MicroversionRange = {
  serviceType: "compute",
  legacyHeader: "x-openstack-nova-api-version",
  echoLegacy: true,
  major: 2,
  minMinor: 1,
  maxMinor: 10,
};

export const microversionMinMinor = computeMicroversions.minMinor;
export const microversionMin = shared.versionText(computeMicroversions, computeMicroversions.minMinor);
export const microversionMax = shared.versionText(computeMicroversions, computeMicroversions.maxMinor);

/** The minor version to serve: ComputeError 400 for a malformed version, 406 outside the range. */
export function negotiateMicroversion(request: FastifyRequest): number {
  const outcome = shared.negotiateMicroversion(computeMicroversions, shared.requestedMicroversion(request, computeMicroversions));
  if (typeof outcome !== "number") throw new ComputeError(outcome.code, outcome.message);
  return outcome;
}

/** Both headers, so any client sees the version it got; Vary for caches. */
export function echoMicroversion(reply: FastifyReply, minor: number): void {
  shared.echoMicroversion(reply, computeMicroversions, minor);
}
