/**
 * The object store's one table of errors and its one mapping to the wire: Swift's status line
 * and small HTML page (swift.md 2):
 *
 *   404  Content-Type: text/html; charset=UTF-8
 *        <html><h1>Not Found</h1><p>The resource could not be found.</p></html>
 *
 * Titles and explanations are swift/common/swob.py RESPONSE_REASONS (2.30.1). Where Swift
 * answers with its own sentence instead of the page (`Maximum limit is 10000`, `Metadata name
 * too long: …`), the error carries that sentence as `body`, with the Content-Type Swift used
 * for it: swob's default `text/html; charset=UTF-8` unless the call site said `text/plain`.
 */

/** Swift's default error Content-Type (swob.Response.__init__). */
export const htmlContentType = "text/html; charset=UTF-8";
/** What Swift sends with `content_type='text/plain'` (no charset is added). */
export const plainContentType = "text/plain";

/** swob.py RESPONSE_REASONS, for the statuses this gateway answers with. */
export const statusReasons: Readonly<Record<number, { title: string; explanation: string }>> = {
  202: { title: "Accepted", explanation: "The request is accepted for processing." },
  400: { title: "Bad Request", explanation: "The server could not comply with the request since it is either malformed or otherwise incorrect." },
  401: { title: "Unauthorized", explanation: "This server could not verify that you are authorized to access the document you requested." },
  403: { title: "Forbidden", explanation: "Access was denied to this resource." },
  404: { title: "Not Found", explanation: "The resource could not be found." },
  405: { title: "Method Not Allowed", explanation: "The method is not allowed for this resource." },
  406: { title: "Not Acceptable", explanation: "The resource is not available in a format acceptable to your browser." },
  408: { title: "Request Timeout", explanation: "The server has waited too long for the request to be sent by the client." },
  409: { title: "Conflict", explanation: "There was a conflict when trying to complete your request." },
  411: { title: "Length Required", explanation: "Content-Length header required." },
  412: { title: "Precondition Failed", explanation: "A precondition for this request was not met." },
  413: { title: "Request Entity Too Large", explanation: "The body of your request was too large for this server." },
  414: { title: "Request URI Too Long", explanation: "The request URI was too long for this server." },
  415: { title: "Unsupported Media Type", explanation: "The request media type is not supported by this server." },
  416: { title: "Requested Range Not Satisfiable", explanation: "The Range requested is not available." },
  422: { title: "Unprocessable Entity", explanation: "Unable to process the contained instructions" },
  /** Not swob's: Node's HTTP parser refuses such heads before Swift's rules run (serve/framework-errors.ts). */
  431: { title: "Request Header Fields Too Large", explanation: "The request header fields were too large for this server." },
  500: { title: "Internal Error", explanation: "The server has either erred or is incapable of performing the requested operation." },
  501: { title: "Not Implemented", explanation: "The requested method is not implemented by this server." },
  503: { title: "Service Unavailable", explanation: "The server is currently unavailable. Please try again at a later time." },
};

/** Stable codes → HTTP status. Routes and wire helpers throw these; the plugin maps them once. */
export const pithosErrors = {
  EBAD_REQUEST: { status: 400 },
  /** No token, or one we do not know: 401, never 403 (swift.md 1, 11.11). */
  EUNAUTHORIZED: { status: 401 },
  /** A valid token without the right to do this. */
  EFORBIDDEN: { status: 403 },
  ENOT_FOUND: { status: 404 },
  EMETHOD_NOT_ALLOWED: { status: 405 },
  /** No listing format the Accept header admits (swob Accept.best_match → None). */
  ENOT_ACCEPTABLE: { status: 406 },
  /** Container not empty on DELETE; Pithos+ hashmap PUT with missing blocks. */
  ECONFLICT: { status: 409 },
  /** PUT with neither Content-Length nor chunked encoding (swift.md 5). */
  ELENGTH_REQUIRED: { status: 411 },
  EPRECONDITION_FAILED: { status: 412 },
  /** Object over max_file_size; Pithos+ quota exceeded. */
  ETOO_LARGE: { status: 413 },
  EURI_TOO_LONG: { status: 414 },
  ERANGE_NOT_SATISFIABLE: { status: 416 },
  /** The PUT's ETag header does not match the MD5 of the body (swift.md 5). */
  EETAG_MISMATCH: { status: 422 },
  /** Request headers over the HTTP server's limit (answered before any route runs). */
  EHEADERS_TOO_LARGE: { status: 431 },
  EINTERNAL: { status: 500 },
  ENOT_IMPLEMENTED: { status: 501 },
  EUNAVAILABLE: { status: 503 },
} as const;

