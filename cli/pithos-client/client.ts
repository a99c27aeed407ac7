/**
 * The object store's requests, typed: one method per request the sync client makes
 * (synnefo.md B.2, B.3). Replies are checked here; algorithms are in upload.ts, download.ts
 * and sync.ts.
 *
 *   HEAD   /c                          layout: X-Container-Block-Size, X-Container-Block-Hash
 *   PUT    /c/o?hashmap&format=json    {"bytes","hashes"} ──► 201 | 409 [missing hashes]
 *   POST   /c?update&format=json       one block ──► 202 [its hash]
 *   GET    /c/o?hashmap&format=json    {"block_size","block_hash","bytes","hashes"}
 *   GET    /c/o  Range: bytes=a-b      206, one block
 */
import { hashAlgorithms, type HashAlgorithm } from "../../engine/blocker/content.ts";
import { RemoteError } from "./errors.ts";
import type { HttpReply, Session } from "./http.ts";

/** Entries per listing request: Swift's and Pithos+'s maximum page (synnefo.md B.5). */
export const listingPageEntries = 10_000;

export interface ContainerLayout {
  blockSizeBytes: number;
  hashAlgorithm: HashAlgorithm;
}

export interface ContainerInfo extends ContainerLayout {
  name: string;
  objectCount: number;
  bytesUsed: number;
}

export interface ContainerEntry {
  name: string;
  count: number;
  bytes: number;
  last_modified: string;
}

/** An object listing entry (format=json), as the server sends it. */
export interface ObjectEntry {
  name: string;
  bytes: number;
  hash: string;
  content_type: string;
  last_modified: string;
  /** The Merkle root of the object's block hashes (Pithos+); absent on plain Swift servers. */
  x_object_hash?: string;
  x_object_version?: number;
}

export interface RemoteHashmap {
  blockSizeBytes: number;
  hashAlgorithm: HashAlgorithm;
  bytes: number;
  /** Lowercase hex, one per block; an empty object: [H("")]. */
  hashes: string[];
  /** X-Object-Version of the version described: pins the Range GETs that follow. */
  version: string | undefined;
  /** X-Object-Hash, when the server sent it. */
  objectHash: string | undefined;
}

export type PutHashmapResult = { created: true; etag: string | undefined; version: string | undefined } | { created: false; missing: string[] };

export interface Hashmap {
  bytes: number;
  hashes: readonly string[];
}

const hexHashPattern = /^[0-9a-f]{64}$/;

/**
 * `/c` and `/c/o`, each name percent-encoded but the object's `/` kept (Swift pseudo-folders).
 * A `.` or `..` segment cannot be sent: URL parsers (fetch's WHATWG URL included) resolve
 * it, `%2E` too, so `c/../x` would address container `x`. Such names are refused.
 */
export function containerPath(container: string): string {
  checkSegments(container, [container]);
  return `/${encodeURIComponent(container)}`;
}

export function objectPath(container: string, object: string): string {
  const segments = object.split("/");
  checkSegments(`${container}/${object}`, segments);
  return `${containerPath(container)}/${segments.map(encodeURIComponent).join("/")}`;
}

function checkSegments(name: string, segments: readonly string[]): void {
  if (segments.some((segment) => segment === "." || segment === "..")) {
    throw new RemoteError("EREFUSED", `${name}: a name with a "." or ".." segment cannot be addressed over HTTP`);
  }
}

/** The exact body of a hashmap PUT: compact JSON, what the delta test counts on the wire. */
export function hashmapRequestBody(hashmap: Hashmap): string {
  return JSON.stringify({ bytes: hashmap.bytes, hashes: hashmap.hashes });
}

export class PithosClient {
  readonly session: Session;

  constructor(session: Session) {
    this.session = session;
  }

