/**
 * The two sides of the volume-io benchmark behind one small interface: an okeanos Volume,
 * and positional I/O on one raw file (what qemu-nbd serving a raw image does underneath).
 */
import { open, type FileHandle } from "node:fs/promises";
import type { Volume } from "../engine/volume.ts";

export interface IoTarget {
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array>;
  write(offsetBytes: number, data: Uint8Array): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export function volumeTarget(volume: Volume): IoTarget {
  return {
    read: (offsetBytes, lengthBytes) => volume.read(offsetBytes, lengthBytes),
    write: (offsetBytes, data) => volume.write(offsetBytes, data),
    flush: () => volume.flush(),
    close: () => volume.close(),
  };
}

/** A raw image file, created sparse like `qemu-img create -f raw`. */
export async function createRawFile(path: string, sizeBytes: number): Promise<FileHandle> {
  const handle = await open(path, "w+");
  await handle.truncate(sizeBytes);
  return handle;
}

/**
 * Positional I/O on a raw file. Reads return a new buffer each, like Volume.read; with
 * `reuseReadBuffer` they return one buffer over and over (valid at queue depth 1 only):
 * the floor a pooled-buffer server could reach.
 */
export function rawFileTarget(handle: FileHandle, options: { reuseReadBuffer?: boolean } = {}): IoTarget {
  let reused = Buffer.alloc(0);
  return {
    async read(offsetBytes, lengthBytes) {
      if (options.reuseReadBuffer === true && reused.length !== lengthBytes) reused = Buffer.allocUnsafe(lengthBytes);
      const out = options.reuseReadBuffer === true ? reused : Buffer.allocUnsafe(lengthBytes);
      let doneBytes = 0;
      while (doneBytes < lengthBytes) {
        const { bytesRead } = await handle.read(out, doneBytes, lengthBytes - doneBytes, offsetBytes + doneBytes);
        if (bytesRead === 0) break;
        doneBytes += bytesRead;
      }
      return out;
    },
    async write(offsetBytes, data) {
      let doneBytes = 0;
      while (doneBytes < data.length) {
        const { bytesWritten } = await handle.write(data, doneBytes, data.length - doneBytes, offsetBytes + doneBytes);
        doneBytes += bytesWritten;
      }
    },
    flush: () => handle.datasync(),
    close: () => handle.close(),
  };
}
