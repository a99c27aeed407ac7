/**
 * What fastify and Node's HTTP parser refuse before any plugin runs, answered in each API's
 * convention (framework-errors.ts), over a real socket to the whole server: a malformed
 * percent-escape, an over-long path parameter, headers over Node's limit and an unreadable
 * request head, at every mount prefix. After each refusal the server goes on serving.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeCompute } from "../compute/api/testing/fake-compute.ts";
import { ensureResources, migrateToLatest, openDatabase, standardResources, type MetadataDatabase } from "../db/index.ts";
import { FileObjectStore } from "../engine/blocker/file.ts";
import { Engine } from "../engine/engine.ts";
import { PithosService } from "../gateways/pithos/index.ts";
import { VolumeService } from "../gateways/volumes/index.ts";
import { pathParameterBytesMax } from "./framework-errors.ts";
import { buildServer } from "./server.ts";

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection after answering. */
  closed: boolean;
}

let dir: string;
let db: MetadataDatabase;
let engine: Engine;
let app: FastifyInstance;
let port: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-serve-"));
  db = await openDatabase(`sqlite:${join(dir, "meta.db")}`);
  await migrateToLatest(db);
  await ensureResources(db, standardResources);
  engine = await Engine.init(await FileObjectStore.open(join(dir, "store")), { blockSizeBytes: 4096 });
  app = await buildServer({ db, pithos: new PithosService({ engine, db }), compute: new FakeCompute(), volumes: new VolumeService({ db, engine }) });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  port = typeof address === "object" && address !== null ? address.port : 0;
});

afterAll(async () => {
  await app.close();
  await engine.close();
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

/** Bytes as given over a new connection; the whole answer, read until the server closes or 5 s pass. */
function raw(bytes: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let closed = false;
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => (closed = true));
    socket.on("error", reject);
    socket.on("close", () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("utf8");
      const split = text.indexOf("\r\n\r\n");
      if (split < 0) return reject(new Error(`no HTTP answer: ${JSON.stringify(text.slice(0, 200))}`));
      const [statusLine = "", ...lines] = text.slice(0, split).split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body: text.slice(split + 4), closed });
    });
    socket.write(bytes);
  });
}

/** One request over node:http (the URL sent exactly as given). */
function get(path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: "127.0.0.1", port, path, headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers as Record<string, string>, body: Buffer.concat(chunks).toString("utf8"), closed: false }),
      );
    });
    request.on("error", reject);
    request.end();
  });
}

type Shape = "nova" | "swift" | "glance-html" | "glance-json" | "astakos" | "keystone" | "fastify";

/** The body (and headers) must be the convention's, with this status inside it where it has one. */
function expectShape(answer: Answer, status: number, shape: Shape): void {
  expect(answer.status, answer.body).toBe(status);
  switch (shape) {
    case "nova":
      expect(answer.headers["content-type"]).toMatch(/^application\/json/);
      expect(JSON.parse(answer.body)).toEqual({ badRequest: { code: status, message: expect.any(String) } });
      return;
    case "swift":
      expect(answer.headers["content-type"]).toBe("text/html; charset=UTF-8");
      expect(answer.headers["x-trans-id"]).toMatch(/^tx[0-9a-f]{21}-[0-9a-f]{10}$/);
      expect(answer.body).toMatch(/^<html><h1>[^<]+<\/h1><p>[^<]+<\/p><\/html>$/);
      return;
    case "glance-html":
      expect(answer.headers["content-type"]).toBe("text/html; charset=UTF-8");
      expect(answer.body).toContain(`<h1>${status} `);
      return;
    case "glance-json":
      expect(JSON.parse(answer.body)).toEqual({ message: expect.any(String), code: expect.stringMatching(new RegExp(`^${status} `)), title: expect.any(String) });
      return;
    case "astakos":
      expect(JSON.parse(answer.body)).toEqual({ badRequest: { code: 400, message: expect.any(String), details: "" } });
      return;
    case "keystone":
      expect(JSON.parse(answer.body)).toEqual({ error: { code: status, title: expect.any(String), message: expect.any(String) } });
      return;
    case "fastify":
      expect(JSON.parse(answer.body)).toMatchObject({ statusCode: status, error: expect.any(String), message: expect.any(String) });
  }
}

/** The server still answers, over a new connection, at the prefix just refused. */
async function stillServing(): Promise<void> {
  expect((await get("/healthz")).status).toBe(200);
  expect((await get("/compute/v2.1/")).status).toBe(200);
  expect((await get("/identity/v3")).status).toBe(200);
  expect((await get("/object-store/info")).status).toBe(200);
}

const longSegment = "a".repeat(pathParameterBytesMax + 1);