  async listContainers(): Promise<ContainerEntry[]> {
    const entries: ContainerEntry[] = [];
    for await (const page of this.#pages("", "", "list containers")) entries.push(...(page as ContainerEntry[]));
    return entries;
  }

  /** undefined: no such container. */
  async containerInfo(container: string): Promise<ContainerInfo | undefined> {
    const what = `container ${container}`;
    const reply = await this.session.request({ method: "HEAD", pathAndQuery: containerPath(container), what, ok: [200, 204, 404] });
    if (reply.status === 404) return undefined;
    const blockSizeBytes = Number(reply.headers.get("x-container-block-size"));
    const algorithm = (reply.headers.get("x-container-block-hash") ?? "").toLowerCase();
    if (!Number.isSafeInteger(blockSizeBytes) || blockSizeBytes <= 0) {
      throw new RemoteError("EPROTOCOL", `${what}: no valid X-Container-Block-Size (not a Pithos+ server?)`);
    }
    if (!(hashAlgorithms as readonly string[]).includes(algorithm)) {
      throw new RemoteError("EPROTOCOL", `${what}: block hash ${JSON.stringify(algorithm)} is not one we compute (${hashAlgorithms.join(", ")})`);
    }
    return {
      name: container,
      blockSizeBytes,
      hashAlgorithm: algorithm as HashAlgorithm,
      objectCount: Number(reply.headers.get("x-container-object-count") ?? 0),
      bytesUsed: Number(reply.headers.get("x-container-bytes-used") ?? 0),
    };
  }

  /** The container's layout, creating the container first if it does not exist. */
  async ensureContainer(container: string): Promise<ContainerInfo> {
    const found = await this.containerInfo(container);
    if (found !== undefined) return found;
    await this.session.request({ method: "PUT", pathAndQuery: containerPath(container), what: `create container ${container}`, ok: [201, 202] });
    const created = await this.containerInfo(container);
    if (created === undefined) throw new RemoteError("EPROTOCOL", `create container ${container}: created, yet HEAD says 404`);
    return created;
  }

  async deleteContainer(container: string): Promise<void> {
    await this.session.request({ method: "DELETE", pathAndQuery: containerPath(container), what: `delete container ${container}`, ok: [204] });
  }

  /** Every object under `prefix`, page by page (marker = the last name seen). */
  async *listObjects(container: string, options: { prefix?: string; delimiter?: string } = {}): AsyncGenerator<ObjectEntry | { subdir: string }> {
    const extra = new URLSearchParams();
    if (options.prefix !== undefined && options.prefix !== "") extra.set("prefix", options.prefix);
    if (options.delimiter !== undefined) extra.set("delimiter", options.delimiter);
    for await (const page of this.#pages(containerPath(container), extra.toString(), `list ${container}`)) {
      yield* page as Array<ObjectEntry | { subdir: string }>;
    }
  }

  async *#pages(path: string, extraQuery: string, what: string): AsyncGenerator<unknown[]> {
    let marker: string | undefined;
    for (;;) {
      const query = new URLSearchParams(extraQuery);
      query.set("format", "json");
      query.set("limit", String(listingPageEntries));
      if (marker !== undefined) query.set("marker", marker);
      const reply = await this.session.request({ method: "GET", pathAndQuery: `${path}?${query.toString()}`, what, ok: [200, 204] });
      const page = reply.status === 204 || reply.body.length === 0 ? [] : parseJson(reply, what);
      if (!Array.isArray(page)) throw new RemoteError("EPROTOCOL", `${what}: the listing is not a JSON array`);
      if (page.length > 0) yield page;
      if (page.length < listingPageEntries) return;
      const last = page.at(-1) as { name?: unknown; subdir?: unknown };
      const next = typeof last.name === "string" ? last.name : last.subdir;
      if (typeof next !== "string") throw new RemoteError("EPROTOCOL", `${what}: a listing entry without a name`);
      marker = next;
    }
  }

  /** Pithos+ create-from-hashmap (synnefo.md B.3): 201, or 409 with the missing hashes (nothing created). */
  async putHashmap(container: string, object: string, hashmap: Hashmap, headers: Record<string, string> = {}): Promise<PutHashmapResult> {
    const what = `upload ${container}/${object}`;
    const reply = await this.session.request({
      method: "PUT",
      pathAndQuery: `${objectPath(container, object)}?hashmap&format=json`,
      headers: { "content-type": "application/octet-stream", ...headers },
      body: hashmapRequestBody(hashmap),
      what,
      ok: [201, 409],
    });
    if (reply.status === 201) return { created: true, etag: reply.headers.get("etag") ?? undefined, version: reply.headers.get("x-object-version") ?? undefined };
    let missing: unknown;
    try {
      missing = JSON.parse(reply.body.toString("utf8"));
    } catch {
      missing = undefined;
    }
    if (!Array.isArray(missing) || !missing.every((hash) => typeof hash === "string" && hexHashPattern.test(hash.toLowerCase()))) {
      // A 409 that is not the list of missing blocks is a conflict of another kind.
      throw new RemoteError("ECONFLICT", `${what}: ${reply.body.toString("utf8").slice(0, 200) || "conflict"} (HTTP 409)`, { status: 409 });
    }
    return { created: false, missing: (missing as string[]).map((hash) => hash.toLowerCase()) };
  }

  /** Stores blocks (Pithos+ container POST ?update); returns the hashes the server computed. */
  async uploadBlock(container: string, data: Uint8Array): Promise<string[]> {
    const what = `upload a block to ${container}`;
    const reply = await this.session.request({
      method: "POST",
      pathAndQuery: `${containerPath(container)}?update&format=json`,
      headers: { "content-type": "application/octet-stream" },
      body: data,
      what,
      ok: [202],
    });
    const hashes = parseJson(reply, what);
    if (!Array.isArray(hashes) || !hashes.every((hash) => typeof hash === "string")) throw new RemoteError("EPROTOCOL", `${what}: the reply is not a JSON list of hashes`);
    return (hashes as string[]).map((hash) => hash.toLowerCase());
  }

