/**
 * Names on the wire: the request path `/v1/{account}/{container}/{object…}`, the path-like
 * headers (X-Copy-From, Destination, X-Object-Manifest) and account headers.
 *
 * Decoding is Swift's (swift.md 11.3): percent-decoding only, `+` stays a plus (rclone sends
 * `a+b&c=d.txt` unencoded), a malformed escape (`%zz`) stays literal as Python's unquote leaves
 * it, and the decoded bytes must be UTF-8 without NUL, else 412 "Invalid UTF8 or contains NULL"
 * (proxy/server.py check_utf8). The whole path is decoded before it is split, as WSGI hands Swift
 * PATH_INFO, so `c%2Fo` is container `c`, object `o`; a container name can never hold `/`.
 */
import { PithosError, plainContentType } from "./errors.ts";
import { maxContainerNameBytes, maxObjectNameBytes, validApiVersions } from "./info.ts";
import { highestCharCode, utf8ByteLength } from "./header-text.ts";

const invalidUtf8Message = "Invalid UTF8 or contains NULL";
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The raw text's bytes: characters up to 0xFF are bytes (how Node hands us request bytes), wider ones their UTF-8. */
function rawBytes(raw: string): Buffer {
  return highestCharCode(raw) > 0xff ? Buffer.from(raw, "utf8") : Buffer.from(raw, "latin1");
}

function hexValue(byte: number | undefined): number {
  if (byte === undefined) return -1;
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  return -1;
}

/** Python's urllib.parse.unquote on bytes, then strict UTF-8 without NUL. Throws 412. */
export function percentDecode(raw: string): string {
  const input = rawBytes(raw);
  const output = Buffer.alloc(input.length);
  let length = 0;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    const high = byte === 0x25 ? hexValue(input[i + 1]) : -1;
    const low = high === -1 ? -1 : hexValue(input[i + 2]);
    if (low !== -1) {
      output[length++] = high * 16 + low;
      i += 2;
    } else {
      output[length++] = byte;
    }
  }
  let text: string;
  try {
    text = fatalUtf8.decode(output.subarray(0, length));
  } catch {
    throw new PithosError("EPRECONDITION_FAILED", invalidUtf8Message);
  }
  if (text.includes("\0")) throw new PithosError("EPRECONDITION_FAILED", invalidUtf8Message);
  return text;
}

/** Container names: at most 256 UTF-8 bytes (proxy/controllers/container.py), no `/`, not empty. */
export function checkContainerName(name: string): string {
  if (name === "") throw new PithosError("EPRECONDITION_FAILED", "Container name cannot be empty");
  if (name.includes("/")) throw new PithosError("EPRECONDITION_FAILED", "Container name cannot contain slashes");
  const bytes = utf8ByteLength(name);
  if (bytes > maxContainerNameBytes) throw new PithosError("EBAD_REQUEST", `Container name length of ${bytes} longer than ${maxContainerNameBytes}`);
  return name;
}

