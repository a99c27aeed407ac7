/**
 * The wire format: every encoder against a canonical byte vector written out by hand from
 * proto.md, every decoder fed canonical streams split at every offset, and fast-check
 * streams (random, and valid ones mutated) that must only ever produce messages or a
 * typed NbdProtocolError, with bounded buffering.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isProtocolError, NbdProtocolError } from "./errors.ts";
import { handshakeBufferedBytesMax, metaContextQueriesMax, requestBufferedBytesMax } from "./limits.ts";
import { decodeInfoRequest, decodeMetaContextRequest, isOptionDataError } from "./option-data.ts";
import { ByteQueue, HandshakeParser, RequestParser } from "./parser.ts";
import { Command, CommandFlag, Info, Option, OptionReply, ReplyFlag, optionLengthMaxBytes } from "./protocol.ts";
import { clientFlagsFrame, infoRequestData, metaContextData, optionFrame, requestFrame } from "./testing/frames.ts";
import {
  encodeExportNameReply,
  encodeExtents,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeMetaContext,
  encodeOptionAck,
  encodeOptionError,
  encodeServerEntry,
  encodeServerHandshake,
  writeBlockStatusHeader,
  writeErrorChunkHeader,
  writeNoneChunk,
  writeOffsetDataHeader,
  writeOffsetHoleChunk,
  writeSimpleReply,
  type HandshakeMessage,
  type Request,
} from "./wire.ts";

/** "0003 e889 …" → bytes; spaces and newlines are for reading only. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ""), "hex");
}

/** Runs a write*(target, 0, …) encoder into a fresh area and returns what it wrote. */
function encoded(write: (target: Buffer) => number): Buffer {
  const area = Buffer.alloc(64, 0xee);
  return area.subarray(0, write(area));
}

const optionReplyMagic = "0003e889045565a9";
const cookie = 0x0102030405060708n;

describe("handshake encoders", () => {
  const cases: Array<[string, Buffer, string]> = [
    ["server greeting", encodeServerHandshake(3), "4e42444d41474943 49484156454f5054 0003"],
    ["ACK", encodeOptionAck(Option.GO), `${optionReplyMagic} 00000007 00000001 00000000`],
    ["ERR_UNSUP with message", encodeOptionError(99, OptionReply.ERR_UNSUP, "no"), `${optionReplyMagic} 00000063 80000001 00000002 6e6f`],
    ["SERVER entry", encodeServerEntry(Option.LIST, "vm1"), `${optionReplyMagic} 00000003 00000002 00000007 00000003 766d31`],
    [
      "INFO_EXPORT",
      encodeInfoExport(Option.GO, 0x1_0000_0000, 0x0d6d),
      `${optionReplyMagic} 00000007 00000003 0000000c 0000 0000000100000000 0d6d`,
    ],
    ["INFO_NAME", encodeInfoName(Option.INFO, "vm1"), `${optionReplyMagic} 00000006 00000003 00000005 0001 766d31`],
    ["INFO_DESCRIPTION", encodeInfoDescription(Option.INFO, "d"), `${optionReplyMagic} 00000006 00000003 00000003 0002 64`],
    [
      "INFO_BLOCK_SIZE",
      encodeInfoBlockSize(Option.GO, 1, 4096, 32 * 1024 * 1024),
      `${optionReplyMagic} 00000007 00000003 0000000e 0003 00000001 00001000 02000000`,
    ],
    [
      "META_CONTEXT",
      encodeMetaContext(Option.SET_META_CONTEXT, 1, "base:allocation"),
      `${optionReplyMagic} 0000000a 00000004 00000013 00000001 ${Buffer.from("base:allocation").toString("hex")}`,
    ],
    ["EXPORT_NAME reply, NO_ZEROES", encodeExportNameReply(4096, 0x0003, true), "0000000000001000 0003"],
  ];
  it.each(cases)("%s", (_name, actual, expected) => {
    expect(actual.toString("hex")).toBe(hex(expected).toString("hex"));
  });

  it("EXPORT_NAME reply without NO_ZEROES has 124 zero bytes", () => {
    const reply = encodeExportNameReply(512, 1, false);
    expect(reply.length).toBe(134);
    expect(reply.subarray(10).every((byte) => byte === 0)).toBe(true);
  });
});

