/**
 * /servers: list, detail, show, create, rename, delete, and the (empty) addresses
 * (openstack-clients.md 3.3; Nova's servers.py and schemas/servers.py).
 *
 * Listing answers `?name=` with a 200 and an empty list when nothing matches: that list,
 * not the GET's 404, is where osc-lib's "No server with a name or ID of 'x' exists." comes
 * from (3.3, pitfall 8).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ComputeError } from "../errors.ts";
import type { CreateServerRequest, ServerListFilter, ServerStatus } from "../model.ts";
import { callerOf, microversionOf, param, type RouteContext } from "./context.ts";
import { badRequest } from "./faults.ts";
import {
  bodyMember,
  invalidField,
  isJsonObject,
  nameLengthMax,
  queryNonNegativeInteger,
  queryTimestamp,
  queryValue,
  readMetadata,
  readReference,
  readString,
  rejectUnknownKeys,
  type JsonObject,
} from "./input.ts";
import { serverCreated, serverDetail, serverSelfUrl, serverSummary } from "./views.ts";

/** Nova's osapi_max_limit: the most servers one page holds, and the page without ?limit. */
export const serversPerPageMax = 1000;
/** Nova's schema: user_data is base64 of at most 65535 characters (a MEDIUMTEXT column's worth in 2.1). */
export const userDataBase64LengthMax = 65535;

const statuses: ReadonlySet<string> = new Set<ServerStatus>(["BUILD", "ACTIVE", "SHUTOFF", "REBOOT", "HARD_REBOOT", "RESIZE", "ERROR", "DELETED"]);

/** The list's filter, or null when it can match nothing (an unknown status: Nova before 2.38 answers []). */
function listFilter(query: unknown): { filter: ServerListFilter; limit: number } | null {
  const filter: ServerListFilter = {};
  // A regular expression for Nova; not checked here, because osc-lib sends the very name the
  // user typed (`server show "vm(1"`): the service decides what an invalid one matches.
  const name = queryValue(query, "name");
  if (name !== undefined) filter.name = name;
  const status = queryValue(query, "status");
  if (status !== undefined) {
    const upper = status.toUpperCase();
    if (!statuses.has(upper)) return null;
    filter.status = upper as ServerStatus;
  }
  const changesSince = queryTimestamp(query, "changes-since");
  if (changesSince !== undefined) filter.changesSince = changesSince;
  const marker = queryValue(query, "marker");
  if (marker !== undefined) filter.marker = marker;
  // Nova: 0 or absent means the page maximum; more than it is cut to it.
  const requested = queryNonNegativeInteger(query, "limit");
  const limit = requested === undefined || requested === 0 ? serversPerPageMax : Math.min(requested, serversPerPageMax);
  filter.limit = limit;
  return { filter, limit };
}

/** Nova's `servers_links` next link, when the page is full: same query, marker = last id. */
function nextLink(request: FastifyRequest, context: RouteContext, path: string, lastId: string, limit: number): Array<{ rel: string; href: string }> {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(request.query as Record<string, unknown>)) {
    if (key === "marker" || key === "limit") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
  }
  params.set("limit", String(limit));
  params.set("marker", lastId);
  return [{ rel: "next", href: `${context.urls(request).api}${path}?${params.toString()}` }];
}

/** Keys of `server` that Nova 2.1 accepts and we read, accept as no-ops, or refuse clearly. */
const createKeys = new Set([
  "name", "imageRef", "flavorRef", "key_name", "user_data", "metadata", "min_count", "max_count",
  "networks", "security_groups", "availability_zone", "config_drive", "OS-DCF:diskConfig",
  "adminPass", "accessIPv4", "accessIPv6", "personality", "return_reservation_id",
  "block_device_mapping", "block_device_mapping_v2",
]);
const createTopKeys = new Set(["server", "os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"]);

function readCount(server: JsonObject, key: string): number {
  const value = server[key];
  if (value === undefined) return 1;
  const number = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < 1) throw invalidField(key, value, "It must be a positive integer");
  return number;
}

function readUserData(server: JsonObject): Buffer | undefined {
  const text = readString(server, "user_data", "user_data", { maxLength: userDataBase64LengthMax });
  if (text === undefined) return undefined;
  // Python's b64decode after Nova strips whitespace: the alphabet, padded to whole quanta.
  const compact = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0) throw badRequest("User data needs to be valid base 64.");
  return Buffer.from(compact, "base64");
}

