/**
 * The NBD addon's send-buffer calls on real unix sockets, the server giving its unix-socket
 * connections (and not its TCP ones) the configured buffer, and a server without the addon
 * serving on the kernel's default. Needs the addon (scripts/build-nbd-addon.sh): with CI=true
 * a missing addon fails this file; otherwise its tests are skipped with a loud message.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Engine } from "../engine.ts";
import { openObjectStore } from "../blocker/open-store.ts";
import { unixSendBufferBytes } from "./limits.ts";
import type { Logger } from "./logger.ts";
import { NbdServer } from "./server.ts";
import { loadSocketAddon, sendBufferBytes, setSendBuffer, socketAddonPath } from "./socket-buffer.ts";

type LogFields = Record<string, unknown>;

const MiB = 1024 * 1024;
const built = existsSync(process.env["OKEANOS_NBD_ADDON"] ?? socketAddonPath);
if (!built) {
  const message = `the NBD addon is not built (${socketAddonPath}): run scripts/build-nbd-addon.sh`;
  if (process.env["CI"] === "true") throw new Error(`${message}; CI=true, so this fails instead of skipping`);
  process.stderr.write(`\n${"!".repeat(78)}\n!! SKIPPING socket-buffer tests: ${message}\n${"!".repeat(78)}\n\n`);
}

/** What the kernel grants for a request of `bytes` (as counted, so half of it asked): uncapped for root (SO_SNDBUFFORCE), else capped at wmem_max. */
function grantedFor(bytes: number): number {
  if (process.getuid?.() === 0) return bytes;
  const wmemMax = Number(readFileSync("/proc/sys/net/core/wmem_max", "utf8").trim());
  return 2 * Math.min(bytes / 2, wmemMax);
}

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-socket-buffer-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A connected unix-socket pair: the server side (what the NBD server writes replies to) and the client side. */
async function unixPair(name: string): Promise<{ accepted: Socket; client: Socket; listener: Server }> {
  const path = join(dir, name);
  const listener = createServer();
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  const acceptedPromise = new Promise<Socket>((resolve) => listener.once("connection", resolve));
  const client = connect(path);
  const accepted = await acceptedPromise;
  return { accepted, client, listener };
}

describe.runIf(built)("the addon on a unix socket", () => {
  it("enlarges a connection's send buffer to what was asked, and reports it", async () => {
    const { accepted, client, listener } = await unixPair("pair.sock");
    try {
      const before = sendBufferBytes(accepted);
      expect(before).toBeGreaterThan(0);
      const result = setSendBuffer(accepted, 4 * MiB);
      expect(result).toEqual({ ok: true, bytes: grantedFor(4 * MiB) });
      expect(sendBufferBytes(accepted)).toBe(grantedFor(4 * MiB));
      expect(grantedFor(4 * MiB)).toBeGreaterThan(before!);
      // A megabyte goes into the kernel in one write now: nothing is left queued in Node.
      const wrote = accepted.write(Buffer.alloc(MiB, 7));
      expect(wrote).toBe(true);
      expect(accepted.writableLength).toBe(0);
    } finally {
      client.destroy();
      accepted.destroy();
      listener.close();
    }
  });

  it("says why when the socket has no descriptor any more, and the addon names the errno of a bad one", async () => {
    const { accepted, client, listener } = await unixPair("closed.sock");
    client.destroy();
    accepted.destroy();
    listener.close();
    const result = setSendBuffer(accepted, 4 * MiB);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(/no file descriptor/);
    const addon = loadSocketAddon()!;
    expect(() => addon.setSendBufferBytes(0, 2 ** 31)).toThrow(expect.objectContaining({ code: "EINVAL" }));
    expect(() => addon.getSendBufferBytes(987_654)).toThrow(expect.objectContaining({ code: "EBADF" }));
  });
});