describe("transmission encoders", () => {
  const cases: Array<[string, Buffer, string]> = [
    ["simple reply, success", encoded((b) => writeSimpleReply(b, 0, 0, cookie)), "67446698 00000000 0102030405060708"],
    ["simple reply, EINVAL", encoded((b) => writeSimpleReply(b, 0, 22, cookie)), "67446698 00000016 0102030405060708"],
    ["NONE chunk", encoded((b) => writeNoneChunk(b, 0, cookie)), "668e33ef 0001 0000 0102030405060708 00000000"],
    [
      "OFFSET_DATA header (4 data bytes follow)",
      encoded((b) => writeOffsetDataHeader(b, 0, ReplyFlag.DONE, cookie, 0x200, 4)),
      "668e33ef 0001 0001 0102030405060708 0000000c 0000000000000200",
    ],
    [
      "OFFSET_HOLE chunk",
      encoded((b) => writeOffsetHoleChunk(b, 0, 0, cookie, 0x1_0000_0000, 0x10000)),
      "668e33ef 0000 0002 0102030405060708 0000000c 0000000100000000 00010000",
    ],
    [
      "BLOCK_STATUS header (2 extents follow)",
      encoded((b) => writeBlockStatusHeader(b, 0, ReplyFlag.DONE, cookie, 1, 2)),
      "668e33ef 0001 0005 0102030405060708 00000014 00000001",
    ],
    [
      "ERROR chunk header (2-byte message follows)",
      encoded((b) => writeErrorChunkHeader(b, 0, ReplyFlag.DONE, cookie, 22, 2)),
      "668e33ef 0001 8001 0102030405060708 00000008 00000016 0002",
    ],
    ["extents", encodeExtents([{ lengthBytes: 0x10000, flags: 3 }, { lengthBytes: 0x20000, flags: 0 }]), "00010000 00000003 00020000 00000000"],
  ];
  it.each(cases)("%s", (_name, actual, expected) => {
    expect(actual.toString("hex")).toBe(hex(expected).toString("hex"));
  });

  it("encoders write at an offset and return the end", () => {
    const area = Buffer.alloc(64);
    const end = writeNoneChunk(area, 20, cookie);
    expect(end).toBe(40);
    expect(area.subarray(20, 24).toString("hex")).toBe("668e33ef");
  });
});

// ── parsers ────────────────────────────────────────────────────────────────

/** A handshake stream and the messages it holds. */
const handshakeStream = Buffer.concat([
  hex("00000003"),
  hex("49484156454f5054 00000008 00000000"), // STRUCTURED_REPLY
  optionFrame(Option.GO, infoRequestData("vm1", [Info.BLOCK_SIZE])),
  optionFrame(Option.LIST),
]);
const handshakeMessages: HandshakeMessage[] = [
  { kind: "clientFlags", flags: 3 },
  { kind: "option", option: Option.STRUCTURED_REPLY, data: Buffer.alloc(0) },
  { kind: "option", option: Option.GO, data: hex("00000003 766d31 0001 0003") },
  { kind: "option", option: Option.LIST, data: Buffer.alloc(0) },
];

