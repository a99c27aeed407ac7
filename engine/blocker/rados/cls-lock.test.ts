import { describe, expect, it } from "vitest";
import { decodeGetInfoReply, encodeBreakLock, encodeGetInfo, encodeLock, encodeUnlock, lockFlagMustRenew } from "./cls-lock.ts";

const hex = (bytes: Buffer) => bytes.toString("hex");
/** A Ceph string: u32 length (LE) + bytes. */
const str = (text: string) => Buffer.concat([u32(Buffer.byteLength(text)), Buffer.from(text)]);
function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value);
  return bytes;
}
function s64(value: bigint): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigInt64LE(value);
  return bytes;
}
/** ENCODE_START(1, 1) … ENCODE_FINISH. */
const struct = (...fields: Buffer[]) => {
  const body = Buffer.concat(fields);
  return Buffer.concat([Buffer.from([1, 1]), u32(body.length), body]);
};

describe("cls_lock wire format", () => {
  it("encodes lock: name, type, cookie, tag, description, duration, flags", () => {
    const encoded = encodeLock({ name: "okeanos", cookie: "c1", description: "d", durationMs: 30_500, flags: lockFlagMustRenew });
    const expected = struct(str("okeanos"), Buffer.from([1]), str("c1"), str(""), str("d"), u32(30), u32(500_000_000), Buffer.from([2]));
    expect(hex(encoded)).toBe(hex(expected));
  });

  it("encodes unlock, get_info and break_lock", () => {
    expect(hex(encodeUnlock("okeanos", "c1"))).toBe(hex(struct(str("okeanos"), str("c1"))));
    expect(hex(encodeGetInfo("okeanos"))).toBe(hex(struct(str("okeanos"))));
    const locker = { entity: "client.42", entityType: 8, entityNum: 42n, cookie: "c1", expirationMs: 0, description: "" };
    expect(hex(encodeBreakLock("okeanos", locker))).toBe(hex(struct(str("okeanos"), Buffer.from([8]), s64(42n), str("c1"))));
  });

  it("decodes a get_info reply with both address encodings", () => {
    // entity_addr_t, current: marker 1 + struct { u32 type, u32 nonce, u32 len, sockaddr }.
    const modernAddress = Buffer.concat([Buffer.from([1]), struct(u32(2), u32(7), u32(16), Buffer.alloc(16, 0xaa))]);
    const legacyAddress = Buffer.alloc(136);
    const locker = (num: bigint, cookie: string, seconds: number, address: Buffer, description: string) =>
      Buffer.concat([struct(Buffer.from([8]), s64(num), str(cookie)), struct(u32(seconds), u32(250_000_000), address, str(description))]);
    const reply = struct(
      u32(2),
      locker(4134n, "cookie-a", 1_700_000_000, modernAddress, '{"owner":"a"}'),
      locker(99n, "cookie-b", 0, legacyAddress, "b"),
      Buffer.from([1]),
      str(""),
    );
    expect(decodeGetInfoReply(reply)).toEqual([
      { entity: "client.4134", entityType: 8, entityNum: 4134n, cookie: "cookie-a", expirationMs: 1_700_000_000_250, description: '{"owner":"a"}' },
      { entity: "client.99", entityType: 8, entityNum: 99n, cookie: "cookie-b", expirationMs: 250, description: "b" },
    ]);
  });

  it("refuses a truncated reply", () => {
    const reply = struct(u32(1), struct(Buffer.from([8]), s64(1n), str("c")));
    expect(() => decodeGetInfoReply(reply.subarray(0, reply.length - 3))).toThrow(RangeError);
  });
});
