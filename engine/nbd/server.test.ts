/**
 * The server against a hand-written raw client, over a unix socket, on a file store: the
 * handshake's error paths, the transmission's refusals (each leaving the connection usable),
 * structured replies byte by byte, pipelining and backpressure, clients that vanish at awkward
 * moments, multi-conn sharing and graceful shutdown. After the abuse, the volume still holds
 * exactly what a model says.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../engine.ts";
import { openObjectStore } from "../blocker/open-store.ts";
import { inFlightMax } from "./limits.ts";
import {
  AllocationFlag,
  Command,
  CommandFlag,
  Errno,
  FLAG_C_FIXED_NEWSTYLE,
  IHAVEOPT,
  Info,
  NBDMAGIC,
  Option,
  OptionReply,
  ReplyFlag,
  ReplyType,
  TransmissionFlag,
} from "./protocol.ts";
import { NbdServer } from "./server.ts";
import { clientFlagsFrame, infoRequestData, metaContextData, optionFrame, requestFrame } from "./testing/frames.ts";
import { RawClient, type Chunk } from "./testing/raw-client.ts";

const blockSizeBytes = 64 * 1024;
const volumeBytes = 64 * blockSizeBytes; // 4 MiB
const MiB = 1024 * 1024;

let dir: string;
let engine: Engine;
let server: NbdServer;
let socketPath: string;
/** What vm1 must hold: blocks 0–3 filled with 1..4, block 4 with 0x55 (after the snapshot), the rest zero. */
const model = Buffer.alloc(volumeBytes);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-nbd-server-"));
  engine = await Engine.init(await openObjectStore(`file:${join(dir, "store")}`, { create: true }), { blockSizeBytes });
  for (const name of ["vm1", "other", "shutdown-vol"]) await engine.createVolume(name, volumeBytes);
  const volume = await engine.openVolume("vm1");
  for (let block = 0; block < 4; block++) model.fill(block + 1, block * blockSizeBytes, (block + 1) * blockSizeBytes);
  await volume.write(0, model.subarray(0, 4 * blockSizeBytes));
  await volume.snapshot("vm1-snap");
  model.fill(0x55, 4 * blockSizeBytes, 5 * blockSizeBytes);
  await volume.write(4 * blockSizeBytes, model.subarray(4 * blockSizeBytes, 5 * blockSizeBytes));
  await volume.close();
  socketPath = join(dir, "nbd.sock");
  server = new NbdServer({ engine, exports: ["vm1", "vm1-snap", "other"], socketPath, shutdownTimeoutMs: 5000 });
  await server.listen();
});

afterAll(async () => {
  await server?.close();
  await engine?.close();
  await rm(dir, { recursive: true, force: true });
});

const connect = () => RawClient.connect(socketPath);

async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(server.connections)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Reads vm1 whole through a fresh connection (simple replies) and compares it with the model. */
async function expectVolumeIntact(): Promise<void> {
  const client = await connect();
  await client.open("vm1");
  for (let offset = 0; offset < volumeBytes; offset += MiB) {
    client.request({ type: Command.READ, cookie: BigInt(offset), offsetBytes: offset, lengthBytes: MiB });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: BigInt(offset) });
    expect((await client.read(MiB)).equals(model.subarray(offset, offset + MiB)), `vm1 at ${offset}`).toBe(true);
  }
  client.request({ type: Command.DISC });
  expect(await client.closesWithin()).toBe(true);
}