const writePayload = Buffer.from("hello, world");
const requestStream = Buffer.concat([
  hex("25609513 0000 0000 0000000000000001 0000000000001000 00000200"), // READ 512 @ 4096
  hex("25609513 0001 0001 0000000000000002 0000000000000000 0000000c"), // WRITE FUA, 12 bytes
  writePayload,
  hex("25609513 0000 0001 0000000000000003 0000000000000000 00000004"), // WRITE, refused: payload skipped
  hex("deadbeef"),
  hex("25609513 0008 0007 ffffffffffffffff ffffffffffffffff ffffffff"), // BLOCK_STATUS REQ_ONE, extremes
  hex("25609513 0000 0002 0000000000000005 0000000000000000 00000000"), // DISC
]);
const expectedRequests: Request[] = [
  { flags: 0, type: Command.READ, cookie: 1n, offsetBytes: 4096, lengthBytes: 512, payload: undefined },
  { flags: CommandFlag.FUA, type: Command.WRITE, cookie: 2n, offsetBytes: 0, lengthBytes: 12, payload: writePayload },
  { flags: 0, type: Command.WRITE, cookie: 3n, offsetBytes: 0, lengthBytes: 4, payload: undefined },
  { flags: CommandFlag.REQ_ONE, type: Command.BLOCK_STATUS, cookie: 0xffffffffffffffffn, offsetBytes: 2 ** 64 - 1, lengthBytes: 0xffffffff, payload: undefined },
  { flags: 0, type: Command.DISC, cookie: 5n, offsetBytes: 0, lengthBytes: 0, payload: undefined },
];

function newRequestParser(queue: ByteQueue): RequestParser {
  // Cookie 3's payload is refused (discarded); the others are kept.
  return new RequestParser(queue, (header) => (header.cookie === 3n ? undefined : Buffer.alloc(header.lengthBytes)));
}

function drain<T>(parser: { next(): T | undefined }): T[] {
  const out: T[] = [];
  for (let message = parser.next(); message !== undefined; message = parser.next()) out.push(message);
  return out;
}

/** Feeds `chunks` one by one, pulling everything after each; returns all messages. */
function feed<T>(chunks: readonly Buffer[], make: (queue: ByteQueue) => { next(): T | undefined }): T[] {
  const queue = new ByteQueue();
  const parser = make(queue);
  const out: T[] = [];
  for (const chunk of chunks) {
    queue.push(chunk);
    out.push(...drain(parser));
  }
  expect(queue.length).toBe(0);
  return out;
}

describe("HandshakeParser", () => {
  it("parses the canonical stream in one chunk", () => {
    expect(feed([handshakeStream], (queue) => new HandshakeParser(queue))).toEqual(handshakeMessages);
  });

  it("parses it split at every offset", () => {
    for (let at = 0; at <= handshakeStream.length; at++) {
      const chunks = [handshakeStream.subarray(0, at), handshakeStream.subarray(at)];
      expect(feed(chunks, (queue) => new HandshakeParser(queue)), `split at ${at}`).toEqual(handshakeMessages);
    }
  });

  it("parses it one byte at a time", () => {
    const chunks = [...handshakeStream].map((byte) => Buffer.from([byte]));
    expect(feed(chunks, (queue) => new HandshakeParser(queue))).toEqual(handshakeMessages);
  });

  it("refuses a bad IHAVEOPT and an oversize option before buffering it", () => {
    const badMagic = Buffer.concat([clientFlagsFrame(3), hex("49484156454f5055 00000001 00000000")]);
    expect(() => feed([badMagic], (queue) => new HandshakeParser(queue))).toThrow(NbdProtocolError);
    const queue = new ByteQueue();
    const parser = new HandshakeParser(queue);
    queue.push(Buffer.concat([clientFlagsFrame(3), optionFrame(Option.GO, Buffer.alloc(0), optionLengthMaxBytes + 1)]));
    parser.next();
    expect(() => parser.next()).toThrow(expect.objectContaining({ code: "OPTION_TOO_LONG" }));
  });
});

