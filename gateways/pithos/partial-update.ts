/**
 * Pithos+ partial updates (synnefo.md B.3): `POST …/{object}` with
 *
 *   Content-Range: bytes START-END/TOTAL|*   the body (or X-Source-Object's data) at START;
 *                                            TOTAL, when given, must be the current size
 *   Content-Range: bytes STAR/STAR            append (STAR = `*`: no start, no total)
 *   X-Object-Bytes: N                        the result truncated (or zero-extended) to N
 *
 * Only the blocks the write touches are read, patched and stored; every other block keeps
 * its hash, so a 4 KiB patch of a 1 GiB file costs one block and the map. Blocks that grow
 * past the old end keep their hash too: by the Pithos+ rule a block's trailing zeros do not
 * change it.
 */
import { getCurrent } from "../../db/index.ts";
import type { FileReader } from "../../engine/files.ts";
import { loadContainer, requireObjectAccess, type PithosContext } from "./context.ts";
import { segmentStream, viewOf } from "./object-read.ts";
import { requestBody } from "./request-body.ts";
import { chargeAfterResize, newFileMapName, type StoredVersion } from "./service.ts";
import { PithosError } from "./wire/errors.ts";
import { maxFileSizeBytes } from "./wire/info.ts";
import { parseObjectPathHeader } from "./wire/names.ts";

export interface PatchRange {
  /** Where the data goes; undefined: append at the current end. */
  start: number | undefined;
  /** Bytes of data; undefined: as many as the data has. */
  lengthBytes: number | undefined;
  /** The size the client believes the object has (the TOTAL of Content-Range). */
  expectedSizeBytes: number | undefined;
}

const contentRangePattern = /^bytes\s+(?:(\d+)-(\d*)|\*)\/(\d+|\*)$/;

export function parseContentRange(value: string): PatchRange {
  const match = contentRangePattern.exec(value.trim());
  if (match === null) throw new PithosError("EBAD_REQUEST", `Invalid Content-Range ${JSON.stringify(value)}.`);
  const [, first, last, total] = match;
  const start = first === undefined ? undefined : Number(first);
  const end = last === undefined || last === "" ? undefined : Number(last);
  if (start !== undefined && end !== undefined && end < start) throw new PithosError("ERANGE_NOT_SATISFIABLE");
  return {
    start,
    lengthBytes: start !== undefined && end !== undefined ? end - start + 1 : undefined,
    expectedSizeBytes: total === undefined || total === "*" ? undefined : Number(total),
  };
}

/** Exactly `n` bytes at a time from a stream of chunks (zeros once it runs dry, counted). */
class ChunkReader {
  readonly #iterator: AsyncIterator<Uint8Array>;
  #pending: Buffer = Buffer.alloc(0);
  #done = false;
  consumed = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  /** Up to `n` bytes; fewer only at the end of the data. */
  async read(n: number): Promise<Buffer> {
    while (this.#pending.length < n && !this.#done) {
      const next = await this.#iterator.next();
      if (next.done === true) this.#done = true;
      else this.#pending = this.#pending.length === 0 ? Buffer.from(next.value) : Buffer.concat([this.#pending, next.value]);
    }
    const out = this.#pending.subarray(0, n);
    this.#pending = this.#pending.subarray(out.length);
    this.consumed += out.length;
    return out;
  }
}

export function isPartialUpdate(context: PithosContext): boolean {
  const headers = context.request.headers;
  return headers["content-range"] !== undefined || headers["x-source-object"] !== undefined || headers["x-object-bytes"] !== undefined;
}

