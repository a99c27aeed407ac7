/**
 * The image service's tests: the whole server (servePithos mounts /image beside the object
 * store), users with tokens, and requests to `/image…` as a given user.
 *
 *   const h = useImageHarness(databases, { blockSizeBytes: 4096 });
 *   const alice = await h().user("alice");
 *   const created = await alice.image("POST", "/v2/images", { json: { name: "x", disk_format: "raw", container_format: "bare" } });
 *   await alice.put("/c/f", data);                       // the object store, as pithos's TestUser
 */
import type { TestDatabases } from "../../../db/testing/databases.ts";
import { send, useHarness, type Answer, type PithosHarness, type SendOptions, type TestUser } from "../../pithos/testing/http.ts";
import type { ServePithosOptions } from "../../pithos/testing/server.ts";

export interface ImageRequestOptions extends Omit<SendOptions, "method"> {
  /** A JSON body (Content-Type application/json unless the headers say otherwise). */
  json?: unknown;
  /** The token to send; null sends none; the user's own by default. */
  token?: string | null;
}

export interface ImageUser {
  user: TestUser;
  uuid: string;
  name: string;
  password: string;
  token: string;
  /** A request to `{base}/image{path}`. */
  image(method: string, path: string, options?: ImageRequestOptions): Promise<Answer>;
  /** `image()` that must answer `status`; its JSON body (or undefined when empty). */
  expectJson<T = Record<string, unknown>>(method: string, path: string, status: number, options?: ImageRequestOptions): Promise<T>;
  /** A v2 image created and uploaded; its JSON after the upload. */
  uploadImage(name: string, data: Buffer, fields?: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** The object store, as pithos's tests speak to it. */
  put: TestUser["put"];
  container: TestUser["container"];
  objectRequest: TestUser["request"];
}

export interface ImageHarness {
  pithos: PithosHarness;
  baseUrl: string;
  user(name?: string): Promise<ImageUser>;
}

export function imageUser(harness: PithosHarness, user: TestUser): ImageUser {
  const image = (method: string, path: string, options: ImageRequestOptions = {}): Promise<Answer> => {
    const { json, token, headers, ...rest } = options;
    const sent: Record<string, string | number | readonly string[]> = { ...headers };
    const secret = token === undefined ? user.token : token;
    if (secret !== null) sent["x-auth-token"] = secret;
    const has = (header: string) => Object.keys(sent).some((name) => name.toLowerCase() === header);
    if (json !== undefined && !has("content-type")) sent["content-type"] = "application/json";
    // What the SDK sends on reads: errors come back as Glance's JSON (errors.ts).
    if (!has("accept")) sent["accept"] = "application/json";
    return send(`${harness.baseUrl}/image${path}`, { ...rest, method, headers: sent, ...(json !== undefined && { body: JSON.stringify(json) }) });
  };
  const self: ImageUser = {
    user,
    uuid: user.uuid,
    name: user.name,
    password: user.password,
    token: user.token,
    image,
    async expectJson<T>(method: string, path: string, status: number, options: ImageRequestOptions = {}): Promise<T> {
      const answer = await image(method, path, options);
      if (answer.status !== status) throw new Error(`${method} ${path}: ${answer.status} ${answer.text()} (expected ${status})`);
      return (answer.body.length === 0 ? undefined : answer.json()) as T;
    },
    async uploadImage(name, data, fields = {}) {
      const created = await self.expectJson("POST", "/v2/images", 201, { json: { name, disk_format: "raw", container_format: "bare", ...fields } });
      await self.expectJson("PUT", `/v2/images/${String(created["id"])}/file`, 204, { body: data, headers: { "content-type": "application/octet-stream" } });
      return self.expectJson("GET", `/v2/images/${String(created["id"])}`, 200);
    },
    put: (...args) => user.put(...args),
    container: (...args) => user.container(...args),
    objectRequest: (...args) => user.request(...args),
  };
  return self;
}

/** One server per describeEachEngine suite (useHarness's), with image-speaking users. */
export function useImageHarness(databases: TestDatabases, options: ServePithosOptions = {}): () => ImageHarness {
  const pithos = useHarness(databases, options);
  return () => {
    const harness = pithos();
    return {
      pithos: harness,
      baseUrl: harness.baseUrl,
      user: async (name = "user") => imageUser(harness, await harness.user(name)),
    };
  };
}
