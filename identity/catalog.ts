/**
 * The service catalog every token carries, built for one user at one public base URL.
 * URL forms are the ones the real clients accept (openstack-clients.md 1.3):
 *
 *   identity      {base}/identity/v3
 *   image         {base}/image/v2             versioned: the SDK skips discovery
 *   compute       {base}/compute/v2.1         versioned: novaclient appends paths verbatim
 *   object-store  {base}/object-store/v1/AUTH_{project}   no trailing slash (swift's Account:)
 *   block-storage {base}/volume/v3/{project}   Cinder v3, listed twice as devstack does: as
 *   volumev3                                   `block-storage` (the SDK's type, openstacksdk
 *                                              `server add volume`) and `volumev3` (the type
 *                                              cinderclient asks for, OSC's `volume …`);
 *                                              keystoneauth matches either through
 *                                              os-service-types' aliases, an exact match first
 *
 * Every service lists a public, an internal and an admin endpoint at the same URL (one
 * process serves all three), in one region.
 */
import { createHash } from "node:crypto";

export const regionDefault = "RegionOne";

export interface CatalogService {
  type: string;
  name: string;
  /** The path under the public base URL; `{project}` is replaced by the project id. */
  path: string;
}

export const catalogServices: readonly CatalogService[] = [
  { type: "identity", name: "keystone", path: "/identity/v3" },
  { type: "image", name: "glance", path: "/image/v2" },
  { type: "compute", name: "nova", path: "/compute/v2.1" },
  { type: "object-store", name: "swift", path: "/object-store/v1/AUTH_{project}" },
  { type: "block-storage", name: "cinder", path: "/volume/v3/{project}" },
  { type: "volumev3", name: "cinderv3", path: "/volume/v3/{project}" },
];

const interfaces = ["public", "internal", "admin"] as const;

export interface V3Endpoint {
  id: string;
  interface: (typeof interfaces)[number];
  region: string;
  region_id: string;
  url: string;
}

export interface V3CatalogEntry {
  id: string;
  type: string;
  name: string;
  endpoints: V3Endpoint[];
}

/** Stable ids (the same on every node and restart), as keystone's are stable rows. */
function stableId(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 32);
}

export function serviceUrl(baseUrl: string, service: CatalogService, projectId: string): string {
  return `${baseUrl.replace(/\/+$/, "")}${service.path.replace("{project}", projectId)}`;
}

export function v3Catalog(baseUrl: string, projectId: string, region: string): V3CatalogEntry[] {
  return catalogServices.map((service) => ({
    id: stableId(service.type),
    type: service.type,
    name: service.name,
    endpoints: interfaces.map((anInterface) => ({
      id: stableId(service.type, anInterface, region),
      interface: anInterface,
      region,
      region_id: region,
      url: serviceUrl(baseUrl, service, projectId),
    })),
  }));
}

/** Keystone v2.0's form (also what Astakos answered, synnefo.md D.1). */
export function v2Catalog(baseUrl: string, projectId: string, region: string): unknown[] {
  return catalogServices.map((service) => {
    const url = serviceUrl(baseUrl, service, projectId);
    return {
      type: service.type,
      name: service.name,
      endpoints: [{ id: stableId(service.type, region), region, publicURL: url, internalURL: url, adminURL: url }],
      endpoints_links: [],
    };
  });
}