describe("handshake", () => {
  it("greets with NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE|NO_ZEROES", async () => {
    const client = await connect();
    const greeting = await client.read(18);
    expect(greeting.readBigUInt64BE(0)).toBe(NBDMAGIC);
    expect(greeting.readBigUInt64BE(8)).toBe(IHAVEOPT);
    expect(greeting.readUInt16BE(16)).toBe(3);
    client.destroy();
  });

  it.each([
    ["unknown client flag bits", 0x80 | FLAG_C_FIXED_NEWSTYLE],
    ["a client without fixed newstyle", 0],
  ])("closes on %s", async (_what, flags) => {
    const client = await connect();
    await client.handshake(flags);
    expect(await client.closesWithin()).toBe(true);
  });

  it("closes on a bad option magic, and on an option longer than the limit", async () => {
    const badMagic = await connect();
    await badMagic.handshake();
    badMagic.send(Buffer.from("49484156454f5055000000030000000", "hex"));
    badMagic.send(Buffer.alloc(1));
    expect(await badMagic.closesWithin()).toBe(true);
    const tooLong = await connect();
    await tooLong.handshake();
    tooLong.send(optionFrame(Option.GO, Buffer.alloc(0), 1024 * 1024));
    expect(await tooLong.closesWithin()).toBe(true);
  });

  it("answers wrong options with the spec's errors and goes on haggling", async () => {
    const client = await connect();
    await client.handshake();
    const only = async (option: number, data?: Buffer) => {
      const replies = await client.option(option, data);
      expect(replies).toHaveLength(1);
      return replies[0]!.type;
    };
    expect(await only(99, Buffer.from("payload is read and discarded"))).toBe(OptionReply.ERR_UNSUP);
    expect(await only(Option.PEEK_EXPORT)).toBe(OptionReply.ERR_UNSUP);
    expect(await only(Option.EXTENDED_HEADERS)).toBe(OptionReply.ERR_UNSUP);
    expect(await only(Option.STARTTLS)).toBe(OptionReply.ERR_POLICY);
    expect(await only(Option.GO, Buffer.from("00000009766d31", "hex"))).toBe(OptionReply.ERR_INVALID);
    expect(await only(Option.INFO, infoRequestData("nope"))).toBe(OptionReply.ERR_UNKNOWN);
    expect(await only(Option.GO, infoRequestData("nope"))).toBe(OptionReply.ERR_UNKNOWN);
    expect(await only(Option.LIST, Buffer.from("x"))).toBe(OptionReply.ERR_INVALID);
    expect(await only(Option.SET_META_CONTEXT, metaContextData("vm1", ["base:allocation"]))).toBe(OptionReply.ERR_INVALID);
    expect(await only(Option.STRUCTURED_REPLY, Buffer.from("x"))).toBe(OptionReply.ERR_INVALID);
    expect(await only(Option.STRUCTURED_REPLY)).toBe(OptionReply.ACK);
    expect(await only(Option.STRUCTURED_REPLY)).toBe(OptionReply.ERR_INVALID);
    expect(await only(Option.SET_META_CONTEXT, Buffer.from("0000"))).toBe(OptionReply.ERR_INVALID);
    expect(await only(Option.LIST_META_CONTEXT, metaContextData("nope", []))).toBe(OptionReply.ERR_UNKNOWN);
    // Still haggling: LIST works.
    const list = await client.option(Option.LIST);
    expect(list.map((reply) => reply.type)).toEqual([OptionReply.SERVER, OptionReply.SERVER, OptionReply.SERVER, OptionReply.ACK]);
    expect(list.slice(0, 3).map((reply) => reply.data.subarray(4).toString())).toEqual(["vm1", "vm1-snap", "other"]);
    client.destroy();
  });

  it("INFO sends the real size, flags, block sizes, and name/description when asked", async () => {
    const client = await connect();
    await client.handshake();
    const replies = await client.option(Option.INFO, infoRequestData("vm1-snap", [Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE]));
    const infos = new Map(replies.filter((reply) => reply.type === OptionReply.INFO).map((reply) => [reply.data.readUInt16BE(0), reply.data.subarray(2)]));
    expect(Number(infos.get(Info.EXPORT)!.readBigUInt64BE(0))).toBe(volumeBytes);
    const flags = infos.get(Info.EXPORT)!.readUInt16BE(8);
    expect(flags & TransmissionFlag.READ_ONLY).toBeTruthy();
    expect(flags & TransmissionFlag.SEND_TRIM).toBe(0);
    expect(infos.get(Info.NAME)!.toString()).toBe("vm1-snap");
    expect(infos.get(Info.DESCRIPTION)!.toString()).toContain("snapshot");
    const blockSize = infos.get(Info.BLOCK_SIZE)!;
    expect([blockSize.readUInt32BE(0), blockSize.readUInt32BE(4), blockSize.readUInt32BE(8)]).toEqual([1, 4096, 32 * MiB]);
    expect(replies.at(-1)!.type).toBe(OptionReply.ACK);
    // INFO does not enter transmission: options go on.
    expect((await client.option(Option.LIST)).at(-1)!.type).toBe(OptionReply.ACK);
    client.destroy();
  });

  it("ABORT is acknowledged, then the server closes", async () => {
    const client = await connect();
    await client.handshake();
    expect((await client.option(Option.ABORT)).map((reply) => reply.type)).toEqual([OptionReply.ACK]);
    expect(await client.closesWithin()).toBe(true);
  });

  it("EXPORT_NAME: size and flags (with 124 zeros without NO_ZEROES); an unknown name closes", async () => {
    const client = await connect();
    await client.handshake(FLAG_C_FIXED_NEWSTYLE);
    client.send(optionFrame(Option.EXPORT_NAME, Buffer.from("vm1")));
    const reply = await client.read(134);
    expect(Number(reply.readBigUInt64BE(0))).toBe(volumeBytes);
    expect(reply.readUInt16BE(8) & TransmissionFlag.HAS_FLAGS).toBeTruthy();
    expect(reply.subarray(10).every((byte) => byte === 0)).toBe(true);
    client.request({ type: Command.READ, cookie: 9n, lengthBytes: 4 });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: 9n });
    expect([...(await client.read(4))]).toEqual([1, 1, 1, 1]);
    client.destroy();

    const unknown = await connect();
    await unknown.handshake();
    unknown.send(optionFrame(Option.EXPORT_NAME, Buffer.from("nope")));
    expect(await unknown.closesWithin()).toBe(true);
  });

  it("the empty export name is not the default when several exports are served", async () => {
    const client = await connect();
    await client.handshake();
    expect((await client.option(Option.GO, infoRequestData("")))[0]!.type).toBe(OptionReply.ERR_UNKNOWN);
    client.destroy();
  });
});