/** Object names: at most 1024 UTF-8 bytes (constraints.py check_object_creation), not empty. */
export function checkObjectName(name: string): string {
  if (name === "") throw new PithosError("EPRECONDITION_FAILED", "Object name cannot be empty");
  const bytes = utf8ByteLength(name);
  if (bytes > maxObjectNameBytes) {
    throw new PithosError("EBAD_REQUEST", `Object name length of ${bytes} longer than ${maxObjectNameBytes}`, { contentType: plainContentType });
  }
  return name;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The user UUID an account name stands for: `AUTH_<uuid>` (Swift's reseller prefix, what our
 * catalog hands out) or the bare `<uuid>` (Pithos+, synnefo.md B.1); undefined for anything else,
 * which names no account of ours (the route answers 401/403/404 with the name as realm).
 */
export function accountUuid(accountName: string): string | undefined {
  const bare = accountName.startsWith("AUTH_") ? accountName.slice(5) : accountName;
  return uuidPattern.test(bare) ? bare : undefined;
}

export interface AccountName {
  /** As in the path, decoded: the 401 realm and what listings echo. */
  account: string;
  /** The user it belongs to, if it has one of our two forms. */
  accountUuid: string | undefined;
}

/**
 * A request path, split. `kind` says which level it names; the fields below that level are
 * undefined (an account-level path has no container or object).
 */
export interface ObjectStorePath {
  kind: "root" | "account" | "container" | "object";
  /** `v1` or `v1.0`; anything for `root`, which has no account to check it against. */
  version: string;
  account: string | undefined;
  accountUuid: string | undefined;
  container: string | undefined;
  object: string | undefined;
}

/**
 * Splits a request path below the API root: `/v1`, `/v1/{account}`, `/v1/{account}/{container}`
 * (a trailing `/` is the container), `/v1/{account}/{container}/{object…}` (the object keeps its
 * slashes, a trailing one included: `folder/` is its own object, swift.md 5). `rawPath` is the
 * undecoded request target (Node's request.url with the mount prefix removed, version kept);
 * anything from `?` on is the query and is dropped. As Swift's split_path(path, 1, 4, True) and
 * get_controller: an empty account or container before a later segment (`/v1//c`, `/v1/a//o`) is
 * 412 "Bad URL"; a version other than v1/v1.0 with an account is 400; a path not starting with
 * `/` is 404. Names over the length limits are 400 for every method (Swift checks them on PUT
 * only and answers 404 to a GET, since nothing can exist there).
 */
export function parseObjectStorePath(rawPath: string): ObjectStorePath {
  const query = rawPath.indexOf("?");
  const path = percentDecode(query === -1 ? rawPath : rawPath.slice(0, query));
  if (!path.startsWith("/")) throw new PithosError("ENOT_FOUND");
  // Python's path.split('/', 4): at most five pieces, the last one holding the rest.
  const pieces = path.split("/");
  const [, version = "", account = "", container = ""] = pieces;
  const object = pieces.slice(4).join("/");
  if (version === "") throw new PithosError("ENOT_FOUND");
  const root: ObjectStorePath = { kind: "root", version, account: undefined, accountUuid: undefined, container: undefined, object: undefined };
  if (account === "") {
    if (container !== "" || object !== "") throw new PithosError("EPRECONDITION_FAILED", "Bad URL");
    return root;
  }
  if (!validApiVersions.includes(version)) throw new PithosError("EBAD_REQUEST");
  const atAccount: ObjectStorePath = { ...root, kind: "account", account, accountUuid: accountUuid(account) };
  if (container === "") {
    if (object !== "") throw new PithosError("EPRECONDITION_FAILED", "Bad URL");
    return atAccount;
  }
  const atContainer: ObjectStorePath = { ...atAccount, kind: "container", container: checkContainerName(container) };
  if (object === "") return atContainer;
  return { ...atContainer, kind: "object", object: checkObjectName(object) };
}

/** The headers that name an object as `/container/object` (or without the leading slash). */
export type ObjectPathHeader = "X-Copy-From" | "Destination" | "X-Move-From" | "X-Source-Object";

/**
 * `X-Copy-From: /c/o` or `c/o`, and its kin: percent-decoded, then split at the first slash
 * after the container (copy.py check_path_header). Missing container or object → 412 "<Header>
 * header must be of the form <container name>/<object name>" (swift.md 9: `bad` → 412).
 */
export function parseObjectPathHeader(header: ObjectPathHeader, value: string): { container: string; object: string } {
  const decoded = percentDecode(value);
  const path = decoded.startsWith("/") ? decoded.slice(1) : decoded;
  const slash = path.indexOf("/");
  const container = slash === -1 ? path : path.slice(0, slash);
  const object = slash === -1 ? "" : path.slice(slash + 1);
  if (container === "" || object === "") {
    throw new PithosError("EPRECONDITION_FAILED", `${header} header must be of the form <container name>/<object name>`);
  }
  return { container: checkContainerName(container), object: checkObjectName(object) };
}

/** The headers that name another account (copy between accounts). */
export type AccountHeader = "Destination-Account" | "X-Copy-From-Account" | "X-Source-Account" | "X-Move-From-Account";

/** An account header's name, percent-decoded; empty or with `/` → 412 (constraints.py check_account_format). */
export function parseAccountHeader(value: string): AccountName {
  const account = percentDecode(value);
  if (account === "") throw new PithosError("EPRECONDITION_FAILED", "Account name cannot be empty");
  if (account.includes("/")) throw new PithosError("EPRECONDITION_FAILED", "Account name cannot contain slashes");
  return { account, accountUuid: accountUuid(account) };
}

export interface ObjectManifest {
  /** The header as received: what is stored and echoed on HEAD/GET (swift.md 9). */
  value: string;
  /** Percent-decoded, as dlo.py decodes it before listing the segments. */
  container: string;
  prefix: string;
}

/**
 * `X-Object-Manifest: <container>/<prefix>` (DLO). dlo.py checks the raw value: both parts
 * non-empty, no `?` or `&`, prefix not starting with `/`; else 400 "X-Object-Manifest must be in
 * the format container/prefix".
 */
export function parseObjectManifest(value: string): ObjectManifest {
  const slash = value.indexOf("/");
  const rawContainer = slash === -1 ? "" : value.slice(0, slash);
  const rawPrefix = slash === -1 ? "" : value.slice(slash + 1);
  if (rawContainer === "" || rawPrefix === "" || value.includes("?") || value.includes("&") || rawPrefix.startsWith("/")) {
    throw new PithosError("EBAD_REQUEST", "X-Object-Manifest must be in the format container/prefix");
  }
  return { value, container: checkContainerName(percentDecode(rawContainer)), prefix: percentDecode(rawPrefix) };
}