describe("fastify's refusals before routing (frameworkErrors)", () => {
  const cases: Array<[string, string, number, Shape, Record<string, string>?]> = [
    ["a bad escape at /compute", "/compute/v2.1/servers/%zz", 400, "nova"],
    ["a long id at /compute (Nova's 4xx are 400)", `/compute/v2.1/servers/${longSegment}`, 400, "nova"],
    // Cinder's fault body has Nova's shape (cinder/api/openstack/wsgi.py Fault).
    ["a bad escape at /volume", "/volume/v3/0a1b/volumes/%zz", 400, "nova"],
    ["a long id at /volume (Cinder's 4xx here are 400)", `/volume/v3/0a1b/volumes/${longSegment}`, 400, "nova"],
    ["a bad escape at /public", "/public/%zz", 400, "swift"],
    ["a long token at /public", `/public/${longSegment}`, 414, "swift"],
    ["a bad escape at /image", "/image/v2/images/%zz", 400, "glance-html"],
    ["a long id at /image, Accept JSON", `/image/v2/images/${longSegment}`, 414, "glance-json", { accept: "application/json" }],
    ["a bad escape at /identity", "/identity/v3/%zz", 400, "keystone"],
    ["a bad escape at /auth", "/auth/v1.0/%zz", 400, "keystone"],
    ["a long serial at /identity/account", `/identity/account/v1.0/commissions/${longSegment}`, 400, "astakos"],
    ["a bad escape elsewhere", "/healthz/%zz", 400, "fastify"],
  ];
  for (const [what, path, status, shape, headers] of cases) {
    it(`answers ${what} in its API's convention`, async () => {
      const answer = await get(path, headers);
      expectShape(answer, status, shape);
      expect(answer.headers["x-openstack-request-id"]).toBeTruthy();
      // Our sentence, not fastify's echo of the whole URL.
      expect(answer.body).not.toContain(longSegment);
      await stillServing();
    });
  }

  it("routes path parameters up to the named limit (a 255-character keypair name is looked up)", async () => {
    const answer = await get(`/compute/v2.1/os-keypairs/${"k".repeat(255)}`);
    // No token: the plugin's own 401, not the router's refusal.
    expect(answer.status).toBe(401);
    expect(Object.keys(JSON.parse(answer.body) as object)).toEqual(["unauthorized"]);
  });

  it("leaves the object store's own escapes to it (%zz is an object name there)", async () => {
    const answer = await get("/object-store/v1/%zz");
    expect(answer.status).toBe(401);
    expect(answer.headers["x-trans-id"]).toBeTruthy();
  });
});

describe("Node's HTTP parser refusals (clientError)", () => {
  const bigHeader = `x-big: ${"b".repeat(20 * 1024)}\r\n`;
  const cases: Array<[string, string, number, Shape]> = [
    ["headers too large at /compute", `GET /compute/v2.1/servers HTTP/1.1\r\nhost: x\r\n${bigHeader}\r\n`, 400, "nova"],
    ["headers too large at /volume", `GET /volume/v3/0a1b/volumes HTTP/1.1\r\nhost: x\r\n${bigHeader}\r\n`, 400, "nova"],
    ["headers too large at /object-store", `GET /object-store/v1/AUTH_x HTTP/1.1\r\nhost: x\r\n${bigHeader}\r\n`, 431, "swift"],
    ["headers too large at /image", `GET /image/v2/images HTTP/1.1\r\nhost: x\r\n${bigHeader}\r\n`, 431, "glance-html"],
    ["headers too large at /identity", `POST /identity/v3/auth/tokens HTTP/1.1\r\nhost: x\r\n${bigHeader}\r\n`, 431, "keystone"],
    ["headers too large elsewhere", `GET /metrics HTTP/1.1\r\nhost: x\r\n${bigHeader}\r\n`, 431, "fastify"],
    ["a header line without a colon at /compute", "GET /compute/v2.1/flavors HTTP/1.1\r\nhost: x\r\nnot a header\r\n\r\n", 400, "nova"],
    ["a header line without a colon at /public", "GET /public/abc HTTP/1.1\r\nhost: x\r\nnot a header\r\n\r\n", 400, "swift"],
    ["a header line without a colon at /identity", "GET /identity/v3 HTTP/1.1\r\nhost: x\r\nnot a header\r\n\r\n", 400, "keystone"],
    ["a bad Content-Length at /image", "POST /image/v2/images HTTP/1.1\r\nhost: x\r\ncontent-length: 1x\r\n\r\n", 400, "glance-html"],
    ["bytes that are no HTTP", "\u0001\u0002 hello\r\n\r\n", 400, "fastify"],
  ];
  for (const [what, bytes, status, shape] of cases) {
    it(`answers ${what} well-formed, with Connection: close`, async () => {
      const answer = await raw(bytes);
      expectShape(answer, status, shape);
      expect(answer.headers["connection"]).toBe("close");
      expect(Number(answer.headers["content-length"])).toBe(Buffer.byteLength(answer.body));
      expect(answer.closed).toBe(true);
      await stillServing();
    });
  }
});

describe("refusals while a route runs stay with each plugin's handler", () => {
  it("a body over the limit and an unsupported media type", async () => {
    const post = (path: string, contentType: string, body: string) =>
      raw(`POST ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: ${contentType}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    expectShape(await post("/compute/v2.1/nosuch", "application/json", "x".repeat(200 * 1024)), 400, "nova");
    expectShape(await post("/identity/v3/auth/tokens", "text/xml", "<auth/>"), 415, "keystone");
    expectShape(await post("/identity/v3/auth/tokens", "application/json", "x".repeat(64 * 1024)), 413, "keystone");
    await stillServing();
  });
});