describe("transmission: refusals keep the connection", () => {
  it("unknown command and flags, out of range, oversize, and BLOCK_STATUS without contexts", async () => {
    const client = await connect();
    const { flags } = await client.open("vm1");
    expect(flags & TransmissionFlag.SEND_DF).toBe(0); // simple replies: no DF
    const expectErrno = async (fields: Parameters<RawClient["request"]>[0], errno: number, payload?: Buffer) => {
      client.request(fields, payload);
      expect(await client.readSimpleReply()).toEqual({ errno, cookie: fields.cookie });
    };
    await expectErrno({ type: 42, cookie: 1n }, Errno.EINVAL);
    await expectErrno({ type: Command.RESIZE, cookie: 2n }, Errno.EINVAL);
    await expectErrno({ type: Command.READ, flags: 0x80, cookie: 3n, lengthBytes: 512 }, Errno.EINVAL);
    await expectErrno({ type: Command.READ, flags: CommandFlag.DF, cookie: 4n, lengthBytes: 512 }, Errno.EINVAL); // DF not negotiated
    await expectErrno({ type: Command.FLUSH, flags: CommandFlag.FUA, cookie: 5n }, Errno.EINVAL);
    await expectErrno({ type: Command.READ, cookie: 6n, offsetBytes: volumeBytes - 10, lengthBytes: 11 }, Errno.EINVAL);
    await expectErrno({ type: Command.READ, cookie: 7n, offsetBytes: 2 ** 62, lengthBytes: 1 }, Errno.EINVAL);
    await expectErrno({ type: Command.WRITE, cookie: 8n, offsetBytes: volumeBytes }, Errno.ENOSPC, Buffer.alloc(4096, 9));
    await expectErrno({ type: Command.WRITE_ZEROES, cookie: 9n, offsetBytes: volumeBytes - 1, lengthBytes: 2 }, Errno.ENOSPC);
    await expectErrno({ type: Command.TRIM, cookie: 10n, offsetBytes: volumeBytes, lengthBytes: 1 }, Errno.EINVAL);
    await expectErrno({ type: Command.READ, cookie: 11n, lengthBytes: 64 * MiB }, Errno.EINVAL);
    await expectErrno({ type: Command.BLOCK_STATUS, cookie: 12n, lengthBytes: 4096 }, Errno.EINVAL);
    await expectErrno({ type: Command.CACHE, cookie: 13n, lengthBytes: volumeBytes }, 0);
    // An oversize WRITE: its payload is drained (not buffered), then EINVAL.
    await expectErrno({ type: Command.WRITE, cookie: 14n, lengthBytes: 32 * MiB + 1 }, Errno.EINVAL, Buffer.alloc(32 * MiB + 1, 7));
    // And the stream is in sync: a good read still works.
    client.request({ type: Command.READ, cookie: 15n, offsetBytes: 4 * blockSizeBytes, lengthBytes: 8 });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: 15n });
    expect([...(await client.read(8))]).toEqual(Array(8).fill(0x55));
    client.destroy();
    await expectVolumeIntact();
  });

  it("writes to a read-only export get EPERM, their payload is consumed", async () => {
    const client = await connect();
    const { flags } = await client.open("vm1-snap");
    expect(flags & TransmissionFlag.READ_ONLY).toBeTruthy();
    client.request({ type: Command.WRITE, cookie: 1n }, Buffer.alloc(1000, 0xff));
    expect(await client.readSimpleReply()).toEqual({ errno: Errno.EPERM, cookie: 1n });
    client.request({ type: Command.TRIM, cookie: 2n, lengthBytes: blockSizeBytes });
    expect(await client.readSimpleReply()).toEqual({ errno: Errno.EPERM, cookie: 2n });
    client.request({ type: Command.FLUSH, cookie: 3n });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: 3n });
    client.request({ type: Command.READ, cookie: 4n, offsetBytes: 4 * blockSizeBytes - 2, lengthBytes: 4 });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: 4n });
    expect([...(await client.read(4))]).toEqual([4, 4, 0, 0]); // the snapshot predates block 4's write
    client.destroy();
  });

  it("a bad request magic closes the connection", async () => {
    const client = await connect();
    await client.open("vm1");
    client.send(requestFrame({ type: Command.READ, magic: 0x12345678, lengthBytes: 1 }));
    expect(await client.closesWithin()).toBe(true);
  });
});

