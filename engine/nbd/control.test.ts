/**
 * The control socket: its line splitter over every chunking of a canonical stream, request
 * parsing, and a real ControlServer in front of a real NbdServer on a file store — status,
 * every refusal (bad JSON, not a request, unknown op, over-long line, unknown volume, a
 * snapshot name already taken, a frozen export) with the connection going on, a snapshot taken
 * while NBD writes are in flight (each write wholly in or wholly out), a snapshot and a resize
 * of a served volume no client has open, the connection limit, shutdown, the client, GO
 * waiting out a brief lock, and the runtime directory's rules.
 */
import { spawnSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../engine.ts";
import { openObjectStore } from "../blocker/open-store.ts";
import { callControl, controlUnreachable } from "./control-client.ts";
import { controlLineMaxBytes, LineSplitter, parseControlRequest, type LineEvent } from "./control-wire.ts";
import { ControlServer } from "./control.ts";
import { exportLockWaitMs } from "./exports.ts";
import { Command, Option, OptionReply } from "./protocol.ts";
import { controlSocketName, findControlSocket, prepareRuntimeDirectory, runtimeDirectories } from "./runtime-dir.ts";
import { NbdServer } from "./server.ts";
import { infoRequestData } from "./testing/frames.ts";
import { RawClient } from "./testing/raw-client.ts";

const KiB = 1024;
const blockSizeBytes = 64 * KiB;
const volumeBytes = 64 * blockSizeBytes; // 4 MiB
/** Writes of 24 KiB at multiples of 24 KiB: some fall inside a block, some straddle two. */
const chunkBytes = 24 * KiB;

let dir: string;
let engine: Engine;
let nbd: NbdServer;
let control: ControlServer;
let nbdSocket: string;
let controlSocket: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-control-"));
  engine = await Engine.init(await openObjectStore(`file:${join(dir, "store")}`, { create: true }), { blockSizeBytes });
  for (const name of ["vm1", "idle", "grow"]) await engine.createVolume(name, volumeBytes);
  await engine.snapshot("idle", "idle-frozen");
  nbdSocket = join(dir, "nbd.sock");
  nbd = new NbdServer({ engine, exports: ["vm1", "idle", "grow", "idle-frozen"], socketPath: nbdSocket, shutdownTimeoutMs: 5000 });
  await nbd.listen();
  controlSocket = join(dir, "control.sock");
  control = await ControlServer.listen(controlSocket, nbd);
});