describe("RequestParser", () => {
  it("parses the canonical stream in one chunk", () => {
    expect(feed([requestStream], newRequestParser)).toEqual(expectedRequests);
  });

  it("parses it split at every offset, and at every pair of offsets", () => {
    for (let at = 0; at <= requestStream.length; at++) {
      const chunks = [requestStream.subarray(0, at), requestStream.subarray(at)];
      expect(feed(chunks, newRequestParser), `split at ${at}`).toEqual(expectedRequests);
    }
    for (let first = 0; first <= requestStream.length; first += 3) {
      for (let second = first; second <= requestStream.length; second += 5) {
        const chunks = [requestStream.subarray(0, first), requestStream.subarray(first, second), requestStream.subarray(second)];
        expect(feed(chunks, newRequestParser), `split at ${first}, ${second}`).toEqual(expectedRequests);
      }
    }
  });

  it("copies a WRITE payload into its target as it arrives, without buffering it", () => {
    const queue = new ByteQueue();
    const target = Buffer.alloc(1000);
    const parser = new RequestParser(queue, () => target);
    const payload = Buffer.alloc(1000, 7);
    queue.push(requestFrame({ type: Command.WRITE }, payload).subarray(0, 528));
    expect(parser.next()).toBeUndefined();
    expect(queue.length).toBe(0);
    expect(parser.pendingPayload).toBe(target);
    queue.push(payload.subarray(500));
    expect(parser.next()?.payload).toBe(target);
    expect(target.equals(payload)).toBe(true);
  });

  it("a zero-length WRITE has an empty payload and asks for no target", () => {
    const queue = new ByteQueue();
    const parser = new RequestParser(queue, () => {
      throw new Error("not asked");
    });
    queue.push(requestFrame({ type: Command.WRITE }));
    expect(parser.next()?.payload?.length).toBe(0);
  });

  it("parses borrowed chunks of a reused read buffer, scribbled over after each one, split at every offset", () => {
    // The session's socket reads into one buffer (socket-input.ts): what the parser keeps
    // past a push must be its own copy. Pull at most `pulls` messages per chunk, so the
    // unparsed rest of a chunk sometimes waits for the next one.
    const reused = Buffer.alloc(requestStream.length);
    for (const pulls of [1, Infinity]) {
      for (let at = 0; at <= requestStream.length; at++) {
        const queue = new ByteQueue();
        const parser = newRequestParser(queue);
        const out: Request[] = [];
        for (const chunk of [requestStream.subarray(0, at), requestStream.subarray(at)]) {
          chunk.copy(reused);
          queue.pushBorrowed(reused.subarray(0, chunk.length));
          for (let pulled = 0, message = parser.next(); message !== undefined; message = pulled < pulls ? parser.next() : undefined) {
            out.push(message);
            pulled++;
          }
          queue.unborrow();
          reused.fill(0xaa);
        }
        out.push(...drain(parser));
        expect(out, `split at ${at}, ${pulls} per chunk`).toEqual(expectedRequests);
        expect(queue.length).toBe(0);
      }
    }
  });

  it("refuses a bad request magic", () => {
    expect(() => feed([requestFrame({ type: 0, magic: 0x25609514 })], newRequestParser)).toThrow(
      expect.objectContaining({ code: "BAD_REQUEST_MAGIC" }),
    );
  });
});

// ── option payloads ────────────────────────────────────────────────────────

describe("option payload decoders", () => {
  it("INFO/GO request", () => {
    expect(decodeInfoRequest(hex("00000003 766d31 0002 0001 0003"), "GO")).toEqual({ exportName: "vm1", infoTypes: [1, 3] });
    expect(decodeInfoRequest(hex("00000000 0000"), "GO")).toEqual({ exportName: "", infoTypes: [] });
  });

  it("meta context request", () => {
    expect(decodeMetaContextRequest(metaContextData("vm1", ["base:allocation", "qemu:"]), "SET")).toEqual({
      exportName: "vm1",
      queries: ["base:allocation", "qemu:"],
    });
  });

  const malformed: Array<[string, Buffer, number]> = [
    ["INFO: empty", Buffer.alloc(0), OptionReply.ERR_INVALID],
    ["INFO: name longer than the data", hex("00000009 766d31 0000"), OptionReply.ERR_INVALID],
    ["INFO: count without its types", hex("00000003 766d31 0002 0001"), OptionReply.ERR_INVALID],
    ["INFO: trailing byte", hex("00000003 766d31 0000 ff"), OptionReply.ERR_INVALID],
    ["INFO: invalid UTF-8 name", hex("00000002 c328 0000"), OptionReply.ERR_INVALID],
    ["INFO: name over 4096 bytes", Buffer.concat([hex("00001001"), Buffer.alloc(4097, 0x61), hex("0000")]), OptionReply.ERR_TOO_BIG],
  ];
  it.each(malformed)("%s", (_name, data, error) => {
    const result = decodeInfoRequest(data, "INFO");
    expect(isOptionDataError(result) && result.error).toBe(error);
  });

  const malformedMeta: Array<[string, Buffer, number]> = [
    ["META: count larger than the data", hex("00000000 00000005 00000000"), OptionReply.ERR_INVALID],
    ["META: query longer than the data", hex("00000000 00000001 00000010 6162"), OptionReply.ERR_INVALID],
    ["META: trailing bytes", Buffer.concat([metaContextData("", ["a"]), hex("00")]), OptionReply.ERR_INVALID],
    ["META: too many queries", metaContextData("", Array.from({ length: metaContextQueriesMax + 1 }, () => "")), OptionReply.ERR_TOO_BIG],
  ];
  it.each(malformedMeta)("%s", (_name, data, error) => {
    const result = decodeMetaContextRequest(data, "SET");
    expect(isOptionDataError(result) && result.error).toBe(error);
  });
});