describe("structured replies", () => {
  const hole = (chunk: Chunk) => ({ offset: Number(chunk.payload.readBigUInt64BE(0)), length: chunk.payload.readUInt32BE(8) });

  it("READ answers zero entries with OFFSET_HOLE, data with OFFSET_DATA; DF gives one data chunk", async () => {
    const client = await connect();
    const { flags } = await client.open("vm1", { structured: true });
    expect(flags & TransmissionFlag.SEND_DF).toBeTruthy();
    // Blocks 3 (data), 4 (data), 5 (zero) from half-way through block 3.
    const offset = 3 * blockSizeBytes + blockSizeBytes / 2;
    const length = 2 * blockSizeBytes;
    client.request({ type: Command.READ, cookie: 1n, offsetBytes: offset, lengthBytes: length });
    const chunks = await client.readStructuredReply();
    expect(chunks.map((chunk) => [chunk.type, chunk.flags, chunk.cookie])).toEqual([
      [ReplyType.OFFSET_DATA, 0, 1n],
      [ReplyType.OFFSET_HOLE, ReplyFlag.DONE, 1n],
    ]);
    expect(Number(chunks[0]!.payload.readBigUInt64BE(0))).toBe(offset);
    expect(chunks[0]!.payload.subarray(8).equals(model.subarray(offset, 5 * blockSizeBytes))).toBe(true);
    expect(hole(chunks[1]!)).toEqual({ offset: 5 * blockSizeBytes, length: offset + length - 5 * blockSizeBytes });

    client.request({ type: Command.READ, flags: CommandFlag.DF, cookie: 2n, offsetBytes: offset, lengthBytes: length });
    const [only, ...rest] = await client.readStructuredReply();
    expect(rest).toEqual([]);
    expect([only!.type, only!.flags]).toEqual([ReplyType.OFFSET_DATA, ReplyFlag.DONE]);
    expect(only!.payload.subarray(8).equals(model.subarray(offset, offset + length))).toBe(true);

    client.request({ type: Command.READ, cookie: 3n, offsetBytes: 10 * blockSizeBytes, lengthBytes: 3 * blockSizeBytes });
    const [allHole] = await client.readStructuredReply();
    expect([allHole!.type, allHole!.flags, hole(allHole!)]).toEqual([ReplyType.OFFSET_HOLE, ReplyFlag.DONE, { offset: 10 * blockSizeBytes, length: 3 * blockSizeBytes }]);

    client.request({ type: Command.READ, cookie: 4n, offsetBytes: volumeBytes, lengthBytes: 1 });
    const [error] = await client.readStructuredReply();
    expect([error!.type, error!.flags, error!.payload.readUInt32BE(0)]).toEqual([ReplyType.ERROR, ReplyFlag.DONE, Errno.EINVAL]);
    expect(error!.payload.subarray(6).toString()).toContain("past the end");
    client.destroy();
  });

  it("BLOCK_STATUS: base:allocation and a dirty bitmap against a snapshot, REQ_ONE, clamped extents", async () => {
    const client = await connect();
    await client.handshake();
    await client.option(Option.STRUCTURED_REPLY);
    const listed = await client.option(Option.LIST_META_CONTEXT, metaContextData("vm1", ["base:", "qemu:dirty-bitmap:"]));
    expect(listed.filter((reply) => reply.type === OptionReply.META_CONTEXT).map((reply) => [reply.data.readUInt32BE(0), reply.data.subarray(4).toString()])).toEqual([
      [0, "base:allocation"],
      [0, "qemu:dirty-bitmap:vm1-snap"],
    ]);
    const set = await client.option(Option.SET_META_CONTEXT, metaContextData("vm1", ["base:allocation", "qemu:dirty-bitmap:vm1-snap", "qemu:dirty-bitmap:nope", "x:y"]));
    const ids = set.filter((reply) => reply.type === OptionReply.META_CONTEXT).map((reply) => [reply.data.readUInt32BE(0), reply.data.subarray(4).toString()]);
    expect(ids).toEqual([
      [1, "base:allocation"],
      [2, "qemu:dirty-bitmap:vm1-snap"],
    ]);
    expect((await client.option(Option.GO, infoRequestData("vm1"))).at(-1)!.type).toBe(OptionReply.ACK);

    const extentsOf = (chunk: Chunk) => {
      const out: Array<[number, number]> = [];
      for (let at = 4; at < chunk.payload.length; at += 8) out.push([chunk.payload.readUInt32BE(at), chunk.payload.readUInt32BE(at + 4)]);
      return { id: chunk.payload.readUInt32BE(0), extents: out };
    };
    client.request({ type: Command.BLOCK_STATUS, cookie: 7n, offsetBytes: blockSizeBytes, lengthBytes: volumeBytes - blockSizeBytes });
    const chunks = await client.readStructuredReply();
    expect(chunks.map((chunk) => [chunk.type, chunk.flags])).toEqual([
      [ReplyType.BLOCK_STATUS, 0],
      [ReplyType.BLOCK_STATUS, ReplyFlag.DONE],
    ]);
    const zero = AllocationFlag.HOLE | AllocationFlag.ZERO;
    expect(extentsOf(chunks[0]!)).toEqual({ id: 1, extents: [[4 * blockSizeBytes, 0], [volumeBytes - 5 * blockSizeBytes, zero]] });
    expect(extentsOf(chunks[1]!)).toEqual({ id: 2, extents: [[3 * blockSizeBytes, 0], [blockSizeBytes, 1], [volumeBytes - 5 * blockSizeBytes, 0]] });

    client.request({ type: Command.BLOCK_STATUS, flags: CommandFlag.REQ_ONE, cookie: 8n, offsetBytes: 100, lengthBytes: 1000 });
    const one = await client.readStructuredReply();
    expect(one.map((chunk) => extentsOf(chunk))).toEqual([
      { id: 1, extents: [[1000, 0]] },
      { id: 2, extents: [[1000, 0]] },
    ]);
    client.request({ type: Command.BLOCK_STATUS, cookie: 9n, offsetBytes: 0, lengthBytes: 0 });
    expect((await client.readStructuredReply())[0]!.payload.readUInt32BE(0)).toBe(Errno.EINVAL);
    client.destroy();
  });

  it("meta contexts set for another export are dropped at GO", async () => {
    const client = await connect();
    await client.handshake();
    await client.option(Option.STRUCTURED_REPLY);
    await client.option(Option.SET_META_CONTEXT, metaContextData("other", ["base:allocation"]));
    await client.option(Option.GO, infoRequestData("vm1"));
    client.request({ type: Command.BLOCK_STATUS, cookie: 1n, lengthBytes: 4096 });
    expect((await client.readStructuredReply())[0]!.type).toBe(ReplyType.ERROR);
    client.destroy();
  });
});