afterAll(async () => {
  await control?.close();
  await nbd?.close();
  await engine?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A raw line client: send bytes, await response lines (parsed), notice the close. */
class LineClient {
  readonly #socket: Socket;
  readonly #lines: string[] = [];
  #buffered = "";
  #waiter: (() => void) | undefined;
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#buffered += chunk.toString("utf8");
      let newline: number;
      while ((newline = this.#buffered.indexOf("\n")) !== -1) {
        this.#lines.push(this.#buffered.slice(0, newline));
        this.#buffered = this.#buffered.slice(newline + 1);
      }
      this.#waiter?.();
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.#closed = true;
      this.#waiter?.();
    });
  }

  static connect(path = controlSocket): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      socket.once("connect", () => resolve(new LineClient(socket)));
      socket.once("error", reject);
    });
  }

  send(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** The next response line, parsed. */
  async next(timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (this.#closed) throw new Error("connection closed");
      if (Date.now() > deadline) throw new Error("no response line");
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        setTimeout(resolve, 50);
      });
    }
    return JSON.parse(this.#lines.shift() as string) as Record<string, unknown>;
  }

  async ask(request: unknown): Promise<Record<string, unknown>> {
    this.send(`${JSON.stringify(request)}\n`);
    return this.next();
  }

  async closesWithin(ms = 5000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.#closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    return this.#closed;
  }

  end(): void {
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

describe("LineSplitter", () => {
  const maxBytes = 16;
  // A line, a CRLF line, a blank line, an over-long line (two events' worth of bytes), a line
  // of exactly maxBytes, then a line without its newline (only end() yields it).
  const stream = Buffer.from(`{"op":"a"}\n{"op":"b"}\r\n\n${"x".repeat(40)}\n${"y".repeat(maxBytes)}\ntail`);
  const expected: LineEvent[] = [
    { kind: "line", line: `{"op":"a"}` },
    { kind: "line", line: `{"op":"b"}` },
    { kind: "line", line: "" },
    { kind: "too-long" },
    { kind: "line", line: "y".repeat(maxBytes) },
    { kind: "line", line: "tail" },
  ];

  function split(cuts: number[]): LineEvent[] {
    const splitter = new LineSplitter(maxBytes);
    const events: LineEvent[] = [];
    let start = 0;
    for (const cut of [...cuts, stream.length]) {
      events.push(...splitter.push(stream.subarray(start, cut)));
      expect(splitter.bufferedBytes).toBeLessThanOrEqual(maxBytes);
      start = cut;
    }
    return [...events, ...splitter.end()];
  }

  it("yields the same events however the stream is cut (every offset, every pair of offsets)", () => {
    expect(split([])).toEqual(expected);
    for (let first = 0; first <= stream.length; first++) {
      expect(split([first]), `cut at ${first}`).toEqual(expected);
      for (let second = first; second <= stream.length; second++) expect(split([first, second]), `cuts ${first}, ${second}`).toEqual(expected);
    }
  });

  it("byte by byte", () => {
    expect(split(Array.from({ length: stream.length }, (_, index) => index))).toEqual(expected);
  });

  it("reports an over-long line once, as soon as it passes the bound, before its newline", () => {
    const splitter = new LineSplitter(maxBytes);
    expect(splitter.push(Buffer.from("z".repeat(maxBytes)))).toEqual([]);
    expect(splitter.push(Buffer.from("z"))).toEqual([{ kind: "too-long" }]);
    expect(splitter.push(Buffer.alloc(1000, 0x7a))).toEqual([]);
    expect(splitter.bufferedBytes).toBe(0);
    expect(splitter.push(Buffer.from("z\nok\n"))).toEqual([{ kind: "line", line: "ok" }]);
    expect(splitter.end()).toEqual([]);
  });
});

describe("parseControlRequest", () => {
  it("accepts the three ops, with an optional id", () => {
    expect(parseControlRequest(`{"op":"status"}`)).toEqual({ op: "status" });
    expect(parseControlRequest(`{"op":"status","id":7}`)).toEqual({ op: "status", id: 7 });
    expect(parseControlRequest(`{"op":"snapshot","volume":"v","snapshot":"s","id":"a"}`)).toEqual({ op: "snapshot", volume: "v", snapshot: "s", id: "a" });
    expect(parseControlRequest(`{"op":"resize","volume":"v","sizeBytes":0}`)).toEqual({ op: "resize", volume: "v", sizeBytes: 0 });
  });

  it.each([
    ["not json", "EBAD_JSON", undefined],
    [`{"op":"status"`, "EBAD_JSON", undefined],
    ["[]", "EBAD_REQUEST", undefined],
    ["null", "EBAD_REQUEST", undefined],
    ["42", "EBAD_REQUEST", undefined],
    [`{"id":1}`, "EBAD_REQUEST", 1],
    [`{"op":5}`, "EBAD_REQUEST", undefined],
    [`{"op":"status","id":1.5}`, "EBAD_REQUEST", undefined],
    [`{"op":"status","id":{}}`, "EBAD_REQUEST", undefined],
    [`{"op":"status","id":"${"i".repeat(65)}"}`, "EBAD_REQUEST", undefined],
    [`{"op":"delete","volume":"v","id":"x"}`, "EUNKNOWN_OP", "x"],
    [`{"op":"__proto__"}`, "EUNKNOWN_OP", undefined],
    [`{"op":"toString"}`, "EUNKNOWN_OP", undefined],
    [`{"op":"status","verbose":true}`, "EBAD_REQUEST", undefined],
    [`{"op":"snapshot","volume":"v"}`, "EBAD_REQUEST", undefined],
    [`{"op":"snapshot","volume":"v","snapsot":"s"}`, "EBAD_REQUEST", undefined],
    [`{"op":"snapshot","volume":"","snapshot":"s"}`, "EBAD_REQUEST", undefined],
    [`{"op":"snapshot","volume":3,"snapshot":"s"}`, "EBAD_REQUEST", undefined],
    [`{"op":"snapshot","volume":"v","snapshot":"${"s".repeat(129)}"}`, "EBAD_REQUEST", undefined],
    [`{"op":"resize","volume":"v","sizeBytes":-1}`, "EBAD_REQUEST", undefined],
    [`{"op":"resize","volume":"v","sizeBytes":1.5}`, "EBAD_REQUEST", undefined],
    [`{"op":"resize","volume":"v","sizeBytes":"1G"}`, "EBAD_REQUEST", undefined],
    [`{"op":"resize","volume":"v","sizeBytes":1e300}`, "EBAD_REQUEST", undefined],
  ])("%s → %s", (line, code, id) => {
    const parsed = parseControlRequest(line);
    expect(parsed).toMatchObject({ ok: false, code });
    expect((parsed as { id?: unknown }).id).toEqual(id);
  });
});

describe("the control server", () => {
  it("status lists the exports, the addresses, the open volumes and the connections", async () => {
    const client = await LineClient.connect();
    const nbdClient = await RawClient.connect(nbdSocket);
    await nbdClient.open("vm1");
    const response = await client.ask({ op: "status", id: "s1" });
    expect(response).toMatchObject({
      ok: true,
      id: "s1",
      status: {
        protocol: 1,
        pid: process.pid,
        exports: ["vm1", "idle", "grow", "idle-frozen"],
        readOnly: false,
        addresses: [{ kind: "unix", path: nbdSocket }],
        open: [{ name: "vm1", connections: 1 }],
      },
    });
    expect((response["status"] as { connections: unknown[] }).connections).toEqual([expect.objectContaining({ state: "TRANSMISSION", inFlight: 0 })]);
    nbdClient.request({ type: Command.DISC });
    expect(await nbdClient.closesWithin()).toBe(true);
    client.end();
    expect(await client.closesWithin()).toBe(true);
  });

  it("answers wrong input with an error and goes on: bad JSON, not a request, unknown op, over-long lines", async () => {
    const client = await LineClient.connect();
    client.send("{nope\n");
    expect(await client.next()).toEqual({ ok: false, code: "EBAD_JSON", message: expect.stringContaining("not JSON") });
    expect(await client.ask("a JSON string")).toMatchObject({ ok: false, code: "EBAD_REQUEST" });
    client.send("garbage\n");
    expect(await client.next()).toMatchObject({ ok: false, code: "EBAD_JSON" });
    expect(await client.ask([1, 2])).toMatchObject({ ok: false, code: "EBAD_REQUEST" });
    expect(await client.ask({ op: "format", id: 3 })).toMatchObject({ ok: false, code: "EUNKNOWN_OP", id: 3 });
    expect(await client.ask({ op: "snapshot", volume: "vm1", id: 4 })).toMatchObject({ ok: false, code: "EBAD_REQUEST", id: 4 });
    // 10 × the bound, in pieces, no newline yet: one error as soon as the bound is passed.
    for (let sent = 0; sent < 10 * controlLineMaxBytes; sent += 1000) client.send("x".repeat(1000));
    expect(await client.next()).toMatchObject({ ok: false, code: "ELINE_TOO_LONG" });
    client.send(`still the same line\n\n\r\n{"op":"status","id":5}\r\n`);
    expect(await client.next()).toMatchObject({ ok: true, id: 5 });
    // A line of exactly the bound is a request.
    const padded = `{"op":"status","id":6}`.padEnd(controlLineMaxBytes, " ");
    client.send(`${padded}\n`);
    expect(await client.next()).toMatchObject({ ok: true, id: 6 });
    client.send(`${padded} \n`);
    expect(await client.next()).toMatchObject({ ok: false, code: "ELINE_TOO_LONG" });
    // Several requests in one write are answered in order.
    client.send(`{"op":"status","id":"a"}\n{"op":"nope","id":"b"}\n{"op":"status","id":"c"}\n`);
    expect([await client.next(), await client.next(), await client.next()].map((response) => [response["id"], response["ok"]])).toEqual([
      ["a", true],
      ["b", false],
      ["c", true],
    ]);
    client.destroy();
  });

  it("a request whose line ends at EOF is answered, then the connection closes", async () => {
    const client = await LineClient.connect();
    client.send(`{"op":"status","id":"last"}`);
    client.end();
    expect(await client.next()).toMatchObject({ ok: true, id: "last" });
    expect(await client.closesWithin()).toBe(true);
  });

  it("refuses names it does not serve, frozen exports, and snapshot names already taken", async () => {
    const client = await LineClient.connect();
    expect(await client.ask({ op: "snapshot", volume: "nope", snapshot: "x" })).toMatchObject({ ok: false, code: "ENOT_FOUND" });
    expect(await client.ask({ op: "snapshot", volume: "idle-frozen", snapshot: "x" })).toMatchObject({ ok: false, code: "EREAD_ONLY" });
    expect(await client.ask({ op: "snapshot", volume: "vm1", snapshot: "idle-frozen" })).toMatchObject({
      ok: false,
      code: "EEXISTS",
      message: "idle-frozen already exists",
    });
    expect(await client.ask({ op: "snapshot", volume: "vm1", snapshot: "bad/name" })).toMatchObject({ ok: false, code: "EINVALID" });
    expect(await client.ask({ op: "resize", volume: "vm1", sizeBytes: 1 })).toMatchObject({ ok: false, code: "EINVALID" });
    // None of those left a volume open or locked.
    expect(nbd.registry.openExports.size).toBe(0);
    client.destroy();
  });

  it("snapshots a volume with NBD writes in flight: each write is wholly in the snapshot or wholly out", async () => {
    const nbdClient = await RawClient.connect(nbdSocket);
    await nbdClient.open("vm1");
    const chunks = Math.floor(volumeBytes / chunkBytes);
    const write = (index: number, generation: number) =>
      nbdClient.request({ type: Command.WRITE, cookie: BigInt(generation * 1000 + index), offsetBytes: index * chunkBytes }, chunkOf(index, generation));
    // Generation 1 on every chunk, acknowledged before the snapshot: all of it is in.
    for (let index = 0; index < chunks; index++) write(index, 1);
    for (let index = 0; index < chunks; index++) expect((await nbdClient.readSimpleReply()).errno).toBe(0);
    // Generation 2 pipelined, the snapshot asked for while they are in flight.
    for (let index = 0; index < chunks; index++) write(index, 2);
    const client = await LineClient.connect();
    const response = await client.ask({ op: "snapshot", volume: "vm1", snapshot: "vm1-live", id: 1 });
    for (let index = 0; index < chunks; index++) expect((await nbdClient.readSimpleReply()).errno).toBe(0);
    expect(response).toMatchObject({ ok: true, id: 1, snapshot: { name: "vm1-live", kind: "snapshot", frozen: true, sizeBytes: volumeBytes } });
    // Generation 3 after the snapshot: never in it.
    for (let index = 0; index < chunks; index++) write(index, 3);
    for (let index = 0; index < chunks; index++) expect((await nbdClient.readSimpleReply()).errno).toBe(0);

    const snapshot = await readThroughEngine("vm1-live");
    for (let index = 0; index < chunks; index++) {
      const content = snapshot.subarray(index * chunkBytes, (index + 1) * chunkBytes);
      const generation = content.equals(chunkOf(index, 2)) ? 2 : content.equals(chunkOf(index, 1)) ? 1 : undefined;
      expect(generation, `chunk ${index} of the snapshot is torn or from after it`).toBeDefined();
    }
    nbdClient.request({ type: Command.DISC });
    expect(await nbdClient.closesWithin()).toBe(true);
    await eventually(() => nbd.registry.openExports.size === 0, "vm1 flushed and closed");
    const volume = await readThroughEngine("vm1");
    for (let index = 0; index < chunks; index++) expect(volume.subarray(index * chunkBytes, (index + 1) * chunkBytes).equals(chunkOf(index, 3))).toBe(true);
    client.destroy();
  });

  it("snapshots and grows a served volume no client has open, and leaves it closed and unlocked", async () => {
    const client = await LineClient.connect();
    expect(await client.ask({ op: "snapshot", volume: "idle", snapshot: "idle-2" })).toMatchObject({ ok: true, snapshot: { name: "idle-2" } });
    expect(await client.ask({ op: "resize", volume: "grow", sizeBytes: 2 * volumeBytes })).toEqual({
      ok: true,
      resize: { name: "grow", previousSizeBytes: volumeBytes, sizeBytes: 2 * volumeBytes },
    });
    expect(nbd.registry.openExports.size).toBe(0);
    const grown = await engine.openVolume("grow"); // the lock is free again
    expect(grown.sizeBytes).toBe(2 * volumeBytes);
    await grown.close();
    // A new NBD connection is told the new size.
    const nbdClient = await RawClient.connect(nbdSocket);
    expect((await nbdClient.open("grow")).sizeBytes).toBe(2 * volumeBytes);
    nbdClient.destroy();
    client.destroy();
  });

  it("closes connections past its limit with EBUSY, and on close lets the running request finish", async () => {
    const path = join(dir, "limited.sock");
    const limited = await ControlServer.listen(path, nbd, { connectionsMax: 1 });
    const first = await LineClient.connect(path);
    expect(await first.ask({ op: "status" })).toMatchObject({ ok: true });
    const second = await LineClient.connect(path);
    expect(await second.next()).toMatchObject({ ok: false, code: "EBUSY" });
    expect(await second.closesWithin()).toBe(true);

    // A snapshot asked for, then close() at once: the snapshot completes and is answered.
    first.send(`${JSON.stringify({ op: "snapshot", volume: "vm1", snapshot: "vm1-at-close" })}\n`);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await limited.close();
    expect(await first.next()).toMatchObject({ ok: true, snapshot: { name: "vm1-at-close" } });
    expect(await first.closesWithin()).toBe(true);
    expect(await stat(path).catch(() => undefined)).toBeUndefined(); // the socket file is gone
    expect(await callControl(path, { op: "status" })).toBe(controlUnreachable);
  });

  it("the client: typed answers, unreachable sockets, and a server that hangs up without answering", async () => {
    const status = await callControl(controlSocket, { op: "status" });
    expect(status).toMatchObject({ ok: true, status: { pid: process.pid } });
    expect(await callControl(controlSocket, { op: "snapshot", volume: "vm1", snapshot: "vm1-live" })).toMatchObject({ ok: false, code: "EEXISTS" });
    expect(await callControl(join(dir, "absent.sock"), { op: "status" })).toBe(controlUnreachable);
    const mute: Server = createServer((socket) => socket.destroy());
    const mutePath = join(dir, "mute.sock");
    await new Promise<void>((resolve) => mute.listen(mutePath, resolve));
    await expect(callControl(mutePath, { op: "status" })).rejects.toThrow(/without answering|failed during status/);
    const silent: Server = createServer((socket) => socket.resume()); // reads, never answers
    const silentPath = join(dir, "silent.sock");
    await new Promise<void>((resolve) => silent.listen(silentPath, resolve));
    await expect(callControl(silentPath, { op: "status" }, { timeoutMs: 200 })).rejects.toThrow(/no answer/);
    await new Promise((resolve) => mute.close(resolve));
    await new Promise((resolve) => silent.close(resolve));
  });
});

describe("GO on a volume another process holds for a moment", () => {
  it("waits for the lock (a CLI's direct snapshot, a predecessor releasing it) instead of refusing", async () => {
    const holder = await engine.openVolume("grow", { owner: "a brief holder" }); // a lock of our own: it excludes the registry's too
    const released = new Promise((resolve) => setTimeout(resolve, 300)).then(() => holder.close());
    const client = await RawClient.connect(nbdSocket);
    const started = performance.now();
    expect((await client.open("grow")).sizeBytes).toBe(2 * volumeBytes);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    await released;
    client.request({ type: Command.DISC });
    expect(await client.closesWithin()).toBe(true);
  });

  it("refuses with ERR_POLICY naming the holder once exportLockWaitMs has passed", async () => {
    await eventually(() => nbd.registry.openExports.size === 0, "grow closed");
    const holder = await engine.openVolume("grow", { owner: "a long holder" });
    try {
      const client = await RawClient.connect(nbdSocket);
      await client.handshake();
      const started = performance.now();
      const replies = await client.option(Option.GO, infoRequestData("grow"));
      expect(performance.now() - started).toBeGreaterThanOrEqual(exportLockWaitMs - 100);
      expect(replies.at(-1)?.type).toBe(OptionReply.ERR_POLICY);
      expect(replies.at(-1)?.data.toString()).toContain("a long holder");
      client.destroy();
    } finally {
      await holder.close();
    }
  });
});

describe("the runtime directory", () => {
  const uid = process.getuid?.() ?? 0;

  it("prefers $XDG_RUNTIME_DIR/okeanos, then ${TMPDIR:-/tmp}/okeanos-<uid>", () => {
    expect(runtimeDirectories({ XDG_RUNTIME_DIR: "/run/user/7", TMPDIR: "/scratch" }, 7)).toEqual(["/run/user/7/okeanos", "/scratch/okeanos-7"]);
    expect(runtimeDirectories({ XDG_RUNTIME_DIR: "" }, 7)).toEqual(["/tmp/okeanos-7"]);
    expect(runtimeDirectories({}, 7)).toEqual(["/tmp/okeanos-7"]);
  });

  it("is created private, loses the sockets of dead processes, and keeps those of live ones", async () => {
    const tmp = join(dir, "tmp");
    await mkdir(tmp);
    const env = { TMPDIR: tmp };
    const runtime = await prepareRuntimeDirectory(env);
    expect(runtime).toBe(join(tmp, `okeanos-${uid}`));
    expect((await stat(runtime)).mode & 0o777).toBe(0o700);

    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid as number;
    await writeFile(join(runtime, controlSocketName(deadPid)), "");
    await writeFile(join(runtime, controlSocketName(process.pid)), ""); // our pid, left by an earlier owner of it
    const live = createServer();
    const livePath = join(runtime, controlSocketName(process.ppid));
    await new Promise<void>((resolve) => live.listen(livePath, resolve));
    await writeFile(join(runtime, "unrelated"), "");

    expect(await prepareRuntimeDirectory(env)).toBe(runtime);
    expect(await stat(join(runtime, controlSocketName(deadPid))).catch(() => undefined)).toBeUndefined();
    expect(await stat(join(runtime, controlSocketName(process.pid))).catch(() => undefined)).toBeUndefined();
    expect(await findControlSocket(process.ppid, env)).toBe(livePath);
    expect(await stat(join(runtime, "unrelated"))).toBeDefined();
    expect(await findControlSocket(deadPid, env)).toBeUndefined();

    // Opened up to others, it is no longer trusted: not found, not used.
    await chmod(runtime, 0o755);
    expect(await findControlSocket(process.ppid, env)).toBeUndefined();
    await expect(prepareRuntimeDirectory(env)).rejects.toThrow(/not private/);
    await chmod(runtime, 0o700);
    await new Promise((resolve) => live.close(resolve));
  });

  it("falls back to the second candidate when $XDG_RUNTIME_DIR is unusable", async () => {
    const tmp = join(dir, "tmp2");
    await mkdir(tmp);
    expect(await prepareRuntimeDirectory({ XDG_RUNTIME_DIR: join(dir, "no-such-dir"), TMPDIR: tmp })).toBe(join(tmp, `okeanos-${uid}`));
  });
});

async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Chunk `index` as written by `generation`: the pair in every 8 bytes, so a misplaced or torn chunk shows. */
function chunkOf(index: number, generation: number): Buffer {
  const out = Buffer.alloc(chunkBytes);
  for (let offset = 0; offset < chunkBytes; offset += 8) {
    out.writeUInt32LE(generation, offset);
    out.writeUInt32LE(index, offset + 4);
  }
  return out;
}

async function readThroughEngine(name: string): Promise<Buffer> {
  const volume = await engine.openVolume(name, { readOnly: true });
  try {
    return await volume.read(0, volume.sizeBytes);
  } finally {
    await volume.close();
  }
}
