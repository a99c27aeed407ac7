/**
 * /servers/{id}/os-volume_attachments: Nova's VolumeAttachmentController
 * (nova/api/openstack/compute/volumes.py, schemas/volumes.py) at the versions we serve.
 *
 *   GET    /servers/{id}/os-volume_attachments[?limit&offset]   {"volumeAttachments": [A…]}
 *   POST   /servers/{id}/os-volume_attachments   {"volumeAttachment": {"volumeId": U, "device": D|null}}  200 {"volumeAttachment": A}
 *   GET    /servers/{id}/os-volume_attachments/{volume_id}       {"volumeAttachment": A}
 *   DELETE /servers/{id}/os-volume_attachments/{volume_id}       202, no body
 *
 * where A = {id, serverId, volumeId, device}: before 2.89 an attachment's `id` is its volume's
 * id, and `tag` (2.49, 2.70) and `delete_on_termination` (2.79) come later than 2.10. POST
 * answers 200, not 202, although the attach runs as a job afterwards (Nova's own TODO says
 * so); clients poll the volume's status (attaching → in-use) or the list.
 *
 * What `openstack` sends (python-openstackclient 6.0.0): `server add volume S V [--device D]`
 * is the SDK's create_volume_attachment, a POST with `{"volumeId": V, "device": D or null}`;
 * `server remove volume S V` the SDK's DELETE …/{V}; `server volume list S` novaclient's GET
 * (pinned 2.1). The SDK finds V through the volume service (gateways/volumes/) first.
 */
import type { FastifyInstance } from "fastify";
import type { VolumeAttachment } from "../model.ts";
import { callerOf, param, type RouteContext } from "./context.ts";
import { bodyMember, invalidField, quote, queryNonNegativeInteger, rejectUnknownKeys } from "./input.ts";

/** Nova's osapi_max_limit: the most attachments one page lists (a server has at most 16). */
export const attachmentsPerPageMax = 1000;
/** schemas/volumes.py create_volume_attachment's `device` pattern (Nova's spelling, as its error quotes it). */
const devicePatternSource = "(^/dev/x{0,1}[a-z]{0,1}d{0,1})([a-z]+)[0-9]*$";
const devicePattern = new RegExp(devicePatternSource);
const uuidPattern = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const createKeys: ReadonlySet<string> = new Set(["volumeId", "device"]);

/** The POST body as Nova's 2.1 schema accepts it; the volume id in its canonical form. */
export function parseAttachVolume(body: unknown): { volumeId: string; device: string | null } {
  const attachment = bodyMember(body, "volumeAttachment");
  rejectUnknownKeys(attachment, createKeys);
  const volumeId = attachment["volumeId"];
  if (volumeId === undefined) throw invalidField("volumeAttachment.volumeId", volumeId, "'volumeId' is a required property");
  if (typeof volumeId !== "string") throw invalidField("volumeAttachment.volumeId", volumeId, `${quote(volumeId)} is not of type 'string'`);
  if (!uuidPattern.test(volumeId)) throw invalidField("volumeAttachment.volumeId", volumeId, `${quote(volumeId)} is not a 'uuid'`);
  const device = attachment["device"] ?? null;
  if (device !== null) {
    if (typeof device !== "string") throw invalidField("volumeAttachment.device", device, `${quote(device)} is not of type 'string', 'null'`);
    if (!devicePattern.test(device)) throw invalidField("volumeAttachment.device", device, `${quote(device)} does not match '${devicePatternSource}'`);
  }
  const hex = volumeId.replaceAll("-", "").toLowerCase();
  return { volumeId: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`, device };
}

/** Nova's _translate_attachment_detail_view before 2.70. */
export function attachmentBody(attachment: VolumeAttachment): Record<string, unknown> {
  return { id: attachment.volumeId, serverId: attachment.serverId, volumeId: attachment.volumeId, device: attachment.device };
}

export function volumeAttachmentRoutes(app: FastifyInstance, context: RouteContext): void {
  const { compute } = context;
  const base = "/servers/:id/os-volume_attachments";

  app.get(base, async (request) => {
    // common.limited: offset, then at most limit (0 or absent: the page maximum).
    const offset = queryNonNegativeInteger(request.query, "offset") ?? 0;
    const limit = queryNonNegativeInteger(request.query, "limit") || attachmentsPerPageMax;
    const attachments = await compute.listVolumeAttachments(callerOf(request), param(request, "id"));
    return { volumeAttachments: attachments.slice(offset, offset + Math.min(limit, attachmentsPerPageMax)).map(attachmentBody) };
  });

  app.post(base, async (request) => {
    const attachment = await compute.attachVolume(callerOf(request), param(request, "id"), parseAttachVolume(request.body));
    return { volumeAttachment: attachmentBody(attachment) };
  });

  app.get(`${base}/:volumeId`, async (request) => {
    const attachment = await compute.getVolumeAttachment(callerOf(request), param(request, "id"), param(request, "volumeId"));
    return { volumeAttachment: attachmentBody(attachment) };
  });

  app.delete(`${base}/:volumeId`, async (request, reply) => {
    await compute.detachVolume(callerOf(request), param(request, "id"), param(request, "volumeId"));
    return reply.code(202).send();
  });
}
