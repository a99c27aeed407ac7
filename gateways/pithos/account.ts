/**
 * The account (one per user, created on first use): HEAD (counts, metadata, groups, quota),
 * GET (container listing), POST (metadata, groups; `?bulk-delete`). swift.md 3 and 9,
 * synnefo.md B.2. Only the owner may touch an account.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { PithosService } from "./service.ts";
import type { PithosCaller } from "./context.ts";
import { deleteContainer, ensureAccount, getAccount, listSharedWithMe, getContainer, listContainers, setAccountGroups, setAccountMeta, type PithosAccount } from "../../db/index.ts";
import { requireOwner, type PithosContext } from "./context.ts";
import { readBodyBytes } from "./request-body.ts";
import { PithosError } from "./wire/errors.ts";
import { bulkMaxDeletesPerRequest, storagePolicyName } from "./wire/info.ts";
import { negotiateListing, parseListingQuery, renderAccountListing } from "./wire/listing.ts";
import { applyMetadata, metadataHeaders, parseMetadataHeaders } from "./wire/metadata.ts";
import { percentDecode } from "./wire/names.ts";
import { accountGroupHeaders, applyAccountGroups, parseAccountGroups } from "./wire/sharing.ts";
import { lastModifiedHeader, xTimestamp } from "./wire/timestamps.ts";

/** A bulk-delete body: 10000 URL-encoded paths of up to ~3 KiB each. */
export const bulkDeleteBodyBytesMax = 32 * 1024 * 1024;

function accountHeaders(account: PithosAccount): Record<string, string> {
  const headers: Record<string, string> = {
    "x-account-container-count": String(account.containerCount),
    "x-account-object-count": String(account.objectCount),
    "x-account-bytes-used": String(account.bytesUsed),
    [`x-account-storage-policy-${storagePolicyName.toLowerCase()}-container-count`]: String(account.containerCount),
    [`x-account-storage-policy-${storagePolicyName.toLowerCase()}-object-count`]: String(account.objectCount),
    [`x-account-storage-policy-${storagePolicyName.toLowerCase()}-bytes-used`]: String(account.bytesUsed),
    "x-account-policy-quota": String(account.quotaBytes ?? 0),
    "x-timestamp": xTimestamp(account.createdAt),
    "last-modified": lastModifiedHeader(account.modifiedAt),
    "accept-ranges": "bytes",
    // The listing's format follows Accept (swift.md 2).
    vary: "Accept",
    ...metadataHeaders("account", account.meta),
  };
  return { ...headers, ...accountGroupHeaders(account.groups) };
}

async function loadAccount(context: PithosContext): Promise<PithosAccount> {
  requireOwner(context);
  await ensureAccount(context.service.db, context.account);
  const account = await getAccount(context.service.db, context.account);
  if (account === undefined) throw new PithosError("ENOT_FOUND");
  return account;
}

async function headAccount(context: PithosContext): Promise<FastifyReply> {
  const account = await loadAccount(context);
  return context.reply.code(204).headers(accountHeaders(account)).header("content-type", "text/plain; charset=utf-8").send();
}

async function getAccountRoute(context: PithosContext): Promise<FastifyReply> {
  const account = await loadAccount(context);
  const options = parseListingQuery(context.query);
  const { format, contentType } = negotiateListing(context.query.get("format") ?? undefined, context.request.headers.accept);
  const containers = await listContainers(context.service.db, context.account, options);
  const entries = containers.map((entry) =>
    entry.kind === "subdir"
      ? { subdir: entry.subdir }
      : {
          name: entry.name,
          count: entry.container.objectCount,
          bytes: entry.container.bytesUsed,
          lastModifiedMs: entry.container.modifiedAt,
          extra: { x_container_policy: { versioning: entry.container.versioning, quota: String(entry.container.quotaBytes ?? 0) } },
        },
  );
  const rendered = renderAccountListing(format, `AUTH_${context.account}`, entries);
  const reply = context.reply.headers(accountHeaders(account));
  if (rendered.status === 204) return reply.code(204).send();
  return reply.code(200).type(contentType).send(rendered.body);
}

