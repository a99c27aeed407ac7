/**
 * Which images a user sees, and the image listing (Glance v2 `GET /v2/images`, Plankton v1
 * `GET /images`). An image is visible when its file is live (a current, unexpired version)
 * and the user owns it or the file's own sharing names them — by uuid, through a group
 * `<account>:<group>` they belong to, or as everyone (`*`):
 *
 *   plankton_images i ── o.uuid ── pithos_objects o ── pithos_containers c
 *                                        ├── pithos_versions v (current)
 *                                        └── pithos_sharing s (read or write: both let read)
 *
 * Only the file's own sharing counts, not a parent folder's: an image is shared by sharing
 * its file, and one indexed lookup per row decides (pithos-sharing.ts explains inheritance).
 *
 * Paging is by keyset: (sort value, uuid) after the marker's, in the sort direction, so a
 * page costs one index range whatever the offset.
 */
import { sql, type Expression, type ExpressionBuilder, type Kysely, type RawBuilder, type SqlBool } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { Database, PithosContainersTable, PithosObjectsTable, PithosVersionsTable, PlanktonImagesTable, PlanktonImageStatus } from "../schema.ts";
import { checkInteger, checkListLimit, checkUuid } from "./limits.ts";
import { isExpired, objectsWithSharing, versionFromRow } from "./pithos-common.ts";
import { checkStatus, imageFromRow, type ImageWithFile } from "./plankton-common.ts";

/** Glance's `api_limit_max`: the most images one page holds. */
export const imageListLimitMax = 1000;
/** Glance's `limit_param_default`: a page's size when the client names none. */
export const imageListLimitDefault = 25;

export const imageSortKeys = ["name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at", "min_disk", "min_ram"] as const;
export type ImageSortKey = (typeof imageSortKeys)[number];

/**
 * Glance's visibility filter: `all` (the default: own, public and shared with me), `public`
 * (`*` in the sharing), `private` (own, shared with nobody), `shared` (shared with someone,
 * not everyone: own ones with members and others' shared with me), `community` (not kept).
 */
export type ImageVisibilityFilter = "all" | "public" | "private" | "shared" | "community";

export interface ImageListOptions {
  visibility?: ImageVisibilityFilter;
  name?: string;
  status?: PlanktonImageStatus;
  owner?: string;
  diskFormat?: string;
  containerFormat?: string;
  sizeMinBytes?: number;
  sizeMaxBytes?: number;
  /** Every one of these tags. */
  tags?: string[];
  /** true: hidden images only; false: visible ones only; undefined: both. */
  osHidden?: boolean;
  /** The uuid of the last image of the previous page (exclusive); ENOT_FOUND unless the user sees it. */
  marker?: string;
  limit?: number;
  sortKey?: ImageSortKey;
  sortDir?: "asc" | "desc";
}

export interface ImageListPage {
  images: ImageWithFile[];
  /** When more images follow: the marker of the next page (Glance's `next`). */
  nextMarker?: string;
}

type Aliased = Database & { i: PlanktonImagesTable; o: PithosObjectsTable; c: PithosContainersTable; v: PithosVersionsTable };
type Scope = ExpressionBuilder<Aliased, "i" | "o" | "c" | "v">;

/** The sharing entries that name this user: their uuid, `*`, and `<account>:<group>` of their groups. */
export async function granteesOf(executor: Kysely<Database>, user: string): Promise<string[]> {
  const groups = await executor.selectFrom("pithos_groups").select(["account", "name"]).where("member", "=", user).execute();
  return [user, "*", ...groups.map((group) => `${group.account}:${group.name}`)];
}

/** The visibility condition for `viewer` (whose grantee entries are `grantees`). */
function visibleWhere(eb: Scope, viewer: string, grantees: readonly string[], visibility: ImageVisibilityFilter): Expression<SqlBool> {
  const sharedTo = (entries: readonly string[]) =>
    eb.exists(eb.selectFrom("pithos_sharing as s").select("s.object_id").whereRef("s.object_id", "=", "o.id").where("s.grantee", "in", entries));
  const sharedAtAll = eb.exists(eb.selectFrom("pithos_sharing as s").select("s.object_id").whereRef("s.object_id", "=", "o.id"));
  const own = eb("i.owner", "=", viewer);
  switch (visibility) {
    case "all":
      return eb.or([own, sharedTo(grantees)]);
    case "public":
      return sharedTo(["*"]);
    case "private":
      return eb.and([own, eb.not(sharedAtAll)]);
    case "shared":
      return eb.and([eb.not(sharedTo(["*"])), sharedAtAll, eb.or([own, sharedTo(grantees.filter((entry) => entry !== "*"))])]);
    case "community":
      return eb.lit(false);
  }
}

