/**
 * Keystone's version documents. Clients follow the `self` href, so it is absolute and carries
 * our public path; a relative `v3/` served at /identity/v3 would resolve to /identity/v3/v3/
 * (openstack-clients.md 1.1).
 */
export function v3Version(baseUrl: string): unknown {
  return {
    id: "v3.14",
    status: "stable",
    updated: "2020-04-07T00:00:00Z",
    links: [{ rel: "self", href: `${baseUrl}/identity/v3/` }],
    "media-types": [{ base: "application/json", type: "application/vnd.openstack.identity-v3+json" }],
  };
}

export function v2Version(baseUrl: string): unknown {
  return {
    id: "v2.0",
    status: "deprecated",
    updated: "2016-08-04T00:00:00Z",
    links: [{ rel: "self", href: `${baseUrl}/identity/v2.0/` }],
    "media-types": [{ base: "application/json", type: "application/vnd.openstack.identity-v2.0+json" }],
  };
}

/** GET /identity: Keystone answers 300 Multiple Choices with every version. */
export function versionList(baseUrl: string): unknown {
  return { versions: { values: [v3Version(baseUrl), v2Version(baseUrl)] } };
}
