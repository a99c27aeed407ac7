/**
 * qcow2 uploads become raw on import (Glance's image_conversion plugin does the same): raw is
 * what an image file holds, so a volume cloned from it is a map copy and NBD serves it as is.
 *
 *   request body ──(≤ imageSizeBytesMax)──► tmp/upload.qcow2
 *   qemu-img info -f qcow2   refuse backing files and external data files (they would read
 *                            host files named by the uploader), and oversized virtual disks
 *   qemu-img convert -f qcow2 -O raw ──► tmp/image.raw (sparse) ──► stored as the file
 *
 * The format is always given (`-f qcow2`), never probed, and no shell is involved.
 */
import { execFile } from "node:child_process";
import { createWriteStream } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { PlanktonError } from "./errors.ts";

/**
 * Glance's `image_size_cap` default, 1 TiB: the largest image Plankton stores (uploaded bytes
 * and, for qcow2, the virtual size it expands to).
 */
export const imageSizeBytesMax = 1024 ** 4;
/**
 * How long one qemu-img run may take: converting 1 TiB at a slow disk's ~300 MB/s is about an
 * hour; `info` takes milliseconds. A run past this is killed and the upload fails.
 */
export const qemuImgTimeoutMs = 2 * 60 * 60 * 1000;
/** qemu-img's JSON for one image is a few hundred bytes; a snapshot table might add kilobytes. */
const qemuImgOutputBytesMax = 1024 * 1024;

/** Writes the stream to `path`, refusing (413) more than `maxBytes`. Returns the byte count. */
export async function receiveToFile(source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, path: string, maxBytes: number): Promise<number> {
  let received = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      received += chunk.length;
      if (received > maxBytes) done(new PlanktonError("ETOO_LARGE", `Image exceeds the size limit of ${maxBytes} bytes.`));
      else done(null, chunk);
    },
  });
  await pipeline(source, limit, createWriteStream(path));
  return received;
}

interface QemuImgInfo {
  format?: string;
  "virtual-size"?: number;
  "backing-filename"?: string;
  "full-backing-filename"?: string;
  "format-specific"?: { type?: string; data?: { "data-file"?: string } };
}

function qemuImg(binary: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(binary, [...args], { timeout: qemuImgTimeoutMs, maxBuffer: qemuImgOutputBytesMax }, (error, stdout, stderr) => {
      if (error === null) resolve({ code: 0, stdout, stderr });
      else if (typeof error.code === "number") resolve({ code: error.code, stdout, stderr });
      else reject(new Error(`${binary} ${args.join(" ")}: ${error.message}`, { cause: error }));
    });
  });
}

/** Checks that `path` is a self-contained qcow2 image; its virtual size in bytes. */
export async function checkQcow2(binary: string, path: string): Promise<number> {
  const result = await qemuImg(binary, ["info", "-f", "qcow2", "--output=json", path]);
  if (result.code !== 0) throw new PlanktonError("EBAD_REQUEST", "Image data is not a valid qcow2 image.");
  const info = JSON.parse(result.stdout) as QemuImgInfo;
  if (info["backing-filename"] !== undefined || info["full-backing-filename"] !== undefined) {
    throw new PlanktonError("EBAD_REQUEST", "A qcow2 image with a backing file is not accepted.");
  }
  if (info["format-specific"]?.data?.["data-file"] !== undefined) {
    throw new PlanktonError("EBAD_REQUEST", "A qcow2 image with an external data file is not accepted.");
  }
  const virtualSizeBytes = info["virtual-size"];
  if (typeof virtualSizeBytes !== "number") throw new PlanktonError("EBAD_REQUEST", "Image data is not a valid qcow2 image.");
  if (virtualSizeBytes > imageSizeBytesMax) throw new PlanktonError("ETOO_LARGE", `The image's virtual size exceeds ${imageSizeBytesMax} bytes.`);
  return virtualSizeBytes;
}

export async function qcow2ToRaw(binary: string, input: string, output: string): Promise<void> {
  const result = await qemuImg(binary, ["convert", "-q", "-f", "qcow2", "-O", "raw", input, output]);
  if (result.code !== 0) throw new PlanktonError("EBAD_REQUEST", `The qcow2 image could not be converted: ${result.stderr.trim().split("\n")[0] ?? ""}`);
}
