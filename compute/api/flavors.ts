/**
 * /flavors (openstack-clients.md 3.2; Nova's flavors.py, flavor_manage.py, flavors_extraspecs.py).
 *
 *   GET /flavors, /flavors/detail   ?is_public=True|False|None (Python literals), minRam,
 *                                   minDisk, limit, marker; `server list` sends None
 *   GET /flavors/{id}               `server create --flavor name` tries the name here first,
 *                                   then lists /flavors and matches names itself
 *   GET /flavors/{id}/os-extra_specs[/{key}]   the SDK asks for every flavor listed with
 *                                   empty extra_specs: a 404 here fails `flavor list`
 *   POST /flavors, DELETE /flavors/{id}        admins only (`openstack flavor create|delete`)
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { ComputeError } from "../errors.ts";
import type { ComputeCaller, Flavor } from "../model.ts";
import { callerOf, param, type RouteContext } from "./context.ts";
import { badRequest } from "./faults.ts";
import { bodyMember, invalidField, nameLengthMax, queryNonNegativeInteger, queryPythonBoolean, queryValue, readString, rejectUnknownKeys, type JsonObject } from "./input.ts";
import { flavorDetail, flavorSummary } from "./views.ts";

/** Nova's osapi_max_limit, as for servers. */
export const flavorsPerPageMax = 1000;
/** Nova's flavor description limit (schemas/flavor_manage.py, 2.55). */
export const flavorDescriptionLengthMax = 65535;

function forbidden(rule: string): ComputeError {
  return new ComputeError("EFORBIDDEN", `Policy doesn't allow ${rule} to be performed.`);
}

async function listFlavors(context: RouteContext, caller: ComputeCaller, query: unknown): Promise<Flavor[]> {
  // Absent or True: public flavors; None: all the caller may see; False: the private ones of those.
  const isPublic = queryPythonBoolean(query, "is_public");
  let flavors = await context.compute.listFlavors(caller, { includePrivate: isPublic === null || isPublic === false });
  if (isPublic === false) flavors = flavors.filter((flavor) => !flavor.isPublic);
  const minRam = queryNonNegativeInteger(query, "minRam");
  if (minRam !== undefined) flavors = flavors.filter((flavor) => flavor.ramMiB >= minRam);
  const minDisk = queryNonNegativeInteger(query, "minDisk");
  if (minDisk !== undefined) flavors = flavors.filter((flavor) => flavor.diskGiB >= minDisk);
  const marker = queryValue(query, "marker");
  if (marker !== undefined) {
    const index = flavors.findIndex((flavor) => flavor.id === marker);
    if (index < 0) throw badRequest(`marker [${marker.slice(0, 80)}] not found`);
    flavors = flavors.slice(index + 1);
  }
  const limit = queryNonNegativeInteger(query, "limit");
  return flavors.slice(0, limit === undefined || limit === 0 ? flavorsPerPageMax : Math.min(limit, flavorsPerPageMax));
}

const createKeys = new Set(["name", "id", "ram", "vcpus", "disk", "swap", "OS-FLV-EXT-DATA:ephemeral", "rxtx_factor", "os-flavor-access:is_public", "description"]);

function readCount(flavor: JsonObject, key: string, options: { required: boolean; min: number }): number | undefined {
  const value = flavor[key];
  if (value === undefined || (value === "" && !options.required)) {
    if (options.required) throw invalidField(`flavor.${key}`, value, `'${key}' is a required property`);
    return undefined;
  }
  const number = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < options.min) {
    throw invalidField(`flavor.${key}`, value, `It must be an integer of at least ${options.min}`);
  }
  return number;
}

function parseCreateFlavor(body: unknown): Parameters<RouteContext["compute"]["createFlavor"]>[0] {
  const flavor = bodyMember(body, "flavor");
  rejectUnknownKeys(flavor, createKeys);
  // What we cannot honour is refused, not dropped: no swap, ephemeral disks or bandwidth caps.
  for (const key of ["swap", "OS-FLV-EXT-DATA:ephemeral"]) {
    if (readCount(flavor, key, { required: false, min: 0 }) ?? 0) throw badRequest(`${key} is not supported: flavors here have only a root disk.`);
  }
  if (flavor["rxtx_factor"] !== undefined && flavor["rxtx_factor"] !== 1 && flavor["rxtx_factor"] !== 1.0) throw badRequest("rxtx_factor is not supported.");
  const isPublic = flavor["os-flavor-access:is_public"];
  if (isPublic !== undefined && typeof isPublic !== "boolean") throw invalidField("flavor.os-flavor-access:is_public", isPublic, "It must be a boolean");
  const id = flavor["id"] === undefined || flavor["id"] === null ? undefined : readString(flavor, "id", "flavor.id", { minLength: 1, maxLength: nameLengthMax, name: true });
  const description = flavor["description"] === null ? null : (readString(flavor, "description", "flavor.description", { maxLength: flavorDescriptionLengthMax }) ?? null);
  return {
    // Nova makes a uuid when the client names no id (nova/compute/flavors.py create).
    id: id ?? randomUUID(),
    name: readString(flavor, "name", "flavor.name", { required: true, minLength: 1, maxLength: nameLengthMax, name: true }),
    vcpus: readCount(flavor, "vcpus", { required: true, min: 1 })!,
    ramMiB: readCount(flavor, "ram", { required: true, min: 1 })!,
    diskGiB: readCount(flavor, "disk", { required: true, min: 0 })!,
    isPublic: isPublic ?? true,
    description,
  };
}

export function flavorRoutes(app: FastifyInstance, context: RouteContext): void {
  const { compute } = context;

  app.get("/flavors", async (request) => {
    const urls = context.urls(request);
    return { flavors: (await listFlavors(context, callerOf(request), request.query)).map((flavor) => flavorSummary(flavor, urls)) };
  });
  app.get("/flavors/detail", async (request) => {
    const urls = context.urls(request);
    return { flavors: (await listFlavors(context, callerOf(request), request.query)).map((flavor) => flavorDetail(flavor, urls)) };
  });
  app.get("/flavors/:id", async (request) => {
    const flavor = await compute.getFlavor(callerOf(request), param(request, "id"));
    return { flavor: flavorDetail(flavor, context.urls(request)) };
  });
  app.get("/flavors/:id/os-extra_specs", async (request) => {
    const flavor = await compute.getFlavor(callerOf(request), param(request, "id"));
    return { extra_specs: flavor.extraSpecs };
  });
  app.get("/flavors/:id/os-extra_specs/:key", async (request) => {
    const flavor = await compute.getFlavor(callerOf(request), param(request, "id"));
    const key = param(request, "key");
    const value = Object.hasOwn(flavor.extraSpecs, key) ? flavor.extraSpecs[key] : undefined;
    if (value === undefined) throw new ComputeError("ENOT_FOUND", `Flavor ${flavor.id} has no extra specs with key ${key}.`);
    return { [key]: value };
  });

  app.post("/flavors", async (request) => {
    if (!callerOf(request).isAdmin) throw forbidden("os_compute_api:os-flavor-manage:create");
    const flavor = await compute.createFlavor(parseCreateFlavor(request.body));
    return { flavor: flavorDetail(flavor, context.urls(request)) };
  });
  app.delete("/flavors/:id", async (request, reply) => {
    if (!callerOf(request).isAdmin) throw forbidden("os_compute_api:os-flavor-manage:delete");
    await compute.deleteFlavor(param(request, "id"));
    return reply.code(202).send();
  });
}
