/**
 * Version discovery (openstack-clients.md 3.1): the SDK GETs the catalog URL
 * `{base}/compute/v2.1` without a token and reads `version` (our maximum microversion) and
 * `min_version`; without them it silently sends no microversion at all. Nova answers the
 * unslashed URL with a 302 to `…/v2.1/`; a direct 200 works as well and saves a round trip.
 * The root `{"versions": […]}` is read only with an unversioned catalog URL; we serve it for
 * completeness, listing only v2.1 (there is no v2.0 here).
 */
import { microversionMax, microversionMin } from "./microversion.ts";

/** Nova's fixed date for v2.1 (nova/api/openstack/compute/versions.py). */
const v21Updated = "2013-07-23T11:33:21Z";

function v21(computeUrl: string): Record<string, unknown> {
  return {
    id: "v2.1",
    status: "CURRENT",
    version: microversionMax,
    min_version: microversionMin,
    updated: v21Updated,
    links: [{ rel: "self", href: `${computeUrl}/v2.1/` }],
  };
}

/** GET /compute/ */
export function versionsDocument(computeUrl: string): Record<string, unknown> {
  return { versions: [v21(computeUrl)] };
}

/** GET /compute/v2.1 and /compute/v2.1/ */
export function versionDocument(computeUrl: string): Record<string, unknown> {
  const version = v21(computeUrl);
  return {
    version: {
      ...version,
      links: [...(version["links"] as unknown[]), { rel: "describedby", type: "text/html", href: "https://docs.openstack.org/" }],
      "media-types": [{ base: "application/json", type: "application/vnd.openstack.compute+json;version=2.1" }],
    },
  };
}
