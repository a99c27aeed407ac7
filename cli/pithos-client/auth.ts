/**
 * Logging in: Keystone v3 (openstack-clients.md 1.2, 1.3), as the swift client does.
 *
 *   user + password ──POST {url}/identity/v3/auth/tokens──► X-Subject-Token + catalog
 *   token alone     ──GET  {url}/identity/v3/auth/tokens (X-Subject-Token)──► catalog
 *   token + storage URL ──► used as given, no request
 *
 * The storage URL is the catalog's public `object-store` endpoint, `…/v1/AUTH_<project>`.
 */
import { httpRequest, Session, type StorageCredentials } from "./http.ts";
import { RemoteError } from "./errors.ts";

export interface LoginOptions {
  /** The server's base URL: `http://127.0.0.1:8080`. */
  url: string;
  user?: string;
  password?: string;
  token?: string;
  /** With `token`: skip the identity service altogether. */
  storageUrl?: string;
}

/** A Session for the options' account; a password login also logs in again when the token expires. */
export async function openSession(options: LoginOptions): Promise<Session> {
  if (options.token !== undefined) {
    const credentials = options.storageUrl !== undefined ? { token: options.token, storageUrl: options.storageUrl } : await catalogForToken(options.url, options.token);
    return new Session(credentials);
  }
  const { user, password } = options;
  if (user === undefined || password === undefined) throw new Error("openSession: a user and password, or a token, are needed");
  const login = (): Promise<StorageCredentials> => passwordLogin(options.url, user, password);
  return new Session(await login(), login);
}

function tokensUrl(url: string): string {
  return `${url.replace(/\/+$/, "")}/identity/v3/auth/tokens`;
}

/** Scoped to the project named after the user, the one that holds the user's account. */
export async function passwordLogin(url: string, user: string, password: string): Promise<StorageCredentials> {
  const domain = { name: "Default" };
  const body = JSON.stringify({
    auth: {
      identity: { methods: ["password"], password: { user: { name: user, password, domain } } },
      scope: { project: { name: user, domain } },
    },
  });
  const reply = await httpRequest({
    method: "POST",
    url: tokensUrl(url),
    headers: { "content-type": "application/json", accept: "application/json" },
    body,
    what: `log in as ${user} at ${url}`,
    ok: [200, 201],
    replyBytesMax: 1024 * 1024,
  });
  const token = reply.headers.get("x-subject-token");
  if (token === null || token === "") throw new RemoteError("EPROTOCOL", `log in as ${user} at ${url}: the reply has no X-Subject-Token`);
  return { token, storageUrl: objectStoreUrl(reply.body, `log in as ${user} at ${url}`) };
}

/** Keystone's token validation returns the token's own catalog. */
async function catalogForToken(url: string, token: string): Promise<StorageCredentials> {
  const reply = await httpRequest({
    method: "GET",
    url: tokensUrl(url),
    headers: { "x-auth-token": token, "x-subject-token": token, accept: "application/json" },
    what: `check the token at ${url}`,
    ok: [200],
    replyBytesMax: 1024 * 1024,
  });
  return { token, storageUrl: objectStoreUrl(reply.body, `check the token at ${url}`) };
}

interface CatalogEntry {
  type?: unknown;
  endpoints?: Array<{ interface?: unknown; url?: unknown }>;
}

/** The first public object-store endpoint, as the swift client picks it (openstack-clients.md 1.3). */
export function objectStoreUrl(tokenBody: Buffer, what: string): string {
  let catalog: unknown;
  try {
    catalog = (JSON.parse(tokenBody.toString("utf8")) as { token?: { catalog?: unknown } }).token?.catalog;
  } catch {
    throw new RemoteError("EPROTOCOL", `${what}: the token reply is not JSON`);
  }
  if (!Array.isArray(catalog)) throw new RemoteError("EPROTOCOL", `${what}: the token has no catalog (an unscoped token?)`);
  for (const entry of catalog as CatalogEntry[]) {
    if (entry.type !== "object-store" || !Array.isArray(entry.endpoints)) continue;
    const endpoint = entry.endpoints.find((candidate) => candidate.interface === "public" && typeof candidate.url === "string");
    if (endpoint !== undefined) return (endpoint.url as string).replace(/\/+$/, "");
  }
  throw new RemoteError("EPROTOCOL", `${what}: the catalog lists no public object-store endpoint`);
}
