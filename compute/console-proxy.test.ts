/**
 * The console websocket over a real socket: a fake VNC server on a unix socket greets with
 * RFB's version string, and a websocket client through /compute/console/<token> reads it and
 * exchanges bytes both ways; tokens are one-use and expire; refusals are HTTP answers before
 * any upgrade; either side closing closes the other.
 */
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { computeHarness, type ComputeHarness } from "./api/testing/harness.ts";

const rfbVersion = Buffer.from("RFB 003.008\n");

interface FakeVnc {
  server: Server;
  path: string;
  sockets: Socket[];
  /** Everything each connection received, in order. */
  received: Buffer[][];
}

async function fakeVnc(dir: string): Promise<FakeVnc> {
  const path = join(dir, "vnc.sock");
  const vnc: FakeVnc = { server: createServer(), path, sockets: [], received: [] };
  vnc.server.on("connection", (socket) => {
    const received: Buffer[] = [];
    vnc.sockets.push(socket);
    vnc.received.push(received);
    socket.write(rfbVersion);
    // Echo, so the client sees its bytes come back through both directions.
    socket.on("data", (chunk: Buffer) => {
      received.push(chunk);
      socket.write(chunk);
    });
    socket.on("error", () => {});
  });
  vnc.server.listen(path);
  await once(vnc.server, "listening");
  return vnc;
}

/** Messages as they arrive, to await one by one. */
function messageQueue(ws: WebSocket): () => Promise<Buffer> {
  const queued: Buffer[] = [];
  const waiting: Array<(message: Buffer) => void> = [];
  ws.on("message", (data: Buffer) => {
    const next = waiting.shift();
    if (next !== undefined) next(data);
    else queued.push(data);
  });
  return () => {
    const message = queued.shift();
    return message !== undefined ? Promise.resolve(message) : new Promise((resolve) => waiting.push(resolve));
  };
}

/** The HTTP answer a websocket handshake got instead of 101. */
async function refusedHandshake(url: string): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(url, ["binary"]);
  ws.on("error", () => {});
  const [request, response] = (await once(ws, "unexpected-response")) as [{ destroy(): void }, NodeJS.ReadableStream & { statusCode: number }];
  let body = "";
  for await (const chunk of response) body += String(chunk);
  // ws leaves the refused connection to whoever listens for unexpected-response.
  request.destroy();
  return { status: response.statusCode, body };
}

describe("console proxy", () => {
  let dir: string;
  let vnc: FakeVnc;
  let h: ComputeHarness;
  let base: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-console-"));
    vnc = await fakeVnc(dir);
    h = await computeHarness({ consoleProxy: true });
    h.fake.vncEndpoint = { address: { kind: "unix", path: vnc.path }, password: "secret12" };
    const address = await h.app.listen({ host: "127.0.0.1", port: 0 });
    base = address.replace(/^http/, "ws");
  });

  afterEach(async () => {
    await h.app.close();
    for (const socket of vnc.sockets) socket.destroy();
    vnc.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("relays RFB both ways with the binary subprotocol, from the URL remote-consoles answers", async () => {
    const created = await h.request("POST", "/compute/v2.1/servers", { json: { server: { name: "vm", imageRef: "img", flavorRef: "1" } } });
    const { id } = (created.json() as { server: { id: string } }).server;
    h.fake.activate(id);
    const consoleAnswer = await h.request("POST", `/compute/v2.1/servers/${id}/remote-consoles`, {
      json: { remote_console: { protocol: "vnc", type: "novnc" } },
      headers: { "x-openstack-nova-api-version": "2.8" },
    });
    const { url } = (consoleAnswer.json() as { remote_console: { url: string } }).remote_console;
    const ws = new WebSocket(`${base}${new URL(url).pathname}`, ["binary"]);
    const next = messageQueue(ws);
    await once(ws, "open");
    expect(ws.protocol).toBe("binary");
    expect(await next()).toEqual(rfbVersion);

    ws.send(Buffer.from("RFB 003.008\n"));
    expect(await next()).toEqual(Buffer.from("RFB 003.008\n"));
    // A large message both ways: what a framebuffer update or a paste looks like.
    const big = Buffer.alloc(512 * 1024, 7);
    ws.send(big);
    let echoed = 0;
    while (echoed < big.length) echoed += (await next()).length;
    expect(echoed).toBe(big.length);
    expect(Buffer.concat(vnc.received[0]!)).toEqual(Buffer.concat([rfbVersion, big]));

    // The client closes: the VNC connection goes too.
    const vncClosed = once(vnc.sockets[0]!, "close");
    ws.close();
    await vncClosed;
  });

  it("closes the websocket when the VNC server closes", async () => {
    const ws = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const next = messageQueue(ws);
    await once(ws, "open");
    expect(await next()).toEqual(rfbVersion);
    const closed = once(ws, "close");
    vnc.sockets[0]!.end();
    const [code] = (await closed) as [number];
    expect(code).toBe(1000);
  });

  it("refuses unknown, used and expired tokens with a 404 before any upgrade", async () => {
    const unknown = await refusedHandshake(`${base}/compute/console/nosuch`);
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toEqual({ itemNotFound: { code: 404, message: "The console token is invalid or has expired." } });

    const token = h.fake.issueConsoleToken();
    const first = new WebSocket(`${base}/compute/console/${token}`, ["binary"]);
    await once(first, "open");
    first.close();
    expect((await refusedHandshake(`${base}/compute/console/${token}`)).status).toBe(404);

    const expired = h.fake.issueConsoleToken(0);
    expect((await refusedHandshake(`${base}/compute/console/${expired}`)).status).toBe(404);
    // Not a token's shape: refused without a lookup.
    for (const bad of ["x".repeat(90), "a.b", "%C3%A9"]) {
      expect((await refusedHandshake(`${base}/compute/console/${bad}`)).status).toBe(404);
    }
    expect(h.fake.resolved).toHaveLength(4);
    // Past fastify's maxParamLength the router itself refuses (414), over plain HTTP.
    const tooLong = await refusedHandshake(`${base}/compute/console/${"x".repeat(300)}`);
    expect(tooLong.status).toBe(414);

  });

  it("answers 409 when the VNC endpoint does not answer", async () => {
    h.fake.vncEndpoint = { address: { kind: "unix", path: join(dir, "gone.sock") }, password: "x" };
    const answer = await refusedHandshake(`${base}/compute/console/${h.fake.issueConsoleToken()}`);
    expect(answer.status).toBe(409);
    expect(Object.keys(JSON.parse(answer.body) as object)).toEqual(["conflictingRequest"]);
  });

  it("answers a plain GET with 400 without spending the token", async () => {
    const token = h.fake.issueConsoleToken();
    const plain = await h.request("GET", `/compute/console/${token}`, { token: null });
    expect(plain.statusCode).toBe(400);
    expect(Object.keys(plain.json() as object)).toEqual(["badRequest"]);
    const ws = new WebSocket(`${base}/compute/console/${token}`, ["binary"]);
    await once(ws, "open");
    ws.close();
  });

  it("leaves upgrade requests to other paths on the ordinary HTTP path", async () => {
    const { port } = new URL(base.replace(/^ws/, "http"));
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = httpRequest({ host: "127.0.0.1", port, path: "/compute/v2.1/", headers: { connection: "upgrade", upgrade: "websocket" } }, (response) => {
        let body = "";
        response.on("data", (chunk: Buffer) => (body += chunk.toString()));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      });
      request.on("upgrade", () => reject(new Error("upgraded")));
      request.on("error", reject);
      request.end();
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ version: { id: "v2.1" } });
  });
});