describe("WRITE_ZEROES and FAST_ZERO", () => {
  it("FAST_ZERO: whole blocks are fast; NO_HOLE or a partial data block is ENOTSUP", async () => {
    const client = await connect();
    const { flags } = await client.open("other");
    expect(flags & TransmissionFlag.SEND_FAST_ZERO).toBeTruthy();
    const reply = async (fields: Parameters<RawClient["request"]>[0], payload?: Buffer) => {
      client.request(fields, payload);
      return (await client.readSimpleReply()).errno;
    };
    expect(await reply({ type: Command.WRITE, cookie: 1n, offsetBytes: 0 }, Buffer.alloc(2 * blockSizeBytes, 0xaa))).toBe(0);
    const fast = CommandFlag.FAST_ZERO;
    expect(await reply({ type: Command.WRITE_ZEROES, flags: fast | CommandFlag.NO_HOLE, cookie: 2n, lengthBytes: blockSizeBytes })).toBe(Errno.ENOTSUP);
    expect(await reply({ type: Command.WRITE_ZEROES, flags: fast, cookie: 3n, offsetBytes: 100, lengthBytes: blockSizeBytes })).toBe(Errno.ENOTSUP);
    // Partial blocks that are zero entries already are fast too.
    expect(await reply({ type: Command.WRITE_ZEROES, flags: fast, cookie: 4n, offsetBytes: 5 * blockSizeBytes + 7, lengthBytes: 2 * blockSizeBytes })).toBe(0);
    expect(await reply({ type: Command.WRITE_ZEROES, flags: fast | CommandFlag.FUA, cookie: 5n, offsetBytes: 0, lengthBytes: blockSizeBytes })).toBe(0);
    expect(await reply({ type: Command.WRITE_ZEROES, flags: CommandFlag.NO_HOLE, cookie: 6n, offsetBytes: blockSizeBytes + 10, lengthBytes: 20 })).toBe(0);
    client.request({ type: Command.READ, cookie: 7n, offsetBytes: blockSizeBytes - 1, lengthBytes: 32 });
    await client.readSimpleReply();
    expect([...(await client.read(32))]).toEqual([0, ...Array(10).fill(0xaa), ...Array(20).fill(0), 0xaa]);
    client.destroy();
  });
});