/** The parts of a create body we do not serve, each refused with what to do instead. */
function refuseUnsupported(server: JsonObject): void {
  if (server["block_device_mapping"] !== undefined || server["block_device_mapping_v2"] !== undefined) {
    throw badRequest("Booting from volumes (block_device_mapping) is not supported: boot from an image (imageRef).");
  }
  const networks = server["networks"];
  if (networks !== undefined && networks !== "auto" && networks !== "none" && !(Array.isArray(networks) && networks.length === 0)) {
    throw badRequest("Requesting networks is not supported: servers here have no network ports.");
  }
  const personality = server["personality"];
  if (personality !== undefined && !(Array.isArray(personality) && personality.length === 0)) {
    throw badRequest("File injection (personality) is not supported: pass files in user_data (cloud-init).");
  }
  if (server["adminPass"] !== undefined) throw badRequest("Setting adminPass is not supported: use key_name or user_data.");
  for (const key of ["accessIPv4", "accessIPv6"]) {
    if (server[key] !== undefined && server[key] !== "") throw badRequest(`${key} is not supported: servers here have no addresses.`);
  }
  if (server["return_reservation_id"] === true) throw badRequest("return_reservation_id is not supported: servers are created one at a time.");
  const zone = server["availability_zone"];
  if (zone !== undefined && zone !== "nova") throw badRequest(`The requested availability zone is not available: only "nova" exists.`);
  const securityGroups = server["security_groups"];
  if (securityGroups !== undefined && !(Array.isArray(securityGroups) && securityGroups.every((group) => isJsonObject(group) && typeof group["name"] === "string"))) {
    throw invalidField("security_groups", securityGroups, "It must be a list of {\"name\": …}");
  }
  const diskConfig = server["OS-DCF:diskConfig"];
  if (diskConfig !== undefined && diskConfig !== "AUTO" && diskConfig !== "MANUAL") throw invalidField("OS-DCF:diskConfig", diskConfig, "It must be one of AUTO, MANUAL");
}

export function parseCreateServer(body: unknown): CreateServerRequest {
  const server = bodyMember(body, "server");
  rejectUnknownKeys(body as JsonObject, createTopKeys);
  rejectUnknownKeys(server, createKeys);
  refuseUnsupported(server);
  const minCount = readCount(server, "min_count");
  const maxCount = readCount(server, "max_count");
  if (minCount > maxCount) throw badRequest("min_count must be <= max_count");
  if (maxCount > 1) throw badRequest("Creating more than one server per request is not supported: send one request per server.");
  const request: CreateServerRequest = {
    name: readString(server, "name", "name", { required: true, minLength: 1, maxLength: nameLengthMax, name: true }),
    imageRef: readReference(server, "imageRef", "imageRef"),
    flavorRef: readReference(server, "flavorRef", "flavorRef"),
  };
  const keyName = readString(server, "key_name", "key_name", { minLength: 1, maxLength: nameLengthMax });
  if (keyName !== undefined) request.keyName = keyName;
  const userData = readUserData(server);
  if (userData !== undefined) request.userData = userData;
  if (server["metadata"] !== undefined) request.metadata = readMetadata(server["metadata"], "metadata");
  return request;
}

const updateKeys = new Set(["name", "OS-DCF:diskConfig", "accessIPv4", "accessIPv6"]);

function parseUpdateServer(body: unknown): string | undefined {
  const server = bodyMember(body, "server");
  rejectUnknownKeys(server, updateKeys);
  refuseUnsupported(server);
  return readString(server, "name", "name", { minLength: 1, maxLength: nameLengthMax, name: true });
}

export function serverRoutes(app: FastifyInstance, context: RouteContext): void {
  const { compute } = context;

  const list = (detail: boolean) => async (request: FastifyRequest) => {
    const parsed = listFilter(request.query);
    if (parsed === null) return { servers: [] };
    const servers = await compute.listServers(callerOf(request), parsed.filter);
    const urls = context.urls(request);
    const body: Record<string, unknown> = {
      servers: servers.map((server) => (detail ? serverDetail(server, urls, microversionOf(request)) : serverSummary(server, urls))),
    };
    const last = servers[servers.length - 1];
    if (last !== undefined && servers.length >= parsed.limit) {
      body["servers_links"] = nextLink(request, context, detail ? "/servers/detail" : "/servers", last.id, parsed.limit);
    }
    return body;
  };
  app.get("/servers", list(false));
  app.get("/servers/detail", list(true));

  app.get("/servers/:id", async (request) => {
    const server = await compute.getServer(callerOf(request), param(request, "id"));
    return { server: serverDetail(server, context.urls(request), microversionOf(request)) };
  });

  app.post("/servers", async (request, reply) => {
    const server = await compute.createServer(callerOf(request), parseCreateServer(request.body));
    const urls = context.urls(request);
    return reply.code(202).header("location", serverSelfUrl(server, urls)).send({ server: serverCreated(server, urls) });
  });

  app.put("/servers/:id", async (request) => {
    const name = parseUpdateServer(request.body);
    const caller = callerOf(request);
    const id = param(request, "id");
    const server = name === undefined ? await compute.getServer(caller, id) : await compute.renameServer(caller, id, name);
    return { server: serverDetail(server, context.urls(request), microversionOf(request)) };
  });

  app.delete("/servers/:id", async (request, reply) => {
    await compute.deleteServer(callerOf(request), param(request, "id"));
    return reply.code(204).send();
  });

  // Nova's /ips: the addresses by network; servers here have none.
  app.get("/servers/:id/ips", async (request) => {
    await compute.getServer(callerOf(request), param(request, "id"));
    return { addresses: {} };
  });
  app.get("/servers/:id/ips/:network", async (request) => {
    await compute.getServer(callerOf(request), param(request, "id"));
    throw new ComputeError("ENOT_FOUND", "Instance is not a member of specified network");
  });
}
