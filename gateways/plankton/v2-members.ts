/**
 * Glance v2 members and tags, under `/image/v2`. Members are the grantees of the image
 * file's sharing (sharing.ts); Glance's member status is not kept: a member has access
 * (`accepted`) until the owner removes them or they reject the image, which removes them.
 *
 *   GET    /images/{id}/members             the owner sees all; a member sees themself
 *   POST   /images/{id}/members             {"member": uuid} (owner); 409 if already one
 *   GET    /images/{id}/members/{member}
 *   PUT    /images/{id}/members/{member}    {"status": …} (the member); rejected leaves
 *   DELETE /images/{id}/members/{member}    (owner) 204
 *   PUT    /images/{id}/tags/{tag}          (owner) 204
 *   DELETE /images/{id}/tags/{tag}          (owner) 204; 404 when not tagged
 */
import type { FastifyInstance } from "fastify";
import { imageTagLengthMax, imageTagsMax, updateImage } from "../../db/index.ts";
import { PlanktonError } from "./errors.ts";
import { isUuid, type PlanktonService } from "./service.ts";
import { membersOf, withMember, withoutMember } from "./sharing.ts";
import { memberJson } from "./v2-format.ts";
import { callerOf } from "./v2-images.ts";

const memberStatuses = ["pending", "accepted", "rejected"] as const;

function memberNotFound(member: string): PlanktonError {
  return new PlanktonError("ENOT_FOUND", `Member ${member} not found`);
}

export function v2MemberRoutes(app: FastifyInstance, plankton: PlanktonService): void {
  app.get<{ Params: { id: string } }>("/images/:id/members", async (request, reply) => {
    const caller = callerOf(request);
    const entry = await plankton.find(request.params.id, caller);
    const members = membersOf(entry.file.object.sharing).filter((member) => entry.image.owner === caller || member === caller);
    return reply.type("application/json").send({ members: members.map((member) => memberJson(entry, member)), schema: "/v2/schemas/members" });
  });

  app.post<{ Params: { id: string } }>("/images/:id/members", async (request, reply) => {
    const entry = await plankton.findOwned(request.params.id, callerOf(request));
    const member = (request.body as { member?: unknown } | undefined)?.member;
    if (typeof member !== "string" || !isUuid(member.toLowerCase())) throw new PlanktonError("EBAD_REQUEST", "The member must be a user id (a UUID).");
    const id = member.toLowerCase();
    if (membersOf(entry.file.object.sharing).includes(id)) throw new PlanktonError("ECONFLICT", `Member ${id} is duplicated for image ${entry.image.uuid}`);
    await plankton.share(entry, withMember(entry.file.object.sharing, id));
    return reply.type("application/json").send(memberJson(entry, id));
  });

  app.get<{ Params: { id: string; member: string } }>("/images/:id/members/:member", async (request, reply) => {
    const caller = callerOf(request);
    const entry = await plankton.find(request.params.id, caller);
    const { member } = request.params;
    if (!membersOf(entry.file.object.sharing).includes(member) || (entry.image.owner !== caller && member !== caller)) throw memberNotFound(member);
    return reply.type("application/json").send(memberJson(entry, member));
  });

  app.put<{ Params: { id: string; member: string } }>("/images/:id/members/:member", async (request, reply) => {
    const caller = callerOf(request);
    const entry = await plankton.find(request.params.id, caller);
    const { member } = request.params;
    if (!membersOf(entry.file.object.sharing).includes(member)) throw memberNotFound(member);
    if (member !== caller) throw new PlanktonError("EFORBIDDEN", "You are not permitted to modify 'status' on this image member.");
    const status = (request.body as { status?: unknown } | undefined)?.status;
    if (!memberStatuses.includes(status as (typeof memberStatuses)[number])) throw new PlanktonError("EBAD_REQUEST", `Invalid status: ${String(status)}`);
    if (status === "rejected") {
      await plankton.share(entry, withoutMember(entry.file.object.sharing, member));
      return reply.type("application/json").send({ ...memberJson(entry, member), status: "rejected" });
    }
    return reply.type("application/json").send(memberJson(entry, member));
  });

  app.delete<{ Params: { id: string; member: string } }>("/images/:id/members/:member", async (request, reply) => {
    const entry = await plankton.findOwned(request.params.id, callerOf(request));
    const { member } = request.params;
    if (!membersOf(entry.file.object.sharing).includes(member)) throw memberNotFound(member);
    await plankton.share(entry, withoutMember(entry.file.object.sharing, member));
    return reply.code(204).send();
  });

  app.put<{ Params: { id: string; tag: string } }>("/images/:id/tags/:tag", async (request, reply) => {
    const entry = await plankton.findOwned(request.params.id, callerOf(request));
    const { tag } = request.params;
    if (tag.length === 0 || tag.length > imageTagLengthMax) throw new PlanktonError("EBAD_REQUEST", `A tag is 1 to ${imageTagLengthMax} characters.`);
    await updateImage(plankton.db, entry.image.uuid, (current) => {
      if (current.tags.includes(tag)) return {};
      if (current.tags.length >= imageTagsMax) throw new PlanktonError("ETOO_LARGE", `Maximum number of tags exceeded (${imageTagsMax}).`);
      return { tags: [...current.tags, tag] };
    });
    return reply.code(204).send();
  });

  app.delete<{ Params: { id: string; tag: string } }>("/images/:id/tags/:tag", async (request, reply) => {
    const entry = await plankton.findOwned(request.params.id, callerOf(request));
    const { tag } = request.params;
    await updateImage(plankton.db, entry.image.uuid, (current) => {
      if (!current.tags.includes(tag)) throw new PlanktonError("ENOT_FOUND", `Tag ${tag} not found`);
      return { tags: current.tags.filter((existing) => existing !== tag) };
    });
    return reply.code(204).send();
  });
}