const textSort = (column: "i.name" | "i.status" | "i.disk_format" | "i.container_format") => sql<string>`coalesce(${sql.ref(column)}, '')`;
/** Each sort key's expression; nullable text sorts as '' (Glance's order for NULLs is its database's). */
const sortExpressions: Record<ImageSortKey, RawBuilder<unknown>> = {
  name: textSort("i.name"),
  status: textSort("i.status"),
  container_format: textSort("i.container_format"),
  disk_format: textSort("i.disk_format"),
  size: sql.ref("v.size_bytes"),
  id: sql.ref("i.uuid"),
  created_at: sql.ref("i.created_at"),
  updated_at: sql.ref("i.updated_at"),
  min_disk: sql.ref("i.min_disk"),
  min_ram: sql.ref("i.min_ram"),
};

/** The images joined with their live files; `viewer` limits them to what that user sees. */
function imagesQuery(executor: Kysely<Database>, nowMs: number) {
  return executor
    .selectFrom("plankton_images as i")
    .innerJoin("pithos_objects as o", "o.uuid", "i.uuid")
    .innerJoin("pithos_containers as c", "c.id", "o.container_id")
    .innerJoin("pithos_versions as v", "v.object_id", "o.id")
    .where("v.state", "=", "current")
    .where((eb) => eb.or([eb("v.delete_at", "is", null), eb("v.delete_at", ">", nowMs)]));
}

async function rowsToImages(executor: Kysely<Database>, rows: ReadonlyArray<Record<string, unknown>>, nowMs: number): Promise<ImageWithFile[]> {
  type Row = Parameters<typeof imageFromRow>[0] &
    Parameters<typeof versionFromRow>[0] & { id: number; container_id: number; path: string; public_token: string | null; account: string; container_name: string };
  const typed = rows as ReadonlyArray<Row>;
  const objects = await objectsWithSharing(executor, typed);
  return typed.flatMap((row, index) => {
    if (isExpired(row, nowMs)) return [];
    return [{
      image: imageFromRow(row),
      file: {
        account: row.account,
        containerId: row.container_id,
        containerName: row.container_name,
        path: row.path,
        object: objects[index]!,
        version: versionFromRow(row),
      },
    }];
  });
}

function selectColumns<T extends ReturnType<typeof imagesQuery>>(query: T) {
  return query
    .selectAll("i")
    .selectAll("v")
    .select(["o.id", "o.container_id", "o.path", "o.public_token", "c.account", "c.name as container_name"]);
}

/**
 * The image with this uuid and its live file; undefined when there is none, its file is
 * gone, or `viewer` (when given) may not see it.
 */
export async function getImage(db: MetadataDatabase, uuid: string, options: { viewer?: string } = {}, nowMs = Date.now()): Promise<ImageWithFile | undefined> {
  return getImageIn(db.kysely, checkUuid("uuid", uuid), options.viewer === undefined ? undefined : checkUuid("viewer", options.viewer), nowMs);
}

export async function getImageIn(executor: Kysely<Database>, uuid: string, viewer: string | undefined, nowMs: number): Promise<ImageWithFile | undefined> {
  const grantees = viewer === undefined ? [] : await granteesOf(executor, viewer);
  const rows = await selectColumns(imagesQuery(executor, nowMs))
    .where("i.uuid", "=", uuid)
    .$if(viewer !== undefined, (query) => query.where((eb) => visibleWhere(eb, viewer!, grantees, "all")))
    .execute();
  const [found] = await rowsToImages(executor, rows, nowMs);
  return found;
}