describe("concurrency and robustness", () => {
  it("pipelines many requests on one connection; every cookie gets its reply", async () => {
    const client = await connect();
    await client.open("other", { structured: true });
    const count = 3 * inFlightMax;
    for (let index = 0; index < count; index++) {
      const offsetBytes = 8 * blockSizeBytes + index * 4096;
      client.request({ type: Command.WRITE, cookie: BigInt(2 * index), offsetBytes }, Buffer.alloc(4096, index & 0xff));
      client.request({ type: Command.READ, flags: CommandFlag.DF, cookie: BigInt(2 * index + 1), offsetBytes: 8 * blockSizeBytes, lengthBytes: 4096 });
    }
    const seen = new Set<bigint>();
    for (let index = 0; index < 2 * count; index++) {
      const [chunk] = await client.readStructuredReply();
      expect(chunk!.type === ReplyType.NONE || chunk!.type === ReplyType.OFFSET_DATA).toBe(true);
      seen.add(chunk!.cookie);
    }
    expect(seen.size).toBe(2 * count);
    client.request({ type: Command.READ, flags: CommandFlag.DF, cookie: 1n, offsetBytes: 8 * blockSizeBytes + 5 * 4096, lengthBytes: 4096 });
    expect((await client.readStructuredReply())[0]!.payload.subarray(8).every((byte) => byte === 5)).toBe(true);
    client.destroy();
  });

  it("a client that stops reading its replies is throttled, then gets them all", async () => {
    const client = await connect();
    await client.open("vm1");
    const count = 3 * inFlightMax;
    for (let index = 0; index < count; index++) client.request({ type: Command.READ, cookie: BigInt(index), lengthBytes: MiB });
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Replies are waiting for us; the server holds at most inFlightMax of them (64 MiB here).
    const inFlight = Math.max(...server.connections.map((connection) => connection.inFlight));
    expect(inFlight).toBeGreaterThan(0);
    expect(inFlight).toBeLessThanOrEqual(inFlightMax);
    for (let index = 0; index < count; index++) {
      const reply = await client.readSimpleReply();
      expect(reply.errno).toBe(0);
      expect((await client.read(MiB)).equals(model.subarray(0, MiB))).toBe(true);
    }
    client.destroy();
  });

  it("large WRITEs arriving in odd pieces, pipelined with small ones, land intact", async () => {
    // Exercises the socket reading a large payload's rest straight into its buffer
    // (socket-input.ts, Session.nextReadBuffer) and going back to its read buffer after.
    const client = await connect();
    await client.open("other", { structured: true });
    const base = 32 * blockSizeBytes; // the second half of the volume
    const expected = Buffer.alloc(2 * MiB);
    const stream: Buffer[] = [];
    let cookie = 100n;
    const write = (offsetBytes: number, data: Buffer): void => {
      data.copy(expected, offsetBytes);
      stream.push(requestFrame({ type: Command.WRITE, cookie: cookie++, offsetBytes: base + offsetBytes }, data));
    };
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pattern = (length: number): Buffer => Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));
    write(0, pattern(1.5 * MiB));
    write(4096, pattern(4096));
    write(MiB / 2 + 100, pattern(200_000));
    write(1.5 * MiB, pattern(MiB / 2));
    const bytes = Buffer.concat(stream);
    for (let at = 0; at < bytes.length; ) {
      const piece = Math.min(bytes.length - at, 1 + Math.floor(random() * 300_000));
      client.send(bytes.subarray(at, at + piece));
      at += piece;
      if (random() < 0.3) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const cookies: bigint[] = [];
    for (let index = 0; index < stream.length; index++) {
      const [chunk] = await client.readStructuredReply();
      expect(chunk?.type).toBe(ReplyType.NONE);
      cookies.push(chunk?.cookie ?? 0n);
    }
    expect(cookies.sort()).toEqual([100n, 101n, 102n, 103n]);
    for (let offset = 0; offset < expected.length; offset += MiB / 2) {
      client.request({ type: Command.READ, cookie: 1n, offsetBytes: base + offset, lengthBytes: MiB / 2, flags: CommandFlag.DF });
      const [chunk] = await client.readStructuredReply();
      expect(chunk?.payload.subarray(8).equals(expected.subarray(offset, offset + MiB / 2)), `at ${offset}`).toBe(true);
    }
    client.destroy();
  });

  it("clients vanishing mid-handshake, mid-payload and with replies queued end only themselves", async () => {
    const midHandshake = await connect();
    await midHandshake.handshake();
    midHandshake.send(optionFrame(Option.GO, infoRequestData("vm1")).subarray(0, 20));
    midHandshake.destroy();

    const midPayload = await connect();
    await midPayload.open("vm1");
    midPayload.send(requestFrame({ type: Command.WRITE, cookie: 1n, lengthBytes: 2 * MiB }).subarray(0, 28));
    midPayload.send(Buffer.alloc(MiB, 0xee)); // half the payload: this write must never land
    await new Promise((resolve) => setTimeout(resolve, 50));
    midPayload.destroy();

    const queued = await connect();
    await queued.open("vm1", { structured: true });
    for (let index = 0; index < 100; index++) queued.request({ type: Command.READ, cookie: BigInt(index), lengthBytes: MiB });
    await new Promise((resolve) => setTimeout(resolve, 50));
    queued.destroy();

    await eventually(() => server.connectionCount === 0, "connections to close");
    await expectVolumeIntact();
  });

  it("DISC: in-flight replies are written, then the server closes; half-close works the same", async () => {
    const client = await connect();
    await client.open("other");
    client.send(
      Buffer.concat([
        requestFrame({ type: Command.WRITE, cookie: 1n, offsetBytes: 20 * blockSizeBytes }, Buffer.alloc(MiB, 3)),
        requestFrame({ type: Command.FLUSH, cookie: 2n }),
        requestFrame({ type: Command.DISC, cookie: 3n }),
        requestFrame({ type: Command.READ, cookie: 4n, lengthBytes: 1 }), // after DISC: ignored
      ]),
    );
    const cookies = [(await client.readSimpleReply()).cookie, (await client.readSimpleReply()).cookie].sort();
    expect(cookies).toEqual([1n, 2n]);
    expect(await client.closesWithin()).toBe(true);

    const halfClosed = await connect();
    await halfClosed.open("other");
    halfClosed.request({ type: Command.READ, cookie: 5n, offsetBytes: 20 * blockSizeBytes, lengthBytes: 16 });
    halfClosed.end();
    expect(await halfClosed.readSimpleReply()).toEqual({ errno: 0, cookie: 5n });
    expect([...(await halfClosed.read(16))]).toEqual(Array(16).fill(3));
    expect(await halfClosed.closesWithin()).toBe(true);
  });

  it("connections to one export share one volume (multi-conn); the last one closes it", async () => {
    const first = await connect();
    const second = await connect();
    expect((await first.open("other")).flags & TransmissionFlag.CAN_MULTI_CONN).toBeTruthy();
    await second.open("other");
    expect(server.registry.openExports.get("other")).toBe(2);
    first.request({ type: Command.WRITE, cookie: 1n, offsetBytes: 30 * blockSizeBytes }, Buffer.alloc(100, 0x77));
    expect((await first.readSimpleReply()).errno).toBe(0);
    second.request({ type: Command.READ, cookie: 2n, offsetBytes: 30 * blockSizeBytes, lengthBytes: 100 });
    expect((await second.readSimpleReply()).errno).toBe(0);
    expect((await second.read(100)).every((byte) => byte === 0x77)).toBe(true);
    first.request({ type: Command.DISC });
    second.request({ type: Command.DISC });
    await Promise.all([first.closed, second.closed]);
    await eventually(() => !server.registry.openExports.has("other"), "the volume to close");
  });

  it("survives fuzzed handshakes and requests; the volume is intact afterwards", async () => {
    const header = Buffer.concat([clientFlagsFrame(3), optionFrame(Option.GO, infoRequestData("vm1-snap"))]);
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 512 }), async (afterGo, bytes) => {
        const client = await connect();
        await client.read(18);
        client.send(afterGo ? Buffer.concat([header, Buffer.from(bytes)]) : Buffer.from(bytes));
        await new Promise((resolve) => setTimeout(resolve, 5));
        client.destroy();
      }),
      { numRuns: 40 },
    );
    await eventually(() => server.connectionCount === 0, "fuzzed connections to close");
    await expectVolumeIntact();
  });
});

