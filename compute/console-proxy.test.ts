/**
 * The console websocket over a real socket: a fake VNC server on a unix socket that asks for
 * VNC Authentication with the console's password; a websocket client through
 * /compute/console/<token> meets security None, and from ClientInit on its bytes go both ways
 * unchanged (the fake echoes). A refused login, a server without VNC Authentication and
 * clients speaking 3.3 or 3.7 or no RFB at all; tokens are one-use and expire; refusals are
 * HTTP answers before any upgrade; either side closing closes the other.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { computeHarness, type ComputeHarness } from "./api/testing/harness.ts";
import { vncAuthResponse } from "./vnc-des.ts";

const rfbVersion = Buffer.from("RFB 003.008\n");
const password = "secret12";
const u32 = (value: number) => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
};

interface FakeVnc {
  server: Server;
  path: string;
  sockets: Socket[];
  /** What each connection received after its handshake, in order. */
  received: Buffer[][];
  /** The security types offered; [2] as QEMU with password=on. */
  securityTypes: number[];
}

/** Reads exact byte counts off a stream of chunks. */
function byteReader(on: (listener: (chunk: Buffer) => void) => void): (count: number) => Promise<Buffer> {
  let buffered = Buffer.alloc(0);
  let waiting: { count: number; resolve: (bytes: Buffer) => void } | undefined;
  const serve = () => {
    if (waiting === undefined || buffered.length < waiting.count) return;
    const { count, resolve } = waiting;
    waiting = undefined;
    const bytes = buffered.subarray(0, count);
    buffered = buffered.subarray(count);
    resolve(bytes);
  };
  on((chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    serve();
  });
  return (count) =>
    new Promise((resolve) => {
      waiting = { count, resolve };
      serve();
    });
}

/** A VNC server's handshake as QEMU runs it (RFB 3.8, VNC Authentication), then an echo. */
async function fakeVnc(dir: string): Promise<FakeVnc> {
  const path = join(dir, "vnc.sock");
  const vnc: FakeVnc = { server: createServer(), path, sockets: [], received: [], securityTypes: [2] };
  vnc.server.on("connection", (socket) => {
    socket.on("error", () => {});
    vnc.sockets.push(socket);
    const received: Buffer[] = [];
    vnc.received.push(received);
    const read = byteReader((listener) => socket.on("data", listener));
    void (async () => {
      socket.write(rfbVersion);
      expect(await read(12)).toEqual(rfbVersion);
      socket.write(Buffer.from([vnc.securityTypes.length, ...vnc.securityTypes]));
      expect((await read(1))[0]).toBe(2);
      const challenge = randomBytes(16);
      socket.write(challenge);
      if (!(await read(16)).equals(vncAuthResponse(password, challenge))) {
        socket.end(Buffer.concat([u32(1), u32(21), Buffer.from("Authentication failed")]));
        return;
      }
      socket.write(u32(0));
      socket.removeAllListeners("data");
      // Echo, so the client sees its bytes come back through both directions.
      socket.on("data", (chunk: Buffer) => {
        received.push(chunk);
        socket.write(chunk);
      });
    })().catch(() => socket.destroy());
  });
  vnc.server.listen(path);
  await once(vnc.server, "listening");
  return vnc;
}

/** The websocket's bytes, read by count whatever the message boundaries. */
function wsReader(ws: WebSocket): (count: number) => Promise<Buffer> {
  return byteReader((listener) => ws.on("message", (data: Buffer) => listener(data)));
}

/** The client's side of the proxy's handshake: RFB 3.8, security None, SecurityResult OK. */
async function loginAsClient(ws: WebSocket, read: (count: number) => Promise<Buffer>): Promise<void> {
  expect(await read(12)).toEqual(rfbVersion);
  ws.send(rfbVersion);
  expect(await read(2)).toEqual(Buffer.from([1, 1]));
  ws.send(Buffer.from([1]));
  expect(await read(4)).toEqual(u32(0));
}