  async getHashmap(container: string, object: string): Promise<RemoteHashmap> {
    const what = `hashmap of ${container}/${object}`;
    const reply = await this.session.request({ method: "GET", pathAndQuery: `${objectPath(container, object)}?hashmap&format=json`, what, ok: [200] });
    const body = parseJson(reply, what) as { block_size?: unknown; block_hash?: unknown; bytes?: unknown; hashes?: unknown };
    const { block_size: blockSizeBytes, block_hash: algorithm, bytes, hashes } = body ?? {};
    const valid =
      Number.isSafeInteger(blockSizeBytes) &&
      (blockSizeBytes as number) > 0 &&
      Number.isSafeInteger(bytes) &&
      (bytes as number) >= 0 &&
      typeof algorithm === "string" &&
      Array.isArray(hashes) &&
      hashes.every((hash) => typeof hash === "string" && hexHashPattern.test(hash.toLowerCase()));
    if (!valid) throw new RemoteError("EPROTOCOL", `${what}: not a Pithos+ hashmap (block_size, block_hash, bytes, hashes)`);
    if (!(hashAlgorithms as readonly string[]).includes(algorithm.toLowerCase())) {
      throw new RemoteError("EPROTOCOL", `${what}: block hash ${JSON.stringify(algorithm)} is not one we compute`);
    }
    const blocks = Math.ceil((bytes as number) / (blockSizeBytes as number));
    const count = (hashes as string[]).length;
    if (count !== blocks && !(bytes === 0 && count <= 1)) {
      throw new RemoteError("EPROTOCOL", `${what}: ${count} hashes for ${bytes as number} bytes in blocks of ${blockSizeBytes as number}`);
    }
    return {
      blockSizeBytes: blockSizeBytes as number,
      hashAlgorithm: algorithm.toLowerCase() as HashAlgorithm,
      bytes: bytes as number,
      hashes: (hashes as string[]).map((hash) => hash.toLowerCase()),
      version: reply.headers.get("x-object-version") ?? undefined,
      objectHash: reply.headers.get("x-object-hash")?.toLowerCase() ?? undefined,
    };
  }

  /** Bytes [start, endExclusive) of the object (of `version` when given), read into `into` if given. */
  async getRange(container: string, object: string, startBytes: number, endExclusiveBytes: number, options: { version?: string; into?: Buffer } = {}): Promise<Buffer> {
    const { version, into } = options;
    const what = `download ${container}/${object} bytes ${startBytes}-${endExclusiveBytes - 1}`;
    const query = version === undefined ? "" : `?version=${encodeURIComponent(version)}`;
    const lengthBytes = endExclusiveBytes - startBytes;
    const reply = await this.session.request({
      method: "GET",
      pathAndQuery: `${objectPath(container, object)}${query}`,
      headers: { range: `bytes=${startBytes}-${endExclusiveBytes - 1}` },
      what,
      ok: [200, 206],
      replyBytesMax: Math.max(lengthBytes, 1),
      ...(into !== undefined && { into: into.subarray(0, lengthBytes) }),
    });
    // A 200 is the whole object: right only when the range was the whole object.
    if ((reply.status === 200 && startBytes !== 0) || reply.body.length !== lengthBytes) {
      throw new RemoteError("EPROTOCOL", `${what}: got ${reply.body.length} bytes (HTTP ${reply.status}), expected ${lengthBytes}`);
    }
    return reply.body;
  }

  async headObject(container: string, object: string): Promise<Headers> {
    const reply = await this.session.request({ method: "HEAD", pathAndQuery: objectPath(container, object), what: `${container}/${object}`, ok: [200, 204] });
    return reply.headers;
  }

  /** Metadata-only POST (`update`: merges, synnefo.md B.2): sharing, public. Returns the reply headers. */
  async postObject(container: string, object: string, headers: Record<string, string>, what: string): Promise<Headers> {
    const reply = await this.session.request({ method: "POST", pathAndQuery: `${objectPath(container, object)}?update`, headers, what, ok: [202, 204] });
    return reply.headers;
  }

  async deleteObject(container: string, object: string): Promise<void> {
    await this.session.request({ method: "DELETE", pathAndQuery: objectPath(container, object), what: `delete ${container}/${object}`, ok: [204] });
  }
}

function parseJson(reply: HttpReply, what: string): unknown {
  try {
    return JSON.parse(reply.body.toString("utf8"));
  } catch {
    throw new RemoteError("EPROTOCOL", `${what}: the reply is not JSON`);
  }
}
