/**
 * The console websocket, `GET /compute/console/<token>` upgraded to a websocket: noVNC's
 * `websockify` role (and Nova's nova-novncproxy's). The proxy terminates RFB's security on
 * both sides (vnc-handshake.ts), then relays bytes both ways unchanged between the websocket
 * (binary messages, subprotocol `binary` when offered, as noVNC offers it) and the server's
 * VNC endpoint:
 *
 *   client ──ws──► /compute/console/<token> ──unix or tcp──► QEMU's VNC server
 *          RFB 3.8, security None             RFB, VNC Authentication with the
 *          (the token was the credential)     per-console password (max 8 characters)
 *          └──────── from ClientInit on: the same bytes both ways ────────┘
 *
 * The token is the whole authorisation (a browser cannot send X-Auth-Token on a websocket):
 * the service issues it per console request, one use, short-lived, as Nova's console proxy
 * does; the user never sees QEMU's password, which stays between the driver and this proxy.
 * The token is resolved, and the VNC endpoint connected, before the upgrade, so a bad or
 * expired token is a plain HTTP 404 and a server that is not running a 409, both with Nova's
 * fault body. The login to QEMU runs after the upgrade, while the client reads our greeting,
 * so a refused login reaches the client as RFB's own failure reason (noVNC shows it).
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
import { ClientFacingHandshake, UpstreamLogin, type HandshakeEvent, type HandshakeFailure } from "./vnc-handshake.ts";

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
/**
 * Both handshakes: QEMU answers at once and a client within a round trip or two (security
 * None asks nothing of a person); 30 s allows a slow link and frees a connection that says
 * nothing.
 */
export const handshakeTimeoutMs = 30_000;
/** RFC 6455 close codes: 1000 either side finished; 1002 the client broke RFB; 1011 we could not serve it. */
const closeNormal = 1000;
const closeProtocolError = 1002;
const closeServerError = 1011;

/** The VNC connection made before the upgrade, and its password, for the websocket handler. */
const vncOfRequest = new WeakMap<FastifyRequest, { socket: Socket; password: string }>();

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

/** What the client is told when the login to the server's VNC fails: no internals, a next step. */
function clientReason(failure: HandshakeFailure): string {
  if (failure.code === "EAUTH") return "The console could not log in to the server's display (its one-time password was refused or expired): request a new console URL.";
  return "The console could not connect to the server's display: request a new console URL, or check that the server is running.";
}

/**
 * Runs both RFB handshakes, then hands the two connections to relay(). Failures: the client
 * gets RFB's failure reason and the websocket closes; the log says what went wrong upstream.
 */
export function proxyConsole(ws: WebSocket, vnc: Socket, password: string, log: FastifyBaseLogger, timeoutMs = handshakeTimeoutMs): void {
  const upstream = new UpstreamLogin(password);
  const facing = new ClientFacingHandshake();
  let upstreamRest: Buffer | undefined;
  let clientRest: Buffer | undefined;
  let upstreamFailedAlready = false;
  let finished = false;

  const finish = (code: number, reason: string) => {
    if (finished) return;
    finished = true;
    cleanup();
    vnc.destroy();
    // ws sends the close frame after the data queued before it (the RFB failure reason).
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
  };
  const fromClient = (events: HandshakeEvent[]) => {
    for (const event of events) {
      if (event.kind === "send") ws.send(event.bytes, { binary: true });
      else if (event.kind === "ready") clientRest = event.rest;
      else {
        if (event.failure.code === "EUPSTREAM") finish(closeServerError, "console login failed");
        else {
          log.info({ failure: event.failure }, `console: the client's RFB handshake failed: ${event.failure.reason}`);
          finish(closeProtocolError, "RFB handshake failed");
        }
        return;
      }
    }
    startRelayWhenBothReady();
  };
  const upstreamFailed = (failure: HandshakeFailure) => {
    upstreamFailedAlready = true;
    log.warn({ failure }, `console: login to the server's VNC failed (${failure.code}): ${failure.reason}`);
    vnc.destroy();
    fromClient(facing.upstreamFailed(clientReason(failure)));
  };
  const fromUpstream = (events: HandshakeEvent[]) => {
    for (const event of events) {
      if (event.kind === "send") vnc.write(event.bytes);
      else if (event.kind === "ready") {
        upstreamRest = event.rest;
        fromClient(facing.upstreamReady());
      } else {
        upstreamFailed(event.failure);
        return;
      }
    }
  };

  const onVncData = (chunk: Buffer) => {
    // Logged in, the client not yet: QEMU waits for ClientInit, but keep whatever it sends.
    if (upstreamRest !== undefined) upstreamRest = Buffer.concat([upstreamRest, chunk]);
    else if (!upstreamFailedAlready) fromUpstream(upstream.push(chunk));
  };
  const onVncClose = () => {
    // Failed already: the client is being told why, and finish() follows that.
    if (upstreamFailedAlready) return;
    if (upstreamRest === undefined) upstreamFailed({ code: "EREFUSED", reason: "the VNC server closed the connection during the handshake" });
    else finish(closeNormal, "console closed");
  };
  const onVncError = (error: Error) => log.info({ err: error }, "console: VNC connection failed");
  const onMessage = (data: RawData) => {
    if (facing.state === "ready" || facing.state === "failed") return;
    fromClient(facing.push(toBuffer(data)));
  };
  const onWsClose = () => finish(closeNormal, "console closed");
  const timer = setTimeout(() => {
    log.info(`console: the RFB handshake did not finish within ${timeoutMs} ms (upstream ${upstream.state}, client ${facing.state})`);
    finish(closeServerError, "RFB handshake timed out");
  }, timeoutMs);
  const cleanup = () => {
    clearTimeout(timer);
    vnc.off("data", onVncData).off("close", onVncClose).off("error", onVncError);
    ws.off("message", onMessage).off("close", onWsClose);
  };

  function startRelayWhenBothReady(): void {
    if (finished || upstreamRest === undefined || clientRest === undefined) return;
    finished = true;
    // Synchronous from here to relay(): no event can fall between the two sets of listeners.
    cleanup();
    if (clientRest.length > 0) vnc.write(clientRest);
    if (upstreamRest.length > 0) ws.send(upstreamRest, { binary: true });
    relay(ws, vnc, log);
  }

  vnc.on("data", onVncData).on("close", onVncClose).on("error", onVncError);
  ws.on("message", onMessage).on("close", onWsClose);
  ws.send(facing.greeting(), { binary: true });
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
      vncOfRequest.set(request, { socket: vnc, password: endpoint.password });
    },
    // Reached only by a plain GET, which preHandler has refused already.
    handler: async () => {
      throw new ComputeError("EBAD_REQUEST", "A websocket upgrade is required.");
    },
    wsHandler: (socket, request) => {
      const vnc = vncOfRequest.get(request);
      if (vnc === undefined) throw new Error("console: websocket without its VNC connection");
      vncOfRequest.delete(request);
      proxyConsole(socket, vnc.socket, vnc.password, request.log);
    },
  });
}
