/**
 * POST /volumes/{id}/action (cinder/api/contrib/volume_actions.py, schemas/volume_actions.py):
 * the body names one action.
 *
 *   os-extend {new_size}         202; available, unattached volumes only (no 3.42)
 *   os-set_bootable {bootable}   200
 *   admin actions                403, as Cinder's policy answers a project member
 *   anything else                400 (Cinder answers an unknown action 404; a 400 says the
 *                                body is what is wrong, and names the action)
 *
 * os-attach, os-reserve, os-initialize_connection… are the Nova ↔ Cinder half of attaching:
 * here compute attaches through the volume service in-process, so they are not served.
 */
import type { FastifyInstance } from "fastify";
import { VolumeError } from "../errors.ts";
import { callerOf, param, type RouteContext } from "./context.ts";
import { badRequest, isJsonObject, quote, readBoolean, readSize, rejectUnknownKeys, type JsonObject } from "./input.ts";

export type VolumeAction = { kind: "extend"; newSizeGib: number } | { kind: "set_bootable"; bootable: boolean };

/** Cinder's admin actions: a project member is refused by policy. */
const adminActions = new Set(["os-reset_status", "os-force_delete", "os-force_detach", "os-migrate_volume", "os-migrate_volume_completion", "os-retype", "os-update_snapshot_status"]);

function actionMember(body: JsonObject, name: string): JsonObject {
  const member = body[name];
  if (!isJsonObject(member)) throw badRequest(`Invalid input for field/attribute ${name}. Value: ${quote(member)}. ${quote(member)} is not of type 'object'`);
  return member;
}

/** The action a body asks for; every other body is a 400 (or 403 for an admin action). */
export function parseAction(body: unknown): VolumeAction {
  if (!isJsonObject(body)) throw badRequest("Malformed request body");
  const names = Object.keys(body);
  if (names.length !== 1) throw badRequest(`Malformed request body: exactly one action is expected, got ${names.length}.`);
  const name = names[0]!;
  switch (name) {
    case "os-extend": {
      const member = actionMember(body, name);
      rejectUnknownKeys(member, new Set(["new_size"]), name);
      const newSizeGib = readSize(member, "new_size", "os-extend.new_size", { nullable: false });
      if (newSizeGib === undefined) throw badRequest("Invalid input for field/attribute os-extend. Value: {}. 'new_size' is a required property");
      return { kind: "extend", newSizeGib };
    }
    case "os-set_bootable": {
      const member = actionMember(body, name);
      rejectUnknownKeys(member, new Set(["bootable"]), name);
      const bootable = readBoolean(member, "bootable", "os-set_bootable.bootable");
      if (bootable === undefined) throw badRequest("Invalid input for field/attribute os-set_bootable. Value: {}. 'bootable' is a required property");
      return { kind: "set_bootable", bootable };
    }
    case "os-update_readonly_flag":
      throw badRequest("Invalid input received: os-update_readonly_flag is not supported: volumes attach read-write.");
    default:
      if (adminActions.has(name)) throw new VolumeError("EFORBIDDEN", `Policy doesn't allow volume_extension:volume_admin_actions:${name.slice(3)} to be performed.`);
      throw badRequest(`There is no such action: ${name.slice(0, 80)}`);
  }
}

export function actionRoutes(app: FastifyInstance, { volumes }: RouteContext): void {
  app.post("/volumes/:id/action", async (request, reply) => {
    const action = parseAction(request.body);
    const caller = callerOf(request);
    const id = param(request, "id");
    switch (action.kind) {
      case "extend":
        await volumes.extendVolume(caller, id, action.newSizeGib);
        return reply.code(202).send();
      case "set_bootable":
        await volumes.updateVolume(caller, id, { bootable: action.bootable });
        return reply.code(200).send();
    }
  });
}