describe("a second server: read-only, short handshake timeout", () => {
  let own: NbdServer;
  let path: string;
  beforeAll(async () => {
    path = join(dir, "read-only.sock");
    own = new NbdServer({ engine, exports: ["other"], socketPath: path, readOnly: true, handshakeTimeoutMs: 300 });
    await own.listen();
  });
  afterAll(() => own.close());

  it("--read-only serves a volume READ_ONLY (no lock taken) and refuses writes with EPERM", async () => {
    const client = await RawClient.connect(path);
    const { flags } = await client.open("other");
    expect(flags & TransmissionFlag.READ_ONLY).toBeTruthy();
    expect(flags & (TransmissionFlag.SEND_WRITE_ZEROES | TransmissionFlag.SEND_FUA)).toBe(0);
    client.request({ type: Command.WRITE, cookie: 1n }, Buffer.alloc(10));
    expect(await client.readSimpleReply()).toEqual({ errno: Errno.EPERM, cookie: 1n });
    client.request({ type: Command.WRITE_ZEROES, cookie: 2n, lengthBytes: 10 });
    expect(await client.readSimpleReply()).toEqual({ errno: Errno.EPERM, cookie: 2n });
    client.destroy();
  });

  it("a connection idle in the handshake is closed after the timeout; one in transmission is not", async () => {
    const idle = await RawClient.connect(path);
    await idle.handshake();
    const transmitting = await RawClient.connect(path);
    await transmitting.open("other");
    expect(await idle.closesWithin(3000)).toBe(true);
    transmitting.request({ type: Command.FLUSH, cookie: 3n });
    expect(await transmitting.readSimpleReply()).toEqual({ errno: 0, cookie: 3n });
    transmitting.destroy();
    await eventually(() => own.connectionCount === 0, "connections to close");
  });
});