/** A logger that keeps what was logged. */
function recordingLogger(): { logger: Logger; lines: Array<{ level: string; fields: LogFields; message: string }> } {
  const lines: Array<{ level: string; fields: LogFields; message: string }> = [];
  const record = (level: string) => (fields: LogFields, message: string) => void lines.push({ level, fields, message });
  return { logger: { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") }, lines };
}

async function connectedServer(options: { unixSendBufferBytes?: number; tcp?: boolean }, name: string) {
  const storeDir = join(dir, `store-${name}`);
  const engine = await Engine.init(await openObjectStore(`file:${storeDir}`, { create: true }), { blockSizeBytes: 64 * 1024 });
  await engine.createVolume("vm", MiB);
  const socketPath = join(dir, `${name}.sock`);
  const server = new NbdServer({
    engine,
    exports: "all",
    socketPath,
    ...(options.tcp === true ? { tcp: { port: 0 } } : {}),
    ...(options.unixSendBufferBytes === undefined ? {} : { unixSendBufferBytes: options.unixSendBufferBytes }),
  });
  const addresses = await server.listen();
  const clients: Socket[] = [connect(socketPath)];
  const tcp = addresses.find((address) => address.kind === "tcp");
  if (tcp !== undefined) clients.push(connect(tcp.port, tcp.host));
  await vi.waitFor(() => expect(server.connections).toHaveLength(clients.length), { timeout: 5000 });
  return {
    server,
    async close() {
      for (const client of clients) client.destroy();
      await server.close();
      await engine.close();
    },
  };
}

describe.runIf(built)("the server's unix-socket connections", () => {
  it("get the configured send buffer; TCP connections keep the kernel's autotuning", async () => {
    const { server, close } = await connectedServer({ tcp: true }, "default");
    try {
      const buffers = server.connections.map((connection) => connection.sendBufferBytes);
      // One unix connection with the default of limits.ts, one TCP connection left alone.
      expect(buffers.filter((bytes) => bytes !== undefined)).toEqual([grantedFor(unixSendBufferBytes)]);
      expect(buffers.filter((bytes) => bytes === undefined)).toHaveLength(1);
    } finally {
      await close();
    }
  });

  it("keep the kernel's default when configured with 0", async () => {
    const { server, close } = await connectedServer({ unixSendBufferBytes: 0 }, "zero");
    try {
      expect(server.connections[0]!.sendBufferBytes).toBeUndefined();
    } finally {
      await close();
    }
  });
});

describe("a server without the addon", () => {
  it("serves on the kernel's default buffer and says once why", async () => {
    // The engine and its store first, from this file's modules: after resetModules the store's
    // backend (imported by open-store.ts when first needed) would be a second copy of it, whose
    // EngineErrors the engine's older copy does not recognise.
    const storeDir = join(dir, "store-missing");
    const engine = await Engine.init(await openObjectStore(`file:${storeDir}`, { create: true }), { blockSizeBytes: 64 * 1024 });
    await engine.createVolume("vm", MiB);
    vi.stubEnv("OKEANOS_NBD_ADDON", join(dir, "missing.node"));
    vi.resetModules();
    try {
      const { NbdServer: FreshServer } = await import("./server.ts");
      const { logger, lines } = recordingLogger();
      const socketPath = join(dir, "missing.sock");
      const server = new FreshServer({ engine, exports: "all", socketPath, logger });
      await server.listen();
      const clients = [connect(socketPath), connect(socketPath)];
      try {
        await vi.waitFor(() => expect(server.connections).toHaveLength(2), { timeout: 5000 });
        expect(server.connections.map((connection) => connection.sendBufferBytes)).toEqual([undefined, undefined]);
        const notes = lines.filter((line) => line.message.includes("send buffer"));
        expect(notes).toHaveLength(1);
        expect(String(notes[0]!.fields["reason"])).toContain("scripts/build-nbd-addon.sh");
        // Still serving: a client gets the handshake's greeting.
        const greeting = await new Promise<Buffer>((resolve) => clients[0]!.once("data", resolve));
        expect(greeting.subarray(0, 8).toString("latin1")).toBe("NBDMAGIC");
      } finally {
        for (const client of clients) client.destroy();
        await server.close();
        await engine.close();
      }
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });
});
