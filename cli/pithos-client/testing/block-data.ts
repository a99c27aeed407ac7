/**
 * Random test data for counting what a Pithos+ client sends. A block goes on the wire without
 * its trailing NULs (the hashmap convention), so random data whose block happens to end in 0 —
 * one block in 256 — sends a byte less than `bytes` and fails an exact count now and then.
 */
import { randomBytes } from "node:crypto";

/** `bytes` random bytes in which no block of `blockSizeBytes`, and not the end, is a NUL. */
export function randomBlockData(bytes: number, blockSizeBytes: number): Buffer {
  const data = randomBytes(bytes);
  for (let end = blockSizeBytes; end <= data.length; end += blockSizeBytes) data[end - 1] ||= 1;
  if (data.length > 0) data[data.length - 1] ||= 1;
  return data;
}
