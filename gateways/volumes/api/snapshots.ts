/**
 * /snapshots: list, detail, create, show, update, delete (cinder/api/v3/snapshots.py,
 * schemas/snapshots.py). A snapshot is an engine snapshot map; `force` is needed for an
 * attached volume, as Cinder before 3.66 wants.
 *
 * Snapshot metadata is not kept (no table): a create with non-empty `metadata` is refused, and
 * every snapshot shows `"metadata": {}`.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { CreateSnapshotRequest } from "../service.ts";
import { callerOf, param, type RouteContext } from "./context.ts";
import { badRequest, bodyMember, invalidField, readBoolean, readEitherText, readMetadata, readUuid, rejectUnknownKeys } from "./input.ts";
import { parseListQuery } from "./volumes.ts";
import { nextLinks, snapshotView } from "./views.ts";

const createKeys = new Set(["name", "display_name", "description", "display_description", "volume_id", "force", "metadata"]);
const updateKeys = new Set(["name", "display_name", "description", "display_description"]);
/** Snapshots sort by creation time only (sorting by name came with 3.30). */
const snapshotSortKeys = ["created_at"] as const;

export function parseCreateSnapshot(body: unknown): CreateSnapshotRequest {
  const snapshot = bodyMember(body, "snapshot");
  rejectUnknownKeys(snapshot, createKeys, "snapshot");
  const volumeId = readUuid(snapshot, "volume_id", "snapshot.volume_id");
  if (volumeId === undefined) throw invalidField("snapshot", snapshot["volume_id"], "'volume_id' is a required property");
  const request: CreateSnapshotRequest = { volumeId };
  const name = readEitherText(snapshot, "name", "display_name", "snapshot");
  if (name !== undefined && name !== null) request.name = name;
  const description = readEitherText(snapshot, "description", "display_description", "snapshot");
  if (description !== undefined) request.description = description;
  const force = readBoolean(snapshot, "force", "snapshot.force");
  if (force !== undefined) request.force = force;
  const metadata = readMetadata(snapshot["metadata"], "snapshot.metadata", { nullable: true });
  if (metadata !== undefined && Object.keys(metadata).length > 0) throw badRequest("Invalid input received: snapshot metadata is not supported here.");
  return request;
}

export function parseUpdateSnapshot(body: unknown): { name?: string; description?: string | null } {
  const snapshot = bodyMember(body, "snapshot");
  rejectUnknownKeys(snapshot, updateKeys, "snapshot");
  const patch: { name?: string; description?: string | null } = {};
  const name = readEitherText(snapshot, "name", "display_name", "snapshot");
  if (name !== undefined) patch.name = name ?? "";
  const description = readEitherText(snapshot, "description", "display_description", "snapshot");
  if (description !== undefined) patch.description = description;
  if (Object.keys(patch).length === 0) throw badRequest("Invalid input for field/attribute snapshot. Value: {}. {} is not valid under any of the given schemas");
  return patch;
}

export function snapshotRoutes(app: FastifyInstance, context: RouteContext): void {
  const { volumes } = context;

  const list = async (request: FastifyRequest, detail: boolean) => {
    const query = parseListQuery(request.query, snapshotSortKeys);
    const volumeId = (request.query as Record<string, unknown>)["volume_id"];
    const page = await volumes.listSnapshots(callerOf(request), {
      limit: query.limit,
      ...(query.name !== undefined && { name: query.name }),
      ...(query.status !== undefined && { status: query.status }),
      ...(query.marker !== undefined && { marker: query.marker }),
      ...(query.sortDir !== undefined && { sortDir: query.sortDir }),
      ...(typeof volumeId === "string" && { volumeId }),
    });
    const links = nextLinks(context.urls(request), detail ? "snapshots/detail" : "snapshots", request.query as Record<string, unknown>, page.next);
    return { snapshots: page.snapshots.map(snapshotView), ...(links !== undefined && { snapshots_links: links }) };
  };
  app.get("/snapshots", (request) => list(request, false));
  app.get("/snapshots/detail", (request) => list(request, true));

  app.post("/snapshots", async (request, reply) => {
    const snapshot = await volumes.createSnapshot(callerOf(request), parseCreateSnapshot(request.body));
    return reply.code(202).send({ snapshot: snapshotView(snapshot) });
  });
  app.get("/snapshots/:id", async (request) => ({ snapshot: snapshotView(await volumes.getSnapshot(callerOf(request), param(request, "id"))) }));
  app.put("/snapshots/:id", async (request) => ({
    snapshot: snapshotView(await volumes.updateSnapshot(callerOf(request), param(request, "id"), parseUpdateSnapshot(request.body))),
  }));
  app.delete("/snapshots/:id", async (request, reply) => {
    await volumes.deleteSnapshot(callerOf(request), param(request, "id"));
    return reply.code(202).send();
  });
}