async function postAccount(context: PithosContext): Promise<FastifyReply> {
  if (context.query.has("bulk-delete")) return bulkDelete(context);
  const account = await loadAccount(context);
  const parsed = parseMetadataHeaders("account", context.request.headers);
  await setAccountMeta(context.service.db, account.account, applyMetadata(account.meta, parsed, "merge"), { replace: true });
  const groups = parseAccountGroups(context.request.headers);
  if (Object.keys(groups).length > 0) {
    // Pithos+: with `update` the named groups change (an empty list removes one), without it
    // the request's groups are all there is; either way the result replaces what is stored.
    await setAccountGroups(context.service.db, account.account, applyAccountGroups(account.groups, groups, context.query.has("update") ? "merge" : "replace"), { replace: true });
  }
  return context.reply.code(204).send();
}

/**
 * Swift's bulk delete (swift.md 9): URL-encoded `/container/object` or `/container` lines; the
 * report says how many went and which failed. Containers go after their objects.
 */
async function bulkDelete(context: PithosContext): Promise<FastifyReply> {
  requireOwner(context);
  const body = (await readBodyBytes(context, bulkDeleteBodyBytesMax)).toString("utf8");
  const paths = body
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
  if (paths.length > bulkMaxDeletesPerRequest) throw new PithosError("ETOO_LARGE", `Maximum Bulk Deletes: ${bulkMaxDeletesPerRequest} per request`);
  let deleted = 0;
  let notFound = 0;
  const errors: Array<[string, string]> = [];
  const objects: Array<[string, string, string]> = [];
  const containers: Array<[string, string]> = [];
  for (const line of paths) {
    const decoded = percentDecode(line).replace(/^\/+/, "");
    const slash = decoded.indexOf("/");
    if (slash < 0 || slash === decoded.length - 1) containers.push([line, slash < 0 ? decoded : decoded.slice(0, -1)]);
    else objects.push([line, decoded.slice(0, slash), decoded.slice(slash + 1)]);
  }
  for (const [, containerName, path] of objects) {
    const container = await getContainer(context.service.db, context.account, containerName);
    const gone = container === undefined ? undefined : await context.service.delete(container, path, context.caller.userUuid);
    if (gone === undefined) notFound++;
    else deleted++;
  }
  for (const [line, name] of containers) {
    try {
      await context.service.dropMaps(await deleteContainer(context.service.db, context.account, name));
      deleted++;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "ENOT_FOUND") notFound++;
      else errors.push([line, code === "ECONFLICT" ? "409 Conflict" : "500 Internal Error"]);
    }
  }
  const status = errors.length > 0 ? "400 Bad Request" : "200 OK";
  const report = { "Response Status": status, "Response Body": "", "Number Deleted": deleted, "Number Not Found": notFound, Errors: errors };
  const accept = String(context.request.headers.accept ?? "");
  if (accept.includes("application/json")) return context.reply.code(200).type("application/json; charset=utf-8").send(JSON.stringify(report));
  const text = `Number Deleted: ${deleted}\nNumber Not Found: ${notFound}\nResponse Body: \nResponse Status: ${status}\nErrors:\n${errors.map(([path, why]) => `${path}, ${why}\n`).join("")}`;
  return context.reply.code(200).type("text/plain; charset=utf-8").send(text);
}

/** Pithos+ `GET /v1`: the accounts that share something with the caller (synnefo.md B.2). */
export async function sharingAccounts(request: FastifyRequest, reply: FastifyReply, service: PithosService, caller: PithosCaller, query: URLSearchParams): Promise<FastifyReply> {
  const options = parseListingQuery(query);
  const { format, contentType } = negotiateListing(query.get("format") ?? undefined, request.headers.accept);
  const accounts = await listSharedWithMe(service.db, caller.userUuid, { ...(options.marker !== undefined && { marker: options.marker }), limit: options.limit });
  const rendered = renderAccountListing(format, "", accounts.map((entry) => ({ name: entry.account, count: 0, bytes: 0, lastModifiedMs: entry.modifiedAt })));
  if (rendered.status === 204) return reply.code(204).send();
  return reply.code(200).type(contentType).send(rendered.body);
}

export const accountRoutes = {
  HEAD: headAccount,
  GET: getAccountRoute,
  POST: postAccount,
  DELETE: async (context: PithosContext): Promise<FastifyReply> => {
    if (context.query.has("bulk-delete")) return bulkDelete(context);
    throw new PithosError("EMETHOD_NOT_ALLOWED");
  },
};
