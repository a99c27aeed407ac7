/**
 * HTTP for the object store's tests: requests over a real socket to `servePithos`, with the
 * control the protocol tests need (node:http, not fetch: no headers added behind our back,
 * bodies chunked or not as the test says, header bytes as sent) and a raw-socket form for
 * requests no client library would send (no length, bad framing, odd methods).
 *
 *   const h = await pithosHarness(db, { blockSizeBytes: 4096 });
 *   const alice = await h.user("alice");              // a new user (unique name) and a token
 *   await alice.request("PUT", "/c");                 // paths below /object-store/v1/AUTH_<uuid>
 *   const answer = await alice.request("GET", "/c/o", { headers: { range: "bytes=0-9" } });
 *   answer.status, answer.header("etag"), answer.body (Buffer), answer.text(), answer.json()
 */
import { createHash } from "node:crypto";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll } from "vitest";
import type { MetadataDatabase, User } from "../../../db/index.ts";
import type { TestDatabases } from "../../../db/testing/databases.ts";
import { servePithos, type ServedPithos, type ServePithosOptions } from "./server.ts";

export interface Answer {
  status: number;
  /** Node's parsed headers: names lower-case, values latin1 strings of the wire bytes. */
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** One header's value (a repeated one joined by ", "), as UTF-8 text. */
  header(name: string): string | undefined;
  text(): string;
  json<T = unknown>(): T;
}

export interface SendOptions {
  method?: string;
  headers?: Record<string, string | number | readonly string[]>;
  /** A whole body; sent with Content-Length unless `chunked`. */
  body?: Buffer | string;
  /** Send the body as these chunks with `Transfer-Encoding: chunked` (no Content-Length). */
  chunks?: ReadonlyArray<Buffer | string>;
  /** Send `Expect: 100-continue` and the body only after the server's 100 (rclone does). */
  expectContinue?: boolean;
}

/** Header text → the latin1 string Node writes as its UTF-8 bytes (so `é` goes out as C3 A9). */
export function headerBytes(text: string): string {
  return Buffer.from(text, "utf8").toString("latin1");
}

function answerOf(status: number, headers: IncomingHttpHeaders, body: Buffer): Answer {
  return {
    status,
    headers,
    body,
    header(name) {
      const value = headers[name.toLowerCase()];
      if (value === undefined) return undefined;
      const joined = Array.isArray(value) ? value.join(", ") : String(value);
      return Buffer.from(joined, "latin1").toString("utf8");
    },
    text: () => body.toString("utf8"),
    json: <T>() => JSON.parse(body.toString("utf8")) as T,
  };
}

/** One HTTP/1.1 request over node:http; the whole answer, body read. */
export function send(url: string, options: SendOptions = {}): Promise<Answer> {
  const method = options.method ?? "GET";
  const headers: Record<string, string | number | readonly string[]> = { ...options.headers };
  const names = new Set(Object.keys(headers).map((name) => name.toLowerCase()));
  if (options.chunks !== undefined && !names.has("transfer-encoding")) headers["transfer-encoding"] = "chunked";
  if (options.body !== undefined && options.chunks === undefined && !names.has("content-length")) headers["content-length"] = Buffer.byteLength(options.body);
  if (options.expectContinue === true) headers["expect"] = "100-continue";
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method, headers: headers as Record<string, string | number | string[]>, agent: false }, (response) => {
      const parts: Buffer[] = [];
      response.on("data", (chunk: Buffer) => parts.push(chunk));
      response.on("end", () => resolve(answerOf(response.statusCode ?? 0, response.headers, Buffer.concat(parts))));
      response.on("error", reject);
    });
    request.on("error", reject);
    // Buffers only: Node writes the header block together with a first *string* chunk in that
    // chunk's encoding (utf8), which would re-encode non-ASCII header bytes (header-text.ts).
    const body = options.body === undefined ? undefined : Buffer.from(options.body);
    if (options.expectContinue === true) {
      request.on("continue", () => request.end(body));
      return;
    }
    if (options.chunks !== undefined) {
      for (const chunk of options.chunks) request.write(Buffer.from(chunk));
      request.end();
    } else if (body !== undefined) {
      request.end(body);
    } else {
      request.end();
    }
  });
}

export interface RawAnswer {
  /** `HTTP/1.1 200 OK`; empty if the server closed without answering. */
  statusLine: string;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Every byte the server sent. */
  raw: Buffer;
}

/**
 * Writes `bytes` to a fresh connection and reads until the server closes it (or `timeoutMs`):
 * for requests that node:http would refuse to send. Send `Connection: close` (or half-close)
 * to get the answer promptly. Parses the first response's head; the body is what follows it.
 */
export function rawRequest(baseUrl: string, bytes: Buffer | string, options: { timeoutMs?: number; halfClose?: boolean } = {}): Promise<RawAnswer> {
  const { timeoutMs = 5000, halfClose = false } = options;
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on("data", (chunk: Buffer) => parts.push(chunk));
    socket.on("error", (error: NodeJS.ErrnoException) => {
      // A server may reset after answering a request it will not read to the end.
      if (error.code === "ECONNRESET" || error.code === "EPIPE") return;
      clearTimeout(timer);
      reject(error);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(parseRawAnswer(Buffer.concat(parts)));
    });
    // Half-closing says "no more bytes": a server waiting for a body or a header end sees EOF.
    if (halfClose) socket.end(bytes);
    else socket.write(bytes);
  });
}

export function parseRawAnswer(raw: Buffer): RawAnswer {
  const headEnd = raw.indexOf("\r\n\r\n");
  const head = (headEnd < 0 ? raw : raw.subarray(0, headEnd)).toString("latin1");
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const match = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  return { statusLine, status: match === null ? 0 : Number(match[1]), headers, body: headEnd < 0 ? Buffer.alloc(0) : raw.subarray(headEnd + 4), raw };
}

