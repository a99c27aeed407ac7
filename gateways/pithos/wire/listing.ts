/**
 * Account and container listings in their three formats, byte for byte as Swift 2.30.1 writes
 * them (swift.md 8; container/server.py create_listing, account/utils.py
 * account_listing_response, middleware/listing_formats.py):
 *
 *   text  a/1.txt\nb\n                                  204 and no body when empty
 *   json  [{"bytes": 1, "hash": "…", "name": "a/1.txt", "content_type": "text/plain",
 *          "last_modified": "2026-11-24T03:43:50.751260"}, {"subdir": "a/"}]   200 `[]` when empty
 *   xml   <?xml version="1.0" encoding="UTF-8"?>\n<container name="c"><object><name>…</name>
 *         <hash>…</hash><bytes>…</bytes><content_type>…</content_type><last_modified>…
 *         </last_modified></object><subdir name="a/"><name>a/</name></subdir></container>
 *
 * Bodies are Buffers (UTF-8): the Content-Length is their length, and a Buffer body keeps Node
 * from re-encoding non-ASCII metadata headers sent alongside (header-text.ts).
 */
import { pythonJsonDumps, type JsonValue } from "./python-json.ts";
import type { ListingFormat } from "./listing-query.ts";
import { listingLastModified } from "./timestamps.ts";

// The request side lives in listing-query.ts; re-exported so a route needs one import.
export { listingFormat, negotiateListing, parseListingQuery, type ListingFormat, type ListingNegotiation, type ListingQuery } from "./listing-query.ts";

export interface ObjectListingEntry {
  name: string;
  /** The ETag: bare MD5 for plain objects; the manifest's own MD5 for an SLO (swift.md 8). */
  hash: string;
  bytes: number;
  contentType: string;
  lastModifiedMs: number;
  /**
   * Fields after last_modified, in JSON only: Swift's `slo_etag`, Pithos+'s `x_object_hash`,
   * `x_object_uuid`, `x_object_version`… (synnefo.md B.2). Swift's XML has no place for them.
   */
  extra?: Record<string, JsonValue>;
}

/** A pseudo-directory of a delimiter listing. */
export interface SubdirEntry {
  subdir: string;
}

export type ContainerListingEntry = ObjectListingEntry | SubdirEntry;

export interface ContainerSummary {
  name: string;
  /** Objects in the container. */
  count: number;
  bytes: number;
  lastModifiedMs: number;
  /** JSON-only fields after last_modified (Pithos+ `x_container_policy`…). */
  extra?: Record<string, JsonValue>;
}

export type AccountListingEntry = ContainerSummary | SubdirEntry;

export interface RenderedListing {
  /** 204 only for an empty plain-text listing. */
  status: 200 | 204;
  body: Buffer;
}

const xmlDeclaration = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/** ElementTree's _escape_cdata: element text. */
export function xmlText(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** ElementTree's _escape_attrib (Python 3.9+): attribute values. */
export function xmlAttribute(text: string): string {
  return xmlText(text).replaceAll("\"", "&quot;").replaceAll("\r", "&#13;").replaceAll("\n", "&#10;").replaceAll("\t", "&#09;");
}

function isSubdir(entry: ContainerListingEntry | AccountListingEntry): entry is SubdirEntry {
  return "subdir" in entry;
}

/** listing_to_text: one name per line, each ending in `\n`. */
function textListing(entries: ReadonlyArray<ContainerListingEntry | AccountListingEntry>): RenderedListing {
  const text = entries.map((entry) => `${isSubdir(entry) ? entry.subdir : entry.name}\n`).join("");
  return { status: text === "" ? 204 : 200, body: Buffer.from(text, "utf8") };
}

function element(name: string, text: string): string {
  return `<${name}>${xmlText(text)}</${name}>`;
}

export function renderContainerListing(format: ListingFormat, containerName: string, entries: readonly ContainerListingEntry[]): RenderedListing {
  if (format === "text") return textListing(entries);
  if (format === "json") {
    const records: JsonValue[] = entries.map((entry) =>
      isSubdir(entry)
        ? { subdir: entry.subdir }
        : {
            bytes: entry.bytes,
            hash: entry.hash,
            name: entry.name,
            content_type: entry.contentType,
            last_modified: listingLastModified(entry.lastModifiedMs),
            ...entry.extra,
          },
    );
    return { status: 200, body: Buffer.from(pythonJsonDumps(records), "utf8") };
  }
  // container_to_xml: no whitespace between elements; an empty container is a self-closed tag.
  const children = entries.map((entry) =>
    isSubdir(entry)
      ? `<subdir name="${xmlAttribute(entry.subdir)}">${element("name", entry.subdir)}</subdir>`
      : `<object>${element("name", entry.name)}${element("hash", entry.hash)}${element("bytes", String(entry.bytes))}` +
        `${element("content_type", entry.contentType)}${element("last_modified", listingLastModified(entry.lastModifiedMs))}</object>`,
  );
  const open = `<container name="${xmlAttribute(containerName)}"`;
  const xml = children.length === 0 ? `${open} />` : `${open}>${children.join("")}</container>`;
  return { status: 200, body: Buffer.from(xmlDeclaration + xml, "utf8") };
}

export function renderAccountListing(format: ListingFormat, accountName: string, entries: readonly AccountListingEntry[]): RenderedListing {
  if (format === "text") return textListing(entries);
  if (format === "json") {
    const records: JsonValue[] = entries.map((entry) =>
      isSubdir(entry)
        ? { subdir: entry.subdir }
        : { name: entry.name, count: entry.count, bytes: entry.bytes, last_modified: listingLastModified(entry.lastModifiedMs), ...entry.extra },
    );
    return { status: 200, body: Buffer.from(pythonJsonDumps(records), "utf8") };
  }
  // account_to_xml: a newline after the opening tag and after each child.
  const children = entries.map((entry) =>
    isSubdir(entry)
      ? `<subdir name="${xmlAttribute(entry.subdir)}" />\n`
      : `<container>${element("name", entry.name)}${element("count", String(entry.count))}${element("bytes", String(entry.bytes))}` +
        `${element("last_modified", listingLastModified(entry.lastModifiedMs))}</container>\n`,
  );
  const xml = `<account name="${xmlAttribute(accountName)}">\n${children.join("")}</account>`;
  return { status: 200, body: Buffer.from(xmlDeclaration + xml, "utf8") };
}
