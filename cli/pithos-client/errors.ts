/**
 * What can go wrong talking to the object store, as one table of codes (the CLI gives each
 * its exit code: output.ts `exitCodes.remote`, README `REMOTE_<code>`).
 *
 *   HTTP status ──remoteCodeForStatus──► RemoteError(code, "<what>: <reason> (HTTP n)")
 *   fetch failure (refused, reset, DNS) ──► EUNREACHABLE
 *   a reply we cannot use ──► EPROTOCOL;  a block whose hash differs ──► EINTEGRITY
 */

export const remoteErrorCodes = {
  /** 401: the login failed, or the server refused the token. */
  EAUTH: "not authenticated",
  /** 403: the account, container or object is someone else's and not shared with us. */
  EFORBIDDEN: "forbidden",
  /** 404: no such container or object. */
  ENOT_FOUND: "not found",
  /** 409 (outside the hashmap protocol): e.g. deleting a container that still holds objects. */
  ECONFLICT: "conflict",
  /** 412: a condition failed (the object changed, or exists). */
  EPRECONDITION: "precondition failed",
  /** 413: over the quota, or too large. */
  EQUOTA: "quota exceeded or too large",
  /** 400, 411, 416, 422…: the server refused the request as malformed (a bad name, or a bug here). */
  EREFUSED: "request refused",
  /** 5xx: the server failed. */
  ESERVER: "server error",
  /** No answer at all: connection refused or reset, unknown host, timeout. */
  EUNREACHABLE: "server unreachable",
  /** A block whose hash is not the one expected (sent or received), or uploads that never complete. */
  EINTEGRITY: "integrity check failed",
  /** A reply we cannot use: unexpected status, malformed JSON or headers. */
  EPROTOCOL: "unexpected reply",
} as const;

export type RemoteErrorCode = keyof typeof remoteErrorCodes;

export class RemoteError extends Error {
  readonly code: RemoteErrorCode;
  /** The HTTP status, when there was a reply. */
  readonly status: number | undefined;

  constructor(code: RemoteErrorCode, message: string, options?: { status?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "RemoteError";
    this.code = code;
    this.status = options?.status;
  }
}

export function isRemoteError(value: unknown, code?: RemoteErrorCode): value is RemoteError {
  return value instanceof RemoteError && (code === undefined || value.code === code);
}

export function remoteCodeForStatus(status: number): RemoteErrorCode {
  switch (status) {
    case 401:
      return "EAUTH";
    case 403:
      return "EFORBIDDEN";
    case 404:
      return "ENOT_FOUND";
    case 409:
      return "ECONFLICT";
    case 412:
      return "EPRECONDITION";
    case 413:
      return "EQUOTA";
    default:
      if (status >= 500) return "ESERVER";
      if (status >= 400) return "EREFUSED";
      return "EPROTOCOL";
  }
}

/** Longest server explanation quoted in a message: errors stay one readable line. */
const serverReasonCharsMax = 200;

/**
 * The server's own words from an error body: Swift's small HTML (`<h1>Not Found</h1><p>The
 * resource could not be found.</p>`), Keystone's JSON `{"error": {"message"}}`, or text.
 */
export function serverReason(body: string): string {
  let text = body.trim();
  if (text.startsWith("{")) {
    try {
      const parsed = JSON.parse(text) as { error?: { message?: unknown }; message?: unknown };
      const message = parsed.error?.message ?? parsed.message;
      if (typeof message === "string") text = message;
    } catch {
      // not JSON after all: use it as text
    }
  }
  // The <h1> repeats the status line; the <p> explains.
  const paragraph = /<p>([\s\S]*?)<\/p>/i.exec(text);
  if (paragraph !== null) text = paragraph[1] as string;
  text = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
  return text.length > serverReasonCharsMax ? `${text.slice(0, serverReasonCharsMax)}…` : text;
}

/** A RemoteError for a reply with an error status: `<what>: <reason> (HTTP n[, request id])`. */
export function errorForStatus(what: string, status: number, body: string, requestId: string | null): RemoteError {
  const code = remoteCodeForStatus(status);
  const reason = serverReason(body);
  const why = reason === "" ? remoteErrorCodes[code] : reason.replace(/\.$/, "");
  // A server failure is looked up in the server's log by its request id.
  const id = code === "ESERVER" && requestId !== null ? `, request ${requestId}` : "";
  return new RemoteError(code, `${what}: ${why} (HTTP ${status}${id})`, { status });
}

/** A RemoteError for a request that got no reply (fetch threw). */
export function errorForFailure(what: string, url: string, error: unknown): RemoteError {
  if (isRemoteError(error)) return error;
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = typeof cause?.code === "string" ? cause.code : undefined;
  const detail = code ?? (typeof cause?.message === "string" ? cause.message : error instanceof Error ? error.message : String(error));
  const origin = safeOrigin(url);
  const reasons: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ECONNRESET: "connection reset",
    ENOTFOUND: "unknown host",
    EAI_AGAIN: "host name lookup failed",
    ETIMEDOUT: "timed out",
    UND_ERR_CONNECT_TIMEOUT: "connection timed out",
    UND_ERR_SOCKET: "connection closed by the server",
  };
  const reason = code !== undefined && reasons[code] !== undefined ? `${reasons[code]} (${code})` : detail;
  return new RemoteError("EUNREACHABLE", `${what}: cannot reach ${origin}: ${reason}`, { cause: error });
}

function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}
