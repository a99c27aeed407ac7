/**
 * Client-side frames for tests (node-postgres' test-buffers.ts habit): what an NBD client
 * sends, built independently of the server's own encoders, plus small readers for what the
 * server answers.
 */
import { IHAVEOPT, REQUEST_MAGIC } from "../protocol.ts";

export function clientFlagsFrame(flags: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(flags, 0);
  return out;
}

export function optionFrame(option: number, data: Buffer = Buffer.alloc(0), lengthOverride?: number): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(IHAVEOPT, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(lengthOverride ?? data.length, 12);
  return Buffer.concat([header, data]);
}

/** u32 name length, name, u16 count, u16 info types (INFO / GO payload). */
export function infoRequestData(name: string, infoTypes: readonly number[] = []): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  const out = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infoTypes.length);
  out.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(out, 4);
  out.writeUInt16BE(infoTypes.length, 4 + nameBytes.length);
  infoTypes.forEach((type, index) => out.writeUInt16BE(type, 6 + nameBytes.length + 2 * index));
  return out;
}

/** u32 name length, name, u32 count, (u32 length, query)* (LIST/SET_META_CONTEXT payload). */
export function metaContextData(name: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (value: number) => {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(value, 0);
    return out;
  };
  const nameBytes = Buffer.from(name, "utf8");
  parts.push(u32(nameBytes.length), nameBytes, u32(queries.length));
  for (const query of queries) {
    const queryBytes = Buffer.from(query, "utf8");
    parts.push(u32(queryBytes.length), queryBytes);
  }
  return Buffer.concat(parts);
}

export interface RequestFields {
  flags?: number;
  type: number;
  cookie?: bigint;
  offsetBytes?: number;
  lengthBytes?: number;
  magic?: number;
}

export function requestFrame(fields: RequestFields, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(28);
  out.writeUInt32BE(fields.magic ?? REQUEST_MAGIC, 0);
  out.writeUInt16BE(fields.flags ?? 0, 4);
  out.writeUInt16BE(fields.type, 6);
  out.writeBigUInt64BE(fields.cookie ?? 1n, 8);
  out.writeBigUInt64BE(BigInt(fields.offsetBytes ?? 0), 16);
  out.writeUInt32BE(fields.lengthBytes ?? payload.length, 24);
  return Buffer.concat([out, payload]);
}
