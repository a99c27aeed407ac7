/**
 * A hashing thread of hash-pool.ts: computes the Pithos+ block hash (content.ts blockHash)
 * of blocks posted to it, one at a time, and hands each block's memory back. A block that
 * belongs to an MD5 session also feeds that session's running MD5 (the whole stream's
 * Swift ETag); the pool sends every block of a session to the same thread, in order, then
 * an "md5-end" that answers the digest and forgets the session.
 *
 *   main ──{ block, id, algorithm, md5Session?, buffer ⇢ }──► worker   ⇢ : transferred, not copied
 *   main ◄─{ id, hash, strippedBytes, buffer ⇢ }───────────── worker
 *   main ──{ md5-end, id, md5Session }──► worker ──{ id, md5Hex }──► main
 *
 * The stripped length travels back with the hash so the caller can store the stripped
 * block without scanning it again.
 */
import assert from "node:assert/strict";
import { createHash, type Hash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { hashBytes, strippedLength, type HashAlgorithm } from "./content.ts";

export interface BlockRequest {
  kind: "block";
  id: number;
  algorithm: HashAlgorithm;
  /** The MD5 session this block continues (its bytes, unstripped, in order), if any. */
  md5Session: number | undefined;
  buffer: ArrayBuffer;
  byteOffset: number;
  byteLength: number;
}

export interface Md5EndRequest {
  kind: "md5-end";
  id: number;
  md5Session: number;
}

export type HashRequest = BlockRequest | Md5EndRequest;

export type HashReply =
  | { id: number; ok: true; hash: Uint8Array; strippedBytes: number; buffer: ArrayBuffer }
  | { id: number; ok: true; md5Hex: string }
  | { id: number; ok: false; message: string; buffer: ArrayBuffer | undefined };

const port = parentPort;
/** Running MD5 states by session: one per upload this thread serves (hash-pool.ts bounds them). */
const md5Sessions = new Map<number, Hash>();

function answer(request: HashRequest): HashReply {
  if (request.kind === "md5-end") {
    const md5 = md5Sessions.get(request.md5Session) ?? createHash("md5");
    md5Sessions.delete(request.md5Session);
    return { id: request.id, ok: true, md5Hex: md5.digest("hex") };
  }
  const block = new Uint8Array(request.buffer, request.byteOffset, request.byteLength);
  if (request.md5Session !== undefined) {
    let md5 = md5Sessions.get(request.md5Session);
    if (md5 === undefined) md5Sessions.set(request.md5Session, (md5 = createHash("md5")));
    md5.update(block);
  }
  const strippedBytes = strippedLength(block);
  const hash = hashBytes(request.algorithm, block.subarray(0, strippedBytes));
  assert.equal(hash.length, 32);
  return { id: request.id, ok: true, hash: new Uint8Array(hash), strippedBytes, buffer: request.buffer };
}

// Imported anywhere but a worker (by mistake), the module does nothing.
if (port !== null) {
  port.on("message", (request: HashRequest) => {
    let reply: HashReply;
    try {
      reply = answer(request);
    } catch (error) {
      reply = { id: request.id, ok: false, message: error instanceof Error ? error.message : String(error), buffer: request.kind === "block" ? request.buffer : undefined };
    }
    port.postMessage(reply, "buffer" in reply && reply.buffer !== undefined ? [reply.buffer] : []);
  });
}
