/**
 * One HTTP exchange with Node's global fetch (undici: keep-alive connections, reused across
 * requests), read completely and bounded, with error statuses turned into RemoteErrors.
 *
 *   Session.request ──X-Auth-Token──► fetch ──status in `ok`?──► { status, headers, body }
 *                                          ├─401 and a password──► log in again, once, retry
 *                                          └─other status──► RemoteError (errors.ts)
 *
 * Every body is read to its end, even an ignored one: undici returns a connection to its
 * pool only after the body is consumed, so an unread body would cost a new connection.
 */
import { errorForFailure, errorForStatus, RemoteError } from "./errors.ts";

/**
 * Largest reply body we read: a Range GET returns one block (4 MiB by default; Pithos+
 * deployments use up to 64 MiB), a listing page of 10 000 entries is ~4 MB of JSON, a
 * hashmap of a 5 GiB object ~90 KB. 128 MiB covers them all and bounds a broken server.
 */
export const replyBytesMaxDefault = 128 * 1024 * 1024;

export type HttpMethod = "GET" | "HEAD" | "PUT" | "POST" | "DELETE";

export interface HttpRequest {
  method: HttpMethod;
  url: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** What we were doing, for messages: "upload photos/a.jpg". */
  what: string;
  /** Statuses that are answers, not errors; any other throws a RemoteError. */
  ok: readonly number[];
  replyBytesMax?: number;
  /**
   * Read the body of a successful reply into this buffer (reused block memory: no fresh
   * pages, no concatenation); the reply's `body` is then a view of it. At most its length.
   */
  into?: Buffer;
}

export interface HttpReply {
  status: number;
  headers: Headers;
  body: Buffer;
}

/** What went over the wire in request and reply bodies (headers not counted). */
export interface TrafficCounters {
  requests: number;
  bodyBytesSent: number;
  bodyBytesReceived: number;
}

export function newTrafficCounters(): TrafficCounters {
  return { requests: 0, bodyBytesSent: 0, bodyBytesReceived: 0 };
}

/** Sends one request without a token (login); see Session.request for the authenticated ones. */
export async function httpRequest(request: HttpRequest, counters?: TrafficCounters): Promise<HttpReply> {
  const body = typeof request.body === "string" ? Buffer.from(request.body, "utf8") : request.body;
  let response: Response;
  try {
    response = await fetch(request.url, {
      method: request.method,
      headers: request.headers ?? {},
      ...(body !== undefined && { body }),
      redirect: "manual",
    });
  } catch (error) {
    throw errorForFailure(request.what, request.url, error);
  }
  if (counters !== undefined) {
    counters.requests++;
    counters.bodyBytesSent += body?.length ?? 0;
  }
  const replyBody = await readReplyBody(response, request).catch((error: unknown) => {
    throw errorForFailure(request.what, request.url, error);
  });
  if (counters !== undefined) counters.bodyBytesReceived += replyBody.length;
  if (!request.ok.includes(response.status)) {
    throw errorForStatus(request.what, response.status, replyBody.toString("utf8"), response.headers.get("x-openstack-request-id"));
  }
  return { status: response.status, headers: response.headers, body: replyBody };
}

async function readReplyBody(response: Response, request: HttpRequest): Promise<Buffer> {
  if (response.body === null) return Buffer.alloc(0);
  const into = request.ok.includes(response.status) ? request.into : undefined;
  const limit = into?.length ?? request.replyBytesMax ?? replyBytesMaxDefault;
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) {
    await response.body.cancel();
    throw tooLong(request, limit);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body) {
    // Leaving the loop cancels the stream (and closes that connection).
    if (total + chunk.length > limit) throw tooLong(request, limit);
    if (into !== undefined) into.set(chunk, total);
    else chunks.push(chunk);
    total += chunk.length;
  }
  return into !== undefined ? into.subarray(0, total) : Buffer.concat(chunks, total);
}

function tooLong(request: HttpRequest, limit: number): RemoteError {
  return new RemoteError("EPROTOCOL", `${request.what}: the reply is longer than ${limit} bytes`);
}

/** A token and the object store's URL for it (`…/object-store/v1/AUTH_<uuid>`, no trailing slash). */
export interface StorageCredentials {
  token: string;
  storageUrl: string;
}

/**
 * Authenticated requests against one account. `relogin`, when given (a password login),
 * gets a fresh token when the server refuses ours (expired mid-transfer); the request is
 * then sent once more.
 */
export class Session {
  readonly counters: TrafficCounters = newTrafficCounters();
  #credentials: StorageCredentials;
  readonly #relogin: (() => Promise<StorageCredentials>) | undefined;

  constructor(credentials: StorageCredentials, relogin?: () => Promise<StorageCredentials>) {
    this.#credentials = { token: credentials.token, storageUrl: credentials.storageUrl.replace(/\/+$/, "") };
    this.#relogin = relogin;
  }

  get storageUrl(): string {
    return this.#credentials.storageUrl;
  }

  /** `pathAndQuery` is appended to the storage URL: "" (the account), "/c", "/c/o?hashmap…". */
  async request(request: Omit<HttpRequest, "url"> & { pathAndQuery: string }): Promise<HttpReply> {
    const send = (): Promise<HttpReply> =>
      httpRequest(
        {
          ...request,
          url: `${this.#credentials.storageUrl}${request.pathAndQuery}`,
          headers: { ...request.headers, "x-auth-token": this.#credentials.token },
          ok: request.ok.includes(401) ? request.ok : [...request.ok, 401],
        },
        this.counters,
      );
    const reply = await send();
    if (reply.status !== 401 || request.ok.includes(401)) return reply;
    if (this.#relogin !== undefined) {
      this.#credentials = await this.#relogin();
      const again = await send();
      if (again.status !== 401) return again;
    }
    throw errorForStatus(request.what, 401, "the server refused the token: log in again (expired or revoked)", null);
  }
}
