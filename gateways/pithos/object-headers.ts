/**
 * The headers of an object's GET/HEAD: Swift's (Content-Type, Etag, Last-Modified,
 * X-Timestamp, Accept-Ranges, X-Object-Meta-*) and Pithos+'s (X-Object-Hash, -UUID,
 * -Version, -Version-Timestamp, -Modified-By, -Sharing, -Public), synnefo.md B.2.
 */
import { isOwner, type PithosContext } from "./context.ts";
import { sloSummary, type ObjectView } from "./object-read.ts";
import { metadataHeaders } from "./wire/metadata.ts";
import { objectSharingHeader } from "./wire/sharing.ts";
import { lastModifiedHeader, xTimestamp } from "./wire/timestamps.ts";

export function publicLink(context: PithosContext, token: string): string {
  const base = context.publicUrl ?? `${context.request.protocol}://${context.request.host}`;
  return `${base.replace(/\/+$/, "")}/public/${token}`;
}

export function objectHeaders(view: ObjectView, context: PithosContext): Record<string, string> {
  const { version, object } = view;
  const headers: Record<string, string> = {
    "content-type": version.contentType,
    etag: view.etagQuoted ? `"${view.etag}"` : view.etag,
    "last-modified": lastModifiedHeader(version.modifiedAt),
    "x-timestamp": xTimestamp(version.modifiedAt),
    "accept-ranges": "bytes",
    "x-object-hash": version.contentHash,
    "x-object-uuid": object.uuid,
    "x-object-version": String(version.serial),
    "x-object-version-timestamp": (version.modifiedAt / 1000).toFixed(6),
    "x-object-modified-by": version.modifiedBy,
    ...metadataHeaders("object", version.meta),
  };
  if (version.contentEncoding !== null) headers["content-encoding"] = version.contentEncoding;
  if (version.contentDisposition !== null) headers["content-disposition"] = version.contentDisposition;
  if (version.manifest !== null) headers["x-object-manifest"] = version.manifest;
  if (version.sloManifest !== null) {
    headers["x-static-large-object"] = "True";
    headers["x-manifest-etag"] = sloSummary(version.sloManifest).manifestEtag;
  }
  if (version.deleteAt !== null) headers["x-delete-at"] = String(Math.floor(version.deleteAt / 1000));
  if (isOwner(context)) {
    if (object.sharing !== null) headers["x-object-sharing"] = objectSharingHeader(object.sharing);
    if (object.publicToken !== null) headers["x-object-public"] = publicLink(context, object.publicToken);
  }
  return headers;
}