/** The images `viewer` sees, filtered, sorted and paged as Glance does. */
export async function listImages(db: MetadataDatabase, viewer: string, options: ImageListOptions = {}, nowMs = Date.now()): Promise<ImageListPage> {
  const user = checkUuid("viewer", viewer);
  const checked = checkListOptions(options);
  if (checked.visibility === "community") return { images: [] };
  const grantees = await granteesOf(db.kysely, user);
  const sortExpression = sortExpressions[checked.sortKey];
  const filtered = imagesQuery(db.kysely, nowMs)
    .where((eb) => visibleWhere(eb, user, grantees, checked.visibility))
    .$if(checked.name !== undefined, (query) => query.where("i.name", "=", checked.name!))
    .$if(checked.status !== undefined, (query) => query.where("i.status", "=", checked.status!))
    .$if(checked.owner !== undefined, (query) => query.where("i.owner", "=", checked.owner!))
    .$if(checked.diskFormat !== undefined, (query) => query.where("i.disk_format", "=", checked.diskFormat!))
    .$if(checked.containerFormat !== undefined, (query) => query.where("i.container_format", "=", checked.containerFormat!))
    .$if(checked.sizeMinBytes !== undefined, (query) => query.where("v.size_bytes", ">=", checked.sizeMinBytes!))
    .$if(checked.sizeMaxBytes !== undefined, (query) => query.where("v.size_bytes", "<=", checked.sizeMaxBytes!))
    .$if(checked.osHidden !== undefined, (query) => query.where("i.os_hidden", "=", checked.osHidden ? 1 : 0))
    .$if(checked.tags.length > 0, (query) =>
      // A substring test narrows the rows; the exact test is below (a tag may contain `","`).
      query.where((eb) => eb.and(checked.tags.map((tag) => containsText(db.engine, JSON.stringify(tag))))),
    );

  let after: { value: unknown; uuid: string } | undefined;
  if (checked.marker !== undefined) {
    const marker = await filtered.select(sortExpression.as("sort_value")).where("i.uuid", "=", checked.marker).executeTakeFirst();
    if (marker === undefined) throw new DbError("ENOT_FOUND", `marker ${checked.marker} is not an image this user sees`, { marker: checked.marker });
    after = { value: marker.sort_value, uuid: checked.marker };
  }
  const forward = checked.sortDir === "asc" ? ">" : "<";
  const rows = await selectColumns(filtered)
    .$if(after !== undefined, (query) =>
      query.where((eb) =>
        eb.or([eb(sortExpression as never, forward, after!.value as never), eb.and([eb(sortExpression as never, "=", after!.value as never), eb("i.uuid", forward, after!.uuid)])]),
      ),
    )
    .orderBy(sortExpression as never, checked.sortDir)
    .orderBy("i.uuid", checked.sortDir)
    .limit(checked.limit + 1)
    .execute();
  const page = rows.slice(0, checked.limit);
  const images = await rowsToImages(db.kysely, page, nowMs);
  return {
    images: images.filter(({ image }) => checked.tags.every((tag) => image.tags.includes(tag))),
    // The last row read, not the last kept: the exact tag test may have dropped some.
    ...(rows.length > checked.limit && { nextMarker: page.at(-1)!.uuid }),
  };
}

/** `text` occurs in the image's tags column (JSON text). */
function containsText(engine: MetadataDatabase["engine"], text: string) {
  return engine === "postgres" ? sql<SqlBool>`(strpos(${sql.ref("i.tags")}, ${text}) > 0)` : sql<SqlBool>`(instr(${sql.ref("i.tags")}, ${text}) > 0)`;
}

interface CheckedListOptions extends ImageListOptions {
  visibility: ImageVisibilityFilter;
  tags: string[];
  limit: number;
  sortKey: ImageSortKey;
  sortDir: "asc" | "desc";
}

const visibilities: readonly ImageVisibilityFilter[] = ["all", "public", "private", "shared", "community"];

function checkListOptions(options: ImageListOptions): CheckedListOptions {
  const visibility = options.visibility ?? "all";
  if (!visibilities.includes(visibility)) throw new DbError("EINVALID", `visibility must be one of ${visibilities.join(", ")}`, { visibility });
  const sortKey = options.sortKey ?? "created_at";
  if (!imageSortKeys.includes(sortKey)) throw new DbError("EINVALID", `sortKey must be one of ${imageSortKeys.join(", ")}`, { sortKey });
  const sortDir = options.sortDir ?? "desc";
  if (sortDir !== "asc" && sortDir !== "desc") throw new DbError("EINVALID", "sortDir must be asc or desc", { sortDir });
  for (const what of ["sizeMinBytes", "sizeMaxBytes"] as const) {
    if (options[what] !== undefined) checkInteger(what, options[what], { min: 0 });
  }
  if (options.osHidden !== undefined && typeof options.osHidden !== "boolean") throw new DbError("EINVALID", "osHidden must be a boolean");
  return {
    ...options,
    visibility,
    ...(options.status !== undefined && { status: checkStatus(options.status) }),
    ...(options.owner !== undefined && { owner: checkUuid("owner", options.owner) }),
    ...(options.marker !== undefined && { marker: checkUuid("marker", options.marker) }),
    tags: options.tags ?? [],
    limit: Math.min(checkListLimit(options.limit, imageListLimitDefault), imageListLimitMax),
    sortKey,
    sortDir,
  };
}
