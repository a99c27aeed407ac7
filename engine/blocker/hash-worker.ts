/**
 * A hashing thread of hash-pool.ts: computes the Pithos+ block hash (content.ts blockHash)
 * of blocks posted to it, one at a time, and hands each block's memory back.
 *
 *   main ──{ id, algorithm, buffer ⇢ }──► worker      ⇢ : buffer transferred, not copied
 *   main ◄─{ id, hash, strippedBytes, buffer ⇢ }── worker
 *
 * The stripped length travels back with the hash so the caller can store the stripped
 * block without scanning it again.
 */
import assert from "node:assert/strict";
import { parentPort } from "node:worker_threads";
import { hashBytes, strippedLength, type HashAlgorithm } from "./content.ts";

export interface HashRequest {
  id: number;
  algorithm: HashAlgorithm;
  buffer: ArrayBuffer;
  byteOffset: number;
  byteLength: number;
}

export type HashReply =
  | { id: number; ok: true; hash: Uint8Array; strippedBytes: number; buffer: ArrayBuffer }
  | { id: number; ok: false; message: string; buffer: ArrayBuffer };

const port = parentPort;
// Imported anywhere but a worker (by mistake), the module does nothing.
if (port !== null) {
  port.on("message", (request: HashRequest) => {
    let reply: HashReply;
    try {
      const block = new Uint8Array(request.buffer, request.byteOffset, request.byteLength);
      const strippedBytes = strippedLength(block);
      const hash = hashBytes(request.algorithm, block.subarray(0, strippedBytes));
      assert.equal(hash.length, 32);
      reply = { id: request.id, ok: true, hash: new Uint8Array(hash), strippedBytes, buffer: request.buffer };
    } catch (error) {
      reply = { id: request.id, ok: false, message: error instanceof Error ? error.message : String(error), buffer: request.buffer };
    }
    port.postMessage(reply, [request.buffer]);
  });
}