// ── fuzz ───────────────────────────────────────────────────────────────────

/** Splits `stream` at the given fractions into chunks. */
function splitAt(stream: Buffer, cuts: readonly number[]): Buffer[] {
  const offsets = [...new Set(cuts.map((cut) => Math.floor(cut * stream.length)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let previous = 0;
  for (const offset of [...offsets, stream.length]) {
    chunks.push(stream.subarray(previous, offset));
    previous = offset;
  }
  return chunks;
}

/** Feeds chunks, checking after each pull that nothing but a protocol error is thrown and buffering stays bounded. */
function fuzzFeed(chunks: readonly Buffer[], make: (queue: ByteQueue) => { next(): unknown; bufferedBytes: number }, boundBytes: number): void {
  const queue = new ByteQueue();
  const parser = make(queue);
  try {
    for (const chunk of chunks) {
      queue.push(chunk);
      while (parser.next() !== undefined);
      // After pulling everything, what is left is a partial message, never more.
      expect(parser.bufferedBytes).toBeLessThanOrEqual(boundBytes);
    }
  } catch (error) {
    if (!isProtocolError(error)) throw error;
  }
}

const validHandshake = Buffer.concat([handshakeStream, optionFrame(Option.SET_META_CONTEXT, metaContextData("vm1", ["base:allocation"]))]);
const mutatedStream = (base: Buffer) =>
  fc
    .array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 8 })
    .map((mutations) => {
      const stream = Buffer.from(base);
      for (const { at, value } of mutations) stream[at % stream.length] = value;
      return stream;
    });
const cutsArbitrary = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 });

describe("parsers under fuzz", () => {
  it("HandshakeParser: random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), cutsArbitrary, (bytes, cuts) => {
        fuzzFeed(splitAt(Buffer.from(bytes), cuts), (queue) => new HandshakeParser(queue), handshakeBufferedBytesMax);
      }),
      { numRuns: 300 },
    );
  });

  it("HandshakeParser: mutated valid streams", () => {
    fc.assert(
      fc.property(mutatedStream(validHandshake), cutsArbitrary, (stream, cuts) => {
        fuzzFeed(splitAt(stream, cuts), (queue) => new HandshakeParser(queue), handshakeBufferedBytesMax);
      }),
      { numRuns: 500 },
    );
  });

  it("RequestParser: random bytes and mutated valid streams", () => {
    const make = (queue: ByteQueue) =>
      new RequestParser(queue, (header) => (header.lengthBytes <= 64 * 1024 && header.cookie % 2n === 0n ? Buffer.alloc(header.lengthBytes) : undefined));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 4096 }).map((bytes) => Buffer.from(bytes)), mutatedStream(requestStream)), cutsArbitrary, (stream, cuts) => {
        fuzzFeed(splitAt(stream, cuts), make, requestBufferedBytesMax);
      }),
      { numRuns: 500 },
    );
  });

  it("option payload decoders never throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        decodeInfoRequest(Buffer.from(bytes), "GO");
        decodeMetaContextRequest(Buffer.from(bytes), "SET");
      }),
      { numRuns: 1000 },
    );
  });
});
