/**
 * The small read-only resources clients list before or beside volumes:
 *
 *   GET /limits                 absolute limits from identity's quotas (VolumeService.limits)
 *   GET /types, /types/{id},    one volume type, `__DEFAULT__` (Cinder's own default type
 *       /types/default          since Train): there is one kind of volume here
 *   GET /os-availability-zone   one zone, `nova`
 */
import type { FastifyInstance } from "fastify";
import { VolumeError } from "../errors.ts";
import { callerOf, param, type RouteContext } from "./context.ts";
import { availabilityZone, defaultTypeId, defaultTypeName } from "./views.ts";

export const defaultType = {
  id: defaultTypeId,
  name: defaultTypeName,
  description: "Default Volume Type",
  is_public: true,
  extra_specs: {},
  qos_specs_id: null,
  "os-volume-type-access:is_public": true,
};

export function miscRoutes(app: FastifyInstance, { volumes }: RouteContext): void {
  app.get("/limits", async (request) => ({ limits: { rate: [], absolute: await volumes.limits(callerOf(request)) } }));

  app.get("/types", async () => ({ volume_types: [defaultType] }));
  app.get("/types/:id", async (request) => {
    const id = param(request, "id");
    if (id !== defaultTypeId && id !== defaultTypeName && id !== "default") throw new VolumeError("ENOT_FOUND", `Volume type ${id.slice(0, 80)} could not be found.`);
    return { volume_type: defaultType };
  });
  app.get("/types/:id/extra_specs", async (request) => {
    const id = param(request, "id");
    if (id !== defaultTypeId) throw new VolumeError("ENOT_FOUND", `Volume type ${id.slice(0, 80)} could not be found.`);
    return { extra_specs: {} };
  });

  app.get("/os-availability-zone", async () => ({ availabilityZoneInfo: [{ zoneName: availabilityZone, zoneState: { available: true } }] }));
}
