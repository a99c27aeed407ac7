/**
 * The JSON of servers, flavors and keypairs as Nova renders them at the versions we serve
 * (nova/api/openstack/compute/views/, openstack-clients.md 3.2–3.4). Field by field what the
 * clients read is in the notes; the rest is there so tools written against Nova find it.
 *
 * Links are absolute (pitfall 2): `self` under the versioned API, `bookmark` without the
 * version, as Nova does. An image's bookmark points at the image service (Glance v2), the
 * one place images are served.
 */
import { createHash } from "node:crypto";
import type { Flavor, Keypair, Server } from "../model.ts";

export interface ApiUrls {
  /** `{base}/compute/v2.1`: self links, Location headers. */
  api: string;
  /** `{base}/compute`: bookmark links, console URLs. */
  compute: string;
  /** `{base}/image`: an image's home (createImage's Location, image bookmarks). */
  image: string;
}

export interface Link {
  rel: string;
  href: string;
}

function links(urls: ApiUrls, collection: string, id: string): Link[] {
  const path = `${collection}/${encodeURIComponent(id)}`;
  return [
    { rel: "self", href: `${urls.api}/${path}` },
    { rel: "bookmark", href: `${urls.compute}/${path}` },
  ];
}

/** Nova's `created`/`updated`: ISO 8601 in UTC, whole seconds, `Z`. */
export function novaTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Nova's naive-datetime form for OS-SRV-USG and keypairs: `2026-11-24T04:51:10.000000`. */
export function novaNaiveTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000");
}

/** Statuses Nova shows `progress` for (views/servers.py _progress_statuses). */
const progressStatuses = new Set(["ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"]);
/** Statuses Nova shows `fault` for (views/servers.py _fault_statuses). */
const faultStatuses = new Set(["ERROR", "DELETED"]);
/** The one host every server runs on, for Nova's opaque per-project hostId. */
const hostName = "okeanos";

/** Nova's hostId: sha224(project + host), so servers of one project on one host compare equal. */
function hostId(server: Server): string {
  if (server.launchedAt === null) return "";
  return createHash("sha224").update(`${server.userUuid}${hostName}`).digest("hex");
}

export function serverSummary(server: Server, urls: ApiUrls): Record<string, unknown> {
  return { id: server.id, name: server.name, links: links(urls, "servers", server.id) };
}

/**
 * The full server (GET /servers/{id}, /servers/detail). Not shown: 2.3's
 * OS-EXT-SRV-ATTR:* (admin-only in Nova's policy), and addresses, which stay `{}` until
 * servers get networks (every entry would need `addr`: 3.3).
 */
export function serverDetail(server: Server, urls: ApiUrls, microversion: number): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: server.id,
    name: server.name,
    status: server.status,
    tenant_id: server.userUuid,
    user_id: server.userUuid,
    metadata: server.metadata,
    hostId: hostId(server),
    // Boot from volume shows "" (OSC prints "N/A (booted from volume)").
    image: server.imageId === null ? "" : { id: server.imageId, links: [{ rel: "bookmark", href: `${urls.image}/v2/images/${encodeURIComponent(server.imageId)}` }] },
    flavor: { id: server.flavorId, links: [{ rel: "bookmark", href: `${urls.compute}/flavors/${encodeURIComponent(server.flavorId)}` }] },
    created: novaTime(server.createdAt),
    updated: novaTime(server.updatedAt),
    addresses: {},
    accessIPv4: "",
    accessIPv6: "",
    key_name: server.keyName,
    config_drive: "",
    security_groups: [{ name: "default" }],
    "OS-DCF:diskConfig": "MANUAL",
    "OS-EXT-AZ:availability_zone": "nova",
    "OS-EXT-STS:vm_state": server.vmState,
    "OS-EXT-STS:task_state": server.taskState,
    "OS-EXT-STS:power_state": server.powerState,
    "OS-SRV-USG:launched_at": server.launchedAt === null ? null : novaNaiveTime(server.launchedAt),
    "OS-SRV-USG:terminated_at": server.terminatedAt === null ? null : novaNaiveTime(server.terminatedAt),
    // Nova's block device mappings' volumes; 2.3 adds delete_on_termination (false: an
    // attached volume outlives its server here, as in Nova unless asked at attach from 2.79).
    "os-extended-volumes:volumes_attached": server.volumesAttached.map((id) => (microversion >= 3 ? { id, delete_on_termination: false } : { id })),
    links: links(urls, "servers", server.id),
  };
  if (progressStatuses.has(server.status)) view["progress"] = server.progress;
  if (server.fault !== null && faultStatuses.has(server.status)) {
    view["fault"] = { code: server.fault.code, created: novaTime(server.fault.createdAt), message: server.fault.message };
  }
  if (microversion >= 9) view["locked"] = false;
  return view;
}

/** Create's 202 body: Nova's minimal server, without adminPass (we set no passwords). */
export function serverCreated(server: Server, urls: ApiUrls): Record<string, unknown> {
  return {
    id: server.id,
    links: links(urls, "servers", server.id),
    "OS-DCF:diskConfig": "MANUAL",
    security_groups: [{ name: "default" }],
  };
}

export function serverSelfUrl(server: Server, urls: ApiUrls): string {
  return `${urls.api}/servers/${encodeURIComponent(server.id)}`;
}

export function flavorSummary(flavor: Flavor, urls: ApiUrls): Record<string, unknown> {
  return { id: flavor.id, name: flavor.name, links: links(urls, "flavors", flavor.id) };
}

/**
 * The full flavor. `description` (Nova: 2.55) and `extra_specs` (2.61) are shown at every
 * version: clients ignore what they do not know, and a non-empty `extra_specs` here saves
 * the SDK one GET of os-extra_specs per flavor (3.2). Swap 0 is Nova's `""` before 2.75.
 */
export function flavorDetail(flavor: Flavor, urls: ApiUrls): Record<string, unknown> {
  return {
    id: flavor.id,
    name: flavor.name,
    ram: flavor.ramMiB,
    vcpus: flavor.vcpus,
    disk: flavor.diskGiB,
    swap: "",
    "OS-FLV-EXT-DATA:ephemeral": 0,
    "os-flavor-access:is_public": flavor.isPublic,
    "OS-FLV-DISABLED:disabled": flavor.disabled,
    rxtx_factor: 1.0,
    description: flavor.description,
    extra_specs: flavor.extraSpecs,
    links: links(urls, "flavors", flavor.id),
  };
}

/** A keypair in create's and list's form; `type` from 2.2. */
export function keypairView(keypair: Keypair & { privateKey?: string }, microversion: number, form: "create" | "list"): Record<string, unknown> {
  const view: Record<string, unknown> = { name: keypair.name, public_key: keypair.publicKey, fingerprint: keypair.fingerprint };
  if (form === "create") view["user_id"] = keypair.userUuid;
  if (keypair.privateKey !== undefined) view["private_key"] = keypair.privateKey;
  if (microversion >= 2) view["type"] = keypair.type;
  return view;
}

/** GET /os-keypairs/{name}: Nova's show form, with the row's bookkeeping fields. */
export function keypairShow(keypair: Keypair, microversion: number): Record<string, unknown> {
  return {
    ...keypairView(keypair, microversion, "list"),
    user_id: keypair.userUuid,
    created_at: novaNaiveTime(keypair.createdAt),
    updated_at: null,
    deleted: false,
    deleted_at: null,
  };
}
