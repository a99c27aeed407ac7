/**
 * The console websocket, `GET /compute/console/<token>` upgraded to a websocket: noVNC's
 * `websockify` role (and Nova's nova-novncproxy's). Bytes go both ways unchanged between the
 * websocket (binary messages, subprotocol `binary` when offered, as noVNC offers it) and the
 * server's VNC endpoint, so the client speaks RFB end to end.
 *
 *   client ──ws──► /compute/console/<token> ──unix or tcp──► QEMU's VNC server
 *
 * The token is the whole authorisation (a browser cannot send X-Auth-Token on a websocket):
 * the service issues it per console request, one use, short-lived. It is resolved, and the
 * VNC endpoint connected, before the upgrade, so a bad or expired token is a plain HTTP 404
 * and a server that is not running a 409, both with Nova's fault body.
 *
 * Why @fastify/websocket over `ws` alone: it routes the upgrade request through fastify, so
 * this is an ordinary route inside the compute plugin, with its hooks, request ids, logging
 * and error handler; `ws` alone would need serve to hand us the server's 'upgrade' event.
 */
import { connect, type Socket } from "node:net";
import type { Server } from "node:http";
import fastifyWebsocket from "@fastify/websocket";
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from "fastify";
import type { RawData, WebSocket } from "ws";
import type { VncEndpoint } from "./driver.ts";
import { ComputeError } from "./errors.ts";

export interface ConsoleTokenResolver {
  /**
   * The VNC endpoint a console token opens, consuming the token: it must not open anything a
   * second time. undefined when the token is unknown, used or expired.
   */
  resolveConsoleToken(token: string): Promise<VncEndpoint | undefined>;
}

export interface ConsoleProxyOptions {
  tokens: ConsoleTokenResolver;
}

/**
 * What a token looks like: URL-safe (a uuid, or base64url of 32 random bytes: 43 characters),
 * at most 64 long. Anything else is not looked up, and not upgraded (see below).
 */
export const consoleTokenPattern = /^[A-Za-z0-9_-]{1,64}$/;
/** A local socket answers at once or not at all; this bounds a wedged QEMU. */
export const vncConnectTimeoutMs = 5000;
/**
 * Client-to-server RFB messages are key and pointer events of a few bytes; the largest is
 * ClientCutText, the clipboard. 1 MiB allows a large paste and refuses a flood.
 */
export const websocketMessageBytesMax = 1024 * 1024;
/**
 * Server-to-client bytes queued on the websocket before we stop reading from VNC: a full
 * raw 1920x1080 update at 32 bits is ~8 MiB, so 4 MiB keeps a screen in flight without
 * letting a slow client make us buffer without bound.
 */
export const websocketBufferedBytesHigh = 4 * 1024 * 1024;
/** RFC 6455 close code 1000: normal closure, either side finished. */
const closeNormal = 1000;

/** The VNC connection made before the upgrade, for the websocket handler to relay. */
const vncOfRequest = new WeakMap<FastifyRequest, Socket>();

function connectVnc(endpoint: VncEndpoint): Promise<Socket> {
  const address = endpoint.address;
  return new Promise((resolve, reject) => {
    const socket = address.kind === "unix" ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });
    const timer = setTimeout(() => socket.destroy(new Error("VNC connect timed out")), vncConnectTimeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeListener("error", reject);
      resolve(socket);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * Accept upgrades only for URLs that reach the console route with a well-formed token. With
 * an 'upgrade' listener Node would otherwise take every `Upgrade:` request (an h2c probe to
 * the object store, say) off the HTTP path; and a request fastify refuses before routing (a
 * 414 for an over-long parameter) would leave its upgraded socket open, since only the
 * route's hooks close refused upgrades. Everything else stays ordinary HTTP.
 * `shouldUpgradeCallback` exists from Node 24.9; older Nodes keep their default.
 */
function acceptUpgradesOnlyUnder(server: Server, pathPrefix: string): void {
  const target = server as Server & { shouldUpgradeCallback?: (request: { url?: string; method?: string }) => boolean };
  if (typeof target.shouldUpgradeCallback !== "function") return;
  target.shouldUpgradeCallback = (request) => {
    const url = request.url ?? "";
    if (request.method !== "GET" || !url.startsWith(pathPrefix)) return false;
    const token = url.slice(pathPrefix.length).split("?", 1)[0]!;
    return consoleTokenPattern.test(token);
  };
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Relays both ways with backpressure on each; either side closing closes the other. */
export function relay(ws: WebSocket, vnc: Socket, log: FastifyBaseLogger): void {
  const resumeVnc = () => {
    if (vnc.isPaused() && ws.bufferedAmount < websocketBufferedBytesHigh) vnc.resume();
  };
  vnc.on("data", (chunk: Buffer) => {
    ws.send(chunk, { binary: true }, resumeVnc);
    if (ws.bufferedAmount >= websocketBufferedBytesHigh) vnc.pause();
  });
  ws.on("message", (data) => {
    if (!vnc.write(toBuffer(data))) {
      ws.pause();
      vnc.once("drain", () => ws.resume());
    }
  });
  vnc.on("error", (error) => log.info({ err: error }, "console: VNC connection failed"));
  vnc.on("close", () => {
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(closeNormal, "console closed");
  });
  ws.on("close", () => vnc.destroy());
}

export async function consoleProxyPlugin(app: FastifyInstance, options: ConsoleProxyOptions): Promise<void> {
  await app.register(fastifyWebsocket, {
    options: {
      maxPayload: websocketMessageBytesMax,
      // websockify's subprotocol: noVNC offers "binary"; we speak nothing else.
      handleProtocols: (protocols: Set<string>) => (protocols.has("binary") ? "binary" : false),
    },
  });
  acceptUpgradesOnlyUnder(app.server, `${app.prefix}/console/`);

  app.route({
    method: "GET",
    url: "/console/:token",
    preHandler: async (request) => {
      const token = (request.params as { token: string }).token;
      const invalid = new ComputeError("ENOT_FOUND", "The console token is invalid or has expired.");
      if (!consoleTokenPattern.test(token)) throw invalid;
      if (!request.ws) {
        throw new ComputeError("EBAD_REQUEST", "This is a websocket endpoint (RFB over a websocket, as noVNC speaks it): open it with a websocket client.");
      }
      const endpoint = await options.tokens.resolveConsoleToken(token);
      if (endpoint === undefined) throw invalid;
      const vnc = await connectVnc(endpoint).catch((error: unknown) => {
        throw new ComputeError("ECONFLICT", "The server's console is not reachable: is the server running?", { cause: error });
      });
      // Whatever happens to the client's connection (a failed handshake included), the VNC
      // connection does not outlive it.
      request.raw.socket.once("close", () => vnc.destroy());
      vncOfRequest.set(request, vnc);
    },
    // Reached only by a plain GET, which preHandler has refused already.
    handler: async () => {
      throw new ComputeError("EBAD_REQUEST", "A websocket upgrade is required.");
    },
    wsHandler: (socket, request) => {
      const vnc = vncOfRequest.get(request);
      if (vnc === undefined) throw new Error("console: websocket without its VNC connection");
      vncOfRequest.delete(request);
      relay(socket, vnc, request.log);
    },
  });
}