describe("TCP", () => {
  it("listens on 127.0.0.1 (port 0 picks one) and serves the same protocol", async () => {
    const tcp = new NbdServer({ engine, exports: ["vm1-snap"], tcp: { port: 0 } });
    try {
      const [address] = await tcp.listen();
      expect(address).toMatchObject({ kind: "tcp", host: "127.0.0.1" });
      const port = (address as { port: number }).port;
      expect(port).toBeGreaterThan(0);
      expect(tcp.uris("vm1-snap")).toEqual([`nbd://127.0.0.1:${port}/vm1-snap`]);
      const client = await RawClient.connect({ port, host: "127.0.0.1" });
      await client.open("vm1-snap", { structured: true });
      client.request({ type: Command.READ, flags: CommandFlag.DF, cookie: 1n, offsetBytes: 0, lengthBytes: 4 });
      const [chunk] = await client.readStructuredReply();
      expect([...chunk!.payload.subarray(8)]).toEqual([1, 1, 1, 1]);
      client.destroy();
    } finally {
      await tcp.close();
    }
  });
});

describe("graceful shutdown", () => {
  it("finishes in-flight requests, flushes, closes the volume and the sockets", async () => {
    const path = join(dir, "shutdown.sock");
    const own = new NbdServer({ engine, exports: ["shutdown-vol"], socketPath: path, shutdownTimeoutMs: 5000 });
    await own.listen();
    const client = await RawClient.connect(path);
    const { sizeBytes } = await client.open(""); // the one export is the default
    expect(sizeBytes).toBe(volumeBytes);
    const data = Buffer.alloc(64 * 1024, 0x42);
    client.request({ type: Command.WRITE, cookie: 1n }, data);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closing = own.close();
    expect((await client.readSimpleReply()).errno).toBe(0);
    expect(await client.closesWithin()).toBe(true);
    await closing;
    // The lock is released and the write is there.
    const volume = await engine.openVolume("shutdown-vol");
    expect((await volume.read(0, data.length)).equals(data)).toBe(true);
    await volume.close();
    await expect(RawClient.connect(path)).rejects.toThrow();
  });
});