export type PithosErrorCode = keyof typeof pithosErrors;

export interface PithosErrorOptions {
  /** Headers the error response carries besides Content-Type (Www-Authenticate, Content-Range). */
  headers?: Record<string, string>;
  /** Content-Type of an explicit `body`; Swift's default is its HTML type even for a sentence. */
  contentType?: string;
  cause?: unknown;
}

export class PithosError extends Error {
  readonly code: PithosErrorCode;
  /** The body Swift sends instead of its HTML page, or undefined for the page. */
  readonly body: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly contentType: string;

  constructor(code: PithosErrorCode, body?: string, options: PithosErrorOptions = {}) {
    super(body ?? statusReasons[pithosErrors[code].status]?.explanation ?? code, { cause: options.cause });
    this.name = "PithosError";
    this.code = code;
    this.body = body;
    this.headers = options.headers ?? {};
    this.contentType = options.contentType ?? htmlContentType;
  }

  get status(): number {
    return pithosErrors[this.code].status;
  }
}

/** `<html><h1>Title</h1><p>Explanation</p></html>`, swob's default body for an error status. */
export function statusPage(status: number): string {
  const reason = statusReasons[status];
  if (reason === undefined) throw new Error(`no Swift reason phrase for status ${status}`);
  return `<html><h1>${reason.title}</h1><p>${reason.explanation}</p></html>`;
}

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  /** Empty for HEAD: swob sends no body then, and Content-Length 0 (swift.md 2). */
  body: Buffer;
}

/** The status, headers and body of an error, for the plugin's error handler. */
export function errorResponse(error: PithosError, method: string): ErrorResponse {
  const body = method === "HEAD" ? Buffer.alloc(0) : Buffer.from(error.body ?? statusPage(error.status), "utf8");
  return { status: error.status, headers: { "Content-Type": error.contentType, ...error.headers }, body };
}

/**
 * 401 with `Www-Authenticate: Swift realm="<account>"`: the realm is the account named in the
 * path, or `unknown` (swob Response.www_authenticate; swift.md 1). The realm is URL-quoted as
 * Swift's wsgi_quote does.
 */
export function unauthorized(realm = "unknown"): PithosError {
  return new PithosError("EUNAUTHORIZED", undefined, { headers: { "Www-Authenticate": `Swift realm="${pythonQuote(realm)}"` } });
}

/** 416 with `Content-Range: bytes *\/<size>` and the HTML page (swift.md 6; swob _response_iter). */
export function rangeNotSatisfiable(sizeBytes: number): PithosError {
  return new PithosError("ERANGE_NOT_SATISFIABLE", undefined, { headers: { "Content-Range": `bytes */${sizeBytes}` } });
}

/** Our code for an HTTP status, for errors that arrive with only a status (the framework's own). */
const codeByStatus: ReadonlyMap<number, PithosErrorCode> = new Map(
  (Object.entries(pithosErrors) as Array<[PithosErrorCode, { status: number }]>).map(([code, { status }]) => [status, code]),
);

/**
 * Any thrown value as a PithosError: ours pass through; an error carrying a 4xx `statusCode`
 * (fastify's body-too-large, bad Content-Length…) keeps its status with Swift's page for it;
 * anything else is a 500 whose body says nothing of the cause.
 */
export function toPithosError(error: unknown): PithosError {
  if (error instanceof PithosError) return error;
  const statusCode = (error as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === "number" && statusCode >= 400 && statusCode < 500) {
    return new PithosError(codeByStatus.get(statusCode) ?? "EBAD_REQUEST", undefined, { cause: error });
  }
  return new PithosError("EINTERNAL", undefined, { cause: error });
}

/**
 * Python's urllib.parse.quote(text, safe="/"): UTF-8 bytes, unreserved characters and `/` kept,
 * everything else `%XX` upper-case. Swift quotes names this way wherever it echoes them in headers.
 */
export function pythonQuote(text: string, safe = "/"): string {
  let quoted = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const char = String.fromCharCode(byte);
    if (/[A-Za-z0-9_.\-~]/.test(char) || (byte < 0x80 && safe.includes(char))) quoted += char;
    else quoted += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return quoted;
}
