/**
 * Cinder's version documents (cinder/api/versions.py, api/views/versions.py): the same list at
 * the unversioned root (`GET /volume/`, 300 Multiple Choices) and at `/volume/v3/` (200). Hrefs
 * are absolute, with our public base path (openstack-clients.md pitfall 2).
 */
import { microversionMax, microversionMin } from "./microversion.ts";

/** When the served range last changed (Cinder's UPDATED). */
export const versionUpdated = "2026-01-01T00:00:00Z";

export function versionsDocument(volumeUrl: string): { versions: unknown[] } {
  return {
    versions: [
      {
        id: "v3.0",
        status: "CURRENT",
        version: microversionMax,
        min_version: microversionMin,
        updated: versionUpdated,
        links: [
          { rel: "describedby", type: "text/html", href: "https://docs.openstack.org/" },
          { rel: "self", href: `${volumeUrl}/v3/` },
        ],
        "media-types": [{ base: "application/json", type: "application/vnd.openstack.volume+json;version=3" }],
      },
    ],
  };
}