/** What a refused handshake ends with: the failure reason in 3.8's form, then the close. */
async function refusal(ws: WebSocket, read: (count: number) => Promise<Buffer>): Promise<{ reason: string; code: number }> {
  const closed = once(ws, "close");
  expect(await read(12)).toEqual(rfbVersion);
  ws.send(rfbVersion);
  expect(await read(1)).toEqual(Buffer.from([0]));
  const length = (await read(4)).readUInt32BE(0);
  const reason = (await read(length)).toString();
  const [code] = (await closed) as [number];
  return { reason, code };
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
    h.fake.vncEndpoint = { address: { kind: "unix", path: vnc.path }, password };
    const address = await h.app.listen({ host: "127.0.0.1", port: 0 });
    base = address.replace(/^http/, "ws");
  });

  afterEach(async () => {
    await h.app.close();
    for (const socket of vnc.sockets) socket.destroy();
    vnc.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("logs in to VNC for the client, then relays both ways, from the URL remote-consoles answers", async () => {
    const created = await h.request("POST", "/compute/v2.1/servers", { json: { server: { name: "vm", imageRef: "img", flavorRef: "1" } } });
    const { id } = (created.json() as { server: { id: string } }).server;
    h.fake.activate(id);
    const consoleAnswer = await h.request("POST", `/compute/v2.1/servers/${id}/remote-consoles`, {
      json: { remote_console: { protocol: "vnc", type: "novnc" } },
      headers: { "x-openstack-nova-api-version": "2.8" },
    });
    const { url } = (consoleAnswer.json() as { remote_console: { url: string } }).remote_console;
    const ws = new WebSocket(`${base}${new URL(url).pathname}`, ["binary"]);
    const read = wsReader(ws);
    await once(ws, "open");
    expect(ws.protocol).toBe("binary");
    await loginAsClient(ws, read);

    // ClientInit, then a large message both ways: what a framebuffer update or a paste looks like.
    const clientInit = Buffer.from([1]);
    ws.send(clientInit);
    expect(await read(1)).toEqual(clientInit);
    const big = Buffer.alloc(512 * 1024, 7);
    ws.send(big);
    expect(await read(big.length)).toEqual(big);
    expect(Buffer.concat(vnc.received[0]!)).toEqual(Buffer.concat([clientInit, big]));

    // The client closes: the VNC connection goes too.
    const vncClosed = once(vnc.sockets[0]!, "close");
    ws.close();
    await vncClosed;
  });

  it("closes the websocket when the VNC server closes", async () => {
    const ws = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const read = wsReader(ws);
    await once(ws, "open");
    await loginAsClient(ws, read);
    const closed = once(ws, "close");
    vnc.sockets[0]!.end();
    const [code] = (await closed) as [number];
    expect(code).toBe(1000);
  });

  it("a refused password reaches the client as RFB's failure reason, and the websocket closes", async () => {
    h.fake.vncEndpoint = { address: { kind: "unix", path: vnc.path }, password: "wrong" };
    const ws = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const read = wsReader(ws);
    await once(ws, "open");
    const { reason, code } = await refusal(ws, read);
    expect(reason).toMatch(/could not log in to the server's display .*request a new console URL/);
    expect(code).toBe(1011);
  });

  it("a VNC server that offers no VNC Authentication is refused to the client", async () => {
    vnc.securityTypes = [1];
    const ws = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const read = wsReader(ws);
    await once(ws, "open");
    const { reason, code } = await refusal(ws, read);
    expect(reason).toMatch(/could not connect to the server's display/);
    expect(code).toBe(1011);
  });

  it("answers RFB 3.3 and 3.7 clients in their version's form", async () => {
    const ws33 = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const read33 = wsReader(ws33);
    await once(ws33, "open");
    expect(await read33(12)).toEqual(rfbVersion);
    ws33.send(Buffer.from("RFB 003.003\n"));
    expect(await read33(4)).toEqual(u32(1));
    ws33.send(Buffer.from([1, 42]));
    expect(await read33(2)).toEqual(Buffer.from([1, 42]));
    ws33.close();

    const ws37 = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const read37 = wsReader(ws37);
    await once(ws37, "open");
    expect(await read37(12)).toEqual(rfbVersion);
    ws37.send(Buffer.from("RFB 003.007\n"));
    expect(await read37(2)).toEqual(Buffer.from([1, 1]));
    // Security None and straight on to ClientInit: 3.7 has no SecurityResult for it.
    ws37.send(Buffer.from([1, 1, 43]));
    expect(await read37(2)).toEqual(Buffer.from([1, 43]));
    ws37.close();
  });

  it("closes with a protocol error on a client that does not speak RFB", async () => {
    const ws = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const read = wsReader(ws);
    await once(ws, "open");
    expect(await read(12)).toEqual(rfbVersion);
    const closed = once(ws, "close");
    ws.send(Buffer.from("hello there!"));
    const [code] = (await closed) as [number];
    expect(code).toBe(1002);
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
