/**
 * Request bodies, read by the handlers themselves (fastify parses none in this plugin):
 * uploads stream straight into the engine; small JSON/text bodies (hashmaps, manifests,
 * bulk deletes) are read whole up to a named limit.
 *
 * Swift's rule (swift.md 5): a PUT needs Content-Length or `Transfer-Encoding: chunked`,
 * else 411; a declared length over the limit is 413 before a byte is read.
 */
import type { PithosContext } from "./context.ts";
import { PithosError } from "./wire/errors.ts";

export interface RequestBody {
  stream: AsyncIterable<Uint8Array>;
  /** The declared Content-Length; undefined for chunked bodies. */
  lengthBytes: number | undefined;
}

export function requestBody(context: PithosContext, maxBytes: number): RequestBody {
  const { headers } = context.request;
  const chunked = /\bchunked\b/i.test(String(headers["transfer-encoding"] ?? ""));
  const declared = headers["content-length"];
  if (!chunked && declared === undefined) throw new PithosError("ELENGTH_REQUIRED");
  let lengthBytes: number | undefined;
  if (!chunked && declared !== undefined) {
    lengthBytes = Number(declared);
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) throw new PithosError("EBAD_REQUEST", "Invalid Content-Length header.");
    if (lengthBytes > maxBytes) throw new PithosError("ETOO_LARGE");
  }
  return { stream: context.request.raw, lengthBytes };
}

/** A whole small body; 413 past `maxBytes` (the rest is not read). */
export async function readBodyBytes(context: PithosContext, maxBytes: number): Promise<Buffer> {
  const { lengthBytes, stream } = requestBody(context, maxBytes);
  if (lengthBytes === 0) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += chunk.length;
    if (total > maxBytes) throw new PithosError("ETOO_LARGE");
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
