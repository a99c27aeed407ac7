/**
 * The QMP parser against canonical byte vectors (what QEMU 7.2 sends, and strings made to
 * trip a naive scanner), each fed whole, split at every offset, and a byte at a time; and the
 * inputs that must end the stream with a protocol error.
 */
import { describe, expect, it } from "vitest";
import { QmpParser, QmpProtocolError, ScanState, encodeCommand, messageBytesMax, type QmpMessage } from "./qmp-wire.ts";

const greeting =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}\r\n';
const returnEmpty = '{"return": {}, "id": 1}\r\n';
const returnStatus = '{"return": {"status": "running", "singlestep": false, "running": true}, "id": 2}\r\n';
const commandNotFound = '{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command nosuch has not been found"}}\r\n';
const powerdown = '{"timestamp": {"seconds": 1795522889, "microseconds": 547006}, "event": "POWERDOWN"}\r\n';
/** Braces, brackets, quotes and backslashes inside strings, multi-byte UTF-8, nested arrays. */
const tricky = '{"return": [{"desc": "a } ] { [ \\" \\\\", "name": "é€😀", "n": [[1], {"x": []}]}], "id": 4}\r\n';
/** QEMU ends messages with CRLF, but no framing is promised: two messages back to back, no separator. */
const adjacent = '{"return": 7, "id": 5}{"event": "RESET", "data": {"guest": true, "reason": "guest-reset"}, "timestamp": {"seconds": 1, "microseconds": 2}}';

const stream = Buffer.from([greeting, returnEmpty, returnStatus, commandNotFound, powerdown, tricky, adjacent].join(""), "utf8");

const expected: QmpMessage[] = [
  { kind: "greeting", version: { qemu: { micro: 22, minor: 2, major: 7 }, package: "Debian 1:7.2+dfsg-7+deb12u18+b3" }, capabilities: ["oob"] },
  { kind: "return", id: 1, value: {} },
  { kind: "return", id: 2, value: { status: "running", singlestep: false, running: true } },
  { kind: "error", id: 3, errorClass: "CommandNotFound", description: "The command nosuch has not been found" },
  { kind: "event", event: "POWERDOWN", data: {}, timestampMicros: 1795522889_547006 },
  { kind: "return", id: 4, value: [{ desc: 'a } ] { [ " \\', name: "é€😀", n: [[1], { x: [] }] }] },
  { kind: "return", id: 5, value: 7 },
  { kind: "event", event: "RESET", data: { guest: true, reason: "guest-reset" }, timestampMicros: 1_000_002 },
];

function parseChunks(chunks: Buffer[]): QmpMessage[] {
  const parser = new QmpParser();
  const messages = chunks.flatMap((chunk) => parser.push(chunk));
  expect(parser.state).toBe(ScanState.BETWEEN);
  return messages;
}

describe("QmpParser", () => {
  it("parses the stream fed whole", () => {
    expect(parseChunks([stream])).toEqual(expected);
  });

  it("parses the stream split at every offset", () => {
    for (let offset = 0; offset <= stream.length; offset++) {
      expect(parseChunks([stream.subarray(0, offset), stream.subarray(offset)]), `split at ${offset}`).toEqual(expected);
    }
  });

  it("parses the stream split at every pair of offsets inside the tricky message", () => {
    const begin = stream.indexOf(Buffer.from(tricky, "utf8"));
    const end = begin + Buffer.byteLength(tricky);
    for (let first = begin; first < end; first++) {
      for (let second = first; second < end; second++) {
        const chunks = [stream.subarray(0, first), stream.subarray(first, second), stream.subarray(second)];
        expect(parseChunks(chunks), `split at ${first} and ${second}`).toEqual(expected);
      }
    }
  });

  it("parses the stream a byte at a time", () => {
    const bytes = Array.from({ length: stream.length }, (_, index) => stream.subarray(index, index + 1));
    expect(parseChunks(bytes)).toEqual(expected);
  });

  it("reads back what encodeCommand writes (as a reply carrying it)", () => {
    const command = encodeCommand("set_password", { protocol: "vnc", password: 'p"}\\' }, 9);
    expect(command.toString("utf8")).toBe('{"execute":"set_password","arguments":{"protocol":"vnc","password":"p\\"}\\\\"},"id":9}\r\n');
    expect(encodeCommand("query-status", undefined, 1).toString("utf8")).toBe('{"execute":"query-status","id":1}\r\n');
    const wrapped = Buffer.from(`{"return": ${command.toString("utf8").trim()}}`, "utf8");
    for (let offset = 0; offset <= wrapped.length; offset++) {
      const [message] = parseChunks([wrapped.subarray(0, offset), wrapped.subarray(offset)]);
      expect(message).toEqual({ kind: "return", id: undefined, value: { execute: "set_password", arguments: { protocol: "vnc", password: 'p"}\\' }, id: 9 } });
    }
  });

  const broken: Array<[string, string]> = [
    ["text between messages", `${returnEmpty}garbage`],
    ["a top-level array", "[1, 2]"],
    ["invalid JSON inside the braces", '{"return": }'],
    ["an object of no known shape", '{"hello": "world"}'],
  ];
  for (const [what, text] of broken) {
    it(`fails the stream on ${what}, at any split, and stays failed`, () => {
      const bytes = Buffer.from(text, "utf8");
      for (let offset = 0; offset <= bytes.length; offset++) {
        const parser = new QmpParser();
        expect(() => {
          parser.push(bytes.subarray(0, offset));
          parser.push(bytes.subarray(offset));
        }, `split at ${offset}`).toThrow(QmpProtocolError);
        expect(parser.state).toBe(ScanState.FAILED);
        expect(() => parser.push(Buffer.from(returnEmpty))).toThrow(/already failed/);
      }
    });
  }

  it("fails a message over messageBytesMax without buffering it whole", () => {
    const parser = new QmpParser();
    parser.push(Buffer.from('{"return": "'));
    const filler = Buffer.alloc(64 * 1024, "a");
    expect(() => {
      for (let sent = 0; sent <= messageBytesMax; sent += filler.length) parser.push(filler);
    }).toThrow(/over 4194304 bytes/);
    expect(parser.state).toBe(ScanState.FAILED);
  });
});
