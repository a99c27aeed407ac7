/**
 * A small in-memory Pithos+ server (node:http) for the client's unit tests: the hashmap
 * protocol, Range GETs, listings, and fault switches (fail block uploads after N, corrupt
 * ranges). The real gateway is exercised by cli/commands/file.test.ts; this one lets the
 * resume and integrity logic be tested exactly, and without the gateway.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { blockHash, merkleRoot, zeroBlockHash, type HashAlgorithm } from "../../../engine/blocker/content.ts";

export interface FakeObject {
  bytes: number;
  hashes: string[];
  contentType: string;
  version: number;
  sharing: string;
  publicUrl: string | null;
}

export interface FakePithos {
  url: string;
  storageUrl: string;
  token: string;
  containers: Map<string, Map<string, FakeObject>>;
  /** Stored blocks, without trailing NULs, by hex hash. */
  blocks: Map<string, Buffer>;
  counters: { blockPosts: number; blockBytes: number; hashmapPuts: number; rangeGets: number; logins: number };
  faults: { failBlockPostsAfter?: number; corruptRanges?: boolean; rejectToken?: boolean };
  /** The bytes of an object, assembled from its blocks. */
  objectData(container: string, name: string): Buffer;
  close(): Promise<void>;
}

export async function startFakePithos(layout: { blockSizeBytes: number; hashAlgorithm: HashAlgorithm }): Promise<FakePithos> {
  const { blockSizeBytes, hashAlgorithm } = layout;
  const zeroHex = zeroBlockHash(hashAlgorithm).toString("hex");
  let version = 0;
  const fake = {
    token: "fake-token",
    containers: new Map<string, Map<string, FakeObject>>(),
    blocks: new Map<string, Buffer>(),
    counters: { blockPosts: 0, blockBytes: 0, hashmapPuts: 0, rangeGets: 0, logins: 0 },
    faults: {} as FakePithos["faults"],
  } as FakePithos;

  const blockData = (hash: string, lengthBytes: number): Buffer => {
    const block = Buffer.alloc(lengthBytes);
    if (hash !== zeroHex) (fake.blocks.get(hash) as Buffer).copy(block);
    return block;
  };
  fake.objectData = (container, name) => {
    const object = fake.containers.get(container)?.get(name);
    if (object === undefined) throw new Error(`no object ${container}/${name}`);
    const parts = object.hashes.slice(0, Math.ceil(object.bytes / blockSizeBytes)).map((hash, index) => blockData(hash, Math.min(blockSizeBytes, object.bytes - index * blockSizeBytes)));
    return Buffer.concat(parts);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(request.url ?? "/", "http://x");
    const send = (status: number, payload: string | Buffer = "", headers: Record<string, string> = {}): void => {
      response.writeHead(status, headers).end(payload);
    };
    if (url.pathname === "/identity/v3/auth/tokens" && request.method === "POST") {
      fake.counters.logins++;
      const catalog = [{ type: "object-store", endpoints: [{ interface: "public", url: fake.storageUrl }] }];
      return send(201, JSON.stringify({ token: { catalog } }), { "x-subject-token": fake.token, "content-type": "application/json" });
    }
    const prefix = "/object-store/v1/AUTH_u";
    if (!url.pathname.startsWith(prefix)) return send(404);
    if (fake.faults.rejectToken === true || request.headers["x-auth-token"] !== fake.token) return send(401, "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the document you requested.</p></html>");
    const [containerName, ...rest] = url.pathname.slice(prefix.length + 1).split("/").map(decodeURIComponent);
    const objectName = rest.join("/");
    const method = request.method;
    if (containerName === undefined || containerName === "") {
      const list = [...fake.containers].map(([name, objects]) => ({ name, count: objects.size, bytes: 0, last_modified: "2030-01-01T00:00:00.000000" }));
      return send(200, JSON.stringify(url.searchParams.has("marker") ? [] : list), { "content-type": "application/json" });
    }
    const container = fake.containers.get(containerName);
    if (objectName === "") {
      if (method === "PUT") {
        if (container !== undefined) return send(202);
        fake.containers.set(containerName, new Map());
        return send(201);
      }
      if (container === undefined) return send(404, "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>");
      if (method === "HEAD") return send(204, "", { "x-container-block-size": String(blockSizeBytes), "x-container-block-hash": hashAlgorithm, "x-container-object-count": String(container.size) });
      if (method === "POST" && url.searchParams.has("update")) {
        fake.counters.blockPosts++;
        if (fake.faults.failBlockPostsAfter !== undefined && fake.counters.blockPosts > fake.faults.failBlockPostsAfter) return send(503, "<html><h1>Service Unavailable</h1></html>");
        fake.counters.blockBytes += body.length;
        const hashes: string[] = [];
        for (let offset = 0; offset < body.length; offset += blockSizeBytes) {
          const block = body.subarray(offset, Math.min(body.length, offset + blockSizeBytes));
          const hash = blockHash(hashAlgorithm, block).toString("hex");
          let end = block.length;
          while (end > 0 && block[end - 1] === 0) end--;
          if (end > 0) fake.blocks.set(hash, Buffer.from(block.subarray(0, end)));
          hashes.push(hash);
        }
        return send(202, JSON.stringify(hashes), { "content-type": "application/json" });
      }
      if (method === "GET") {
        const wanted = url.searchParams.get("prefix") ?? "";
        const marker = url.searchParams.get("marker");
        const entries = [...container]
          .filter(([name]) => name.startsWith(wanted) && (marker === null || name > marker))
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, object]) => ({ name, bytes: object.bytes, hash: objectHash(object), content_type: object.contentType, last_modified: "2030-01-01T00:00:00.000000", x_object_hash: objectHash(object) }));
        return send(200, JSON.stringify(entries.slice(0, Number(url.searchParams.get("limit") ?? 10000))), { "content-type": "application/json" });
      }
      if (method === "DELETE") {
        if (container.size > 0) return send(409, "<html><h1>Conflict</h1><p>There was a conflict when trying to complete your request.</p></html>");
        fake.containers.delete(containerName);
        return send(204);
      }
      return send(405);
    }
    if (container === undefined) return send(404);
    const object = container.get(objectName);
    const objectHeaders = (found: FakeObject): Record<string, string> => ({
      "x-object-hash": objectHash(found),
      "x-object-version": String(found.version),
      etag: objectHash(found),
      "content-type": found.contentType,
      ...(found.sharing !== "" && { "x-object-sharing": found.sharing }),
      ...(found.publicUrl !== null && { "x-object-public": found.publicUrl }),
    });
    if (method === "PUT" && url.searchParams.has("hashmap")) {
      fake.counters.hashmapPuts++;
      const parsed = JSON.parse(body.toString("utf8")) as { bytes: number; hashes: string[] };
      const missing = [...new Set(parsed.hashes.filter((hash) => hash !== zeroHex && !fake.blocks.has(hash)))];
      if (missing.length > 0) return send(409, JSON.stringify(missing), { "content-type": "application/json" });
      const stored: FakeObject = { bytes: parsed.bytes, hashes: parsed.hashes, contentType: String(request.headers["content-type"]), version: ++version, sharing: "", publicUrl: null };
      container.set(objectName, stored);
      return send(201, "", { etag: objectHash(stored), "x-object-version": String(stored.version) });
    }
    if (object === undefined) return send(404, "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>");
    if (method === "HEAD") return send(200, "", { ...objectHeaders(object), "content-length": String(object.bytes) });
    if (method === "GET" && url.searchParams.has("hashmap")) {
      const hashes = object.bytes === 0 ? [zeroHex] : object.hashes;
      return send(200, JSON.stringify({ block_size: blockSizeBytes, block_hash: hashAlgorithm, bytes: object.bytes, hashes }), objectHeaders(object));
    }
    if (method === "GET") {
      fake.counters.rangeGets++;
      const data = fake.objectData(containerName, objectName);
      const match = /^bytes=(\d+)-(\d+)$/.exec(String(request.headers.range ?? ""));
      if (match === null) return send(200, data);
      const slice = Buffer.from(data.subarray(Number(match[1]), Number(match[2]) + 1));
      if (fake.faults.corruptRanges === true) slice[0] = (slice[0] as number) ^ 0xff;
      return send(206, slice, { "content-range": `bytes ${match[1]}-${match[2]}/${object.bytes}` });
    }
    if (method === "POST") {
      const sharing = request.headers["x-object-sharing"];
      if (typeof sharing === "string") object.sharing = sharing;
      const published = request.headers["x-object-public"];
      if (published === "true") object.publicUrl ??= `${fake.url}/public/abc123`;
      if (published === "false") object.publicUrl = null;
      return send(202, "", object.publicUrl === null ? {} : { "x-object-public": object.publicUrl });
    }
    if (method === "DELETE") {
      container.delete(objectName);
      return send(204);
    }
    return send(405);
  };

  const objectHash = (object: FakeObject): string =>
    merkleRoot(
      hashAlgorithm,
      object.hashes.map((hash) => Buffer.from(hash, "hex")),
    ).toString("hex");

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => response.writeHead(500).end(String(error)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  fake.url = `http://127.0.0.1:${port}`;
  fake.storageUrl = `${fake.url}/object-store/v1/AUTH_u`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return fake;
}