export async function partialUpdate(context: PithosContext): Promise<StoredVersion> {
  const container = await loadContainer(context);
  const path = context.objectPath as string;
  await requireObjectAccess(context, container, path, "write");
  const current = await getCurrent(context.service.db, container.id, path);
  if (current === undefined) throw new PithosError("ENOT_FOUND");
  if (current.version.manifest !== null || current.version.sloManifest !== null) {
    throw new PithosError("EBAD_REQUEST", "Large object manifests cannot be updated in place.");
  }
  const headers = context.request.headers;
  const oldSize = current.version.sizeBytes;
  const rangeHeader = typeof headers["content-range"] === "string" ? headers["content-range"] : undefined;
  const range = rangeHeader === undefined ? undefined : parseContentRange(rangeHeader);
  if (range?.expectedSizeBytes !== undefined && range.expectedSizeBytes !== oldSize) throw new PithosError("ERANGE_NOT_SATISFIABLE");

  // The data: another object's, or the request body (octet-stream), or none (truncate only).
  const sourceHeader = typeof headers["x-source-object"] === "string" ? headers["x-source-object"] : undefined;
  let data: { stream: AsyncIterable<Uint8Array>; lengthBytes: number | undefined } | undefined;
  if (sourceHeader !== undefined) {
    const source = parseObjectPathHeader("X-Source-Object", sourceHeader);
    const sourceContainer = await loadContainer(context, source.container);
    await requireObjectAccess(context, sourceContainer, source.object, "read");
    const found = await getCurrent(context.service.db, sourceContainer.id, source.object);
    if (found === undefined) throw new PithosError("ENOT_FOUND");
    const view = await viewOf(context, sourceContainer, found.object, found.version);
    const length = Math.min(view.sizeBytes, range?.lengthBytes ?? view.sizeBytes);
    data = { stream: segmentStream(context, view.segments, 0, length), lengthBytes: length };
  } else if (range !== undefined) {
    const contentType = String(headers["content-type"] ?? "");
    if (!contentType.startsWith("application/octet-stream")) {
      throw new PithosError("EBAD_REQUEST", "Partial updates need Content-Type: application/octet-stream.");
    }
    const body = requestBody(context, maxFileSizeBytes);
    if (range.lengthBytes !== undefined && body.lengthBytes !== undefined && body.lengthBytes !== range.lengthBytes) {
      throw new PithosError("EBAD_REQUEST", "Content-Length does not match Content-Range.");
    }
    data = { stream: body.stream, lengthBytes: range.lengthBytes ?? body.lengthBytes };
  }
  if (data !== undefined && data.lengthBytes === undefined) {
    throw new PithosError("ELENGTH_REQUIRED");
  }
  const start = data === undefined ? oldSize : (range?.start ?? oldSize);
  const dataLength = data?.lengthBytes ?? 0;
  let newSize = Math.max(oldSize, start + dataLength);
  const truncateHeader = headers["x-object-bytes"];
  if (typeof truncateHeader === "string") {
    const bytes = Number(truncateHeader);
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new PithosError("EBAD_REQUEST", "Invalid X-Object-Bytes.");
    newSize = bytes;
  }
  if (newSize > maxFileSizeBytes) throw new PithosError("ETOO_LARGE");

  const engine = context.service.engine;
  const blockSize = engine.blockSizeBytes;
  const old = await engine.fileHashmap(current.version.mapName);
  const reader = await engine.openFile(current.version.mapName);
  const zeroHash = Buffer.from(context.service.zeroBlockHashHex, "hex");
  const chunks = data === undefined ? undefined : new ChunkReader(data.stream);
  const writeEnd = start + dataLength;
  const hashes: Buffer[] = [];
  for (let index = 0; index * blockSize < newSize; index++) {
    const blockStart = index * blockSize;
    const blockEnd = Math.min(newSize, blockStart + blockSize);
    const touched = chunks !== undefined && blockStart < writeEnd && blockEnd > start;
    const oldBlockEnd = Math.min(oldSize, blockStart + blockSize);
    // Untouched, and either whole as before or only grown (zeros): the old hash still holds.
    if (!touched && (blockEnd >= oldBlockEnd || blockStart >= oldSize)) {
      hashes.push(index < old.hashes.length && blockStart < oldSize ? (old.hashes[index] as Buffer) : zeroHash);
      continue;
    }
    const block = Buffer.alloc(blockEnd - blockStart);
    const keep = Math.min(oldSize, blockEnd) - blockStart;
    if (keep > 0) (await readOld(reader, blockStart, keep)).copy(block, 0);
    if (touched) {
      const from = Math.max(start, blockStart);
      const to = Math.min(writeEnd, blockEnd);
      const piece = await (chunks as ChunkReader).read(to - from);
      if (piece.length !== to - from) throw new PithosError("EBAD_REQUEST", "The request body ended before Content-Range did.");
      piece.copy(block, from - blockStart);
    }
    hashes.push((await engine.storeBlock(block)).hash);
  }
  if (chunks !== undefined && writeEnd > newSize) {
    // Data written past a smaller X-Object-Bytes: read (and drop) it so the request completes.
    while ((await chunks.read(64 * 1024)).length > 0);
  }
  await engine.objects.barrier();
  const mapName = newFileMapName();
  const created = await engine.createFile(mapName, newSize, hashes);
  if (!created.created) throw new PithosError("EINTERNAL", "blocks vanished during a partial update");
  try {
    return await context.service.commit(
      container,
      path,
      {
        ...current.version,
        mapName,
        sizeBytes: newSize,
        contentHash: created.header.contentHash ?? "",
        // The MD5 of the whole would need every byte read again: Pithos+ answers the Merkle hash.
        etag: created.header.contentHash ?? "",
      },
      { modifiedBy: context.caller.userUuid, expectCurrentSerial: current.version.serial, chargeBytes: chargeAfterResize(current.version, newSize) },
    );
  } catch (error) {
    await context.service.dropMaps([mapName]);
    throw error;
  }
}

async function readOld(reader: FileReader, offset: number, length: number): Promise<Buffer> {
  return reader.read(offset, length);
}