export interface RequestOptions extends Omit<SendOptions, "method"> {
  /** The token to send; `null` sends none. Defaults to the user's own. */
  token?: string | null;
  /** Another account's path (`AUTH_<uuid>`) instead of the user's own. */
  account?: string;
}

/** A user of the running server, with a token, speaking to its account (or another). */
export class TestUser {
  readonly harness: PithosHarness;
  readonly user: User;
  readonly password: string;
  token: string;

  constructor(harness: PithosHarness, user: User, password: string, token: string) {
    this.harness = harness;
    this.user = user;
    this.password = password;
    this.token = token;
  }

  get uuid(): string {
    return this.user.uuid;
  }

  get name(): string {
    return this.user.name;
  }

  /** `AUTH_<uuid>`: the account part of the path, and the 401 realm. */
  get account(): string {
    return `AUTH_${this.user.uuid}`;
  }

  /** The full URL of a path below this account (or `options.account`); `path` is sent as given (encode it). */
  url(path: string, account: string = this.account): string {
    return `${this.harness.storageRoot}/${account}${path}`;
  }

  request(method: string, path: string, options: RequestOptions = {}): Promise<Answer> {
    const headers: Record<string, string | number | readonly string[]> = { ...options.headers };
    const token = options.token === undefined ? this.token : options.token;
    if (token !== null) headers["x-auth-token"] = token;
    const { token: _token, account: _account, ...sendOptions } = options;
    return send(this.url(path, options.account), { ...sendOptions, method, headers });
  }

  /** PUT that must succeed with `status` (201 by default); the answer. */
  async put(path: string, body: Buffer | string = "", headers: Record<string, string | number | readonly string[]> = {}, status = 201): Promise<Answer> {
    const answer = await this.request("PUT", path, { body, headers });
    if (answer.status !== status) throw new Error(`PUT ${path}: ${answer.status} ${answer.text()} (expected ${status})`);
    return answer;
  }

  /** A new container (201), its name returned unchanged. */
  async container(name: string, headers: Record<string, string> = {}): Promise<string> {
    const answer = await this.request("PUT", `/${encodeURIComponent(name)}`, { headers });
    if (answer.status !== 201) throw new Error(`PUT container ${name}: ${answer.status} ${answer.text()}`);
    return name;
  }
}

export interface PithosHarness {
  served: ServedPithos;
  db: MetadataDatabase;
  /** `http://127.0.0.1:PORT/object-store/v1` */
  storageRoot: string;
  baseUrl: string;
  /** A new user (the name gets a unique suffix) with a fresh token. */
  user(name?: string, options?: { diskspaceBytes?: number }): Promise<TestUser>;
  close(): Promise<void>;
}

export async function pithosHarness(db: MetadataDatabase, options: ServePithosOptions = {}): Promise<PithosHarness> {
  const served = await servePithos(db, options);
  let users = 0;
  const harness: PithosHarness = {
    served,
    db,
    baseUrl: served.baseUrl,
    storageRoot: `${served.baseUrl}/object-store/v1`,
    async user(name = "user", userOptions = {}) {
      const unique = `${name}${++users}`;
      const password = `pw-${unique}`;
      const user = await served.addUser(unique, password, userOptions);
      const { token } = await served.login(unique, password);
      return new TestUser(harness, user, password, token);
    },
    close: () => served.close(),
  };
  return harness;
}

/** Names of the engine's content-addressed block objects (`b.<hash>`). */
export async function blockObjects(served: ServedPithos): Promise<string[]> {
  const names: string[] = [];
  for await (const name of served.engine.objects.list("b.")) names.push(name);
  return names.sort();
}

/** Path segments percent-encoded (UTF-8), slashes kept: `a b/é` → `a%20b/%C3%A9`. */
export function encodePath(name: string): string {
  return name.split("/").map(encodeURIComponent).join("/");
}

/**
 * One server for a describeEachEngine suite: started before its tests (on that engine's
 * database), closed after. Tests make their own users, so they share nothing else.
 *
 *   const harness = useHarness(databases, { blockSizeBytes: 4096 });
 *   it("…", async () => { const alice = await harness().user("alice"); … });
 */
export function useHarness(databases: TestDatabases, options: ServePithosOptions = {}): () => PithosHarness {
  let harness: PithosHarness | undefined;
  beforeAll(async () => {
    harness = await pithosHarness(await databases.open(), options);
  });
  afterAll(async () => {
    await harness?.close();
  });
  return () => {
    if (harness === undefined) throw new Error("the object-store test server did not start (see beforeAll)");
    return harness;
  };
}

/** Swift's X-Timestamp: 10 digits, a dot, 5 digits (swift.md 2). */
export const xTimestampPattern = /^\d{10}\.\d{5}$/;
/** Swift's listing last_modified: microseconds, no zone (swift.md 8). */
export const listingDatePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/;
/** X-Trans-Id: `tx` + 21 hex + `-` + 10 hex (swift.md 2). */
export const transIdPattern = /^tx[0-9a-f]{21}-[0-9a-f]{10}$/;

/** Swift's Last-Modified is the X-Timestamp rounded up to the second (swift.md 2). */
export function expectedLastModified(xTimestamp: string): string {
  return new Date(Math.ceil(Number(xTimestamp)) * 1000).toUTCString();
}

export function md5Hex(data: Buffer | string): string {
  return createHash("md5").update(data).digest("hex");
}

/** Deterministic bytes that differ at every offset of a block (no runs of NULs). */
export function patternBytes(length: number, seed = 1): Buffer {
  const data = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    data[i] = (state >>> 16) & 0xff;
  }
  return data;
}
