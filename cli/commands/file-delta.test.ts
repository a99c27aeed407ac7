/**
 * The delta-sync measurement of issue 6: a 1 GiB file, 4 MiB blocks, bytes counted on the
 * wire by a TCP proxy between `okeanos file` (a real process) and the server.
 *
 *   upload 1 GiB ──► change one 4 MiB block ──► upload: ≤ 1 block + the hashmap (twice: the
 *   409 round and the commit) + HTTP overhead ──► upload unchanged: ≤ the hashmap + overhead
 *   ──► download to a new path: the same bytes (sha256)
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateToLatest, openDatabase, type MetadataDatabase } from "../../db/index.ts";
import { blockHash } from "../../engine/blocker/content.ts";
import { servePithos, type ServedPithos } from "../../gateways/pithos/testing/server.ts";
import { hashmapRequestBody } from "../pithos-client/client.ts";
import type { DownloadResult } from "../pithos-client/download.ts";
import { randomBlockData } from "../pithos-client/testing/block-data.ts";
import { startCountingProxy, type CountingProxy } from "../pithos-client/testing/counting-proxy.ts";
import type { UploadResult } from "../pithos-client/upload.ts";
import { okJson, runCli } from "../testing/run-cli.ts";

const blockSizeBytes = 4 * 1024 * 1024;
const fileBytes = 1024 * 1024 * 1024;
const blocks = fileBytes / blockSizeBytes;
/**
 * Request lines and headers of one run: the login (~400 bytes of JSON and headers), HEAD
 * container, hashmap PUTs and block POSTs, each well under 1 KiB of headers. 16 KiB is
 * generous for the ≤ 6 requests of a run and small beside one block (4 MiB).
 */
const httpOverheadAllowanceBytes = 16 * 1024;

/** Block `index` of the file: a random 4 MiB pattern with the index in its first 8 bytes, so all blocks differ and none is zero. */
function patternBlock(pattern: Buffer, index: number): Buffer {
  const block = Buffer.from(pattern);
  block.writeBigUInt64LE(BigInt(index + 1), 0);
  return block;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

describe("okeanos file delta sync of a 1 GiB file (bytes on the wire)", () => {
  let dir: string;
  let db: MetadataDatabase;
  let served: ServedPithos;
  let proxy: CountingProxy;
  let env: Record<string, string>;
  const pattern = randomBlockData(blockSizeBytes, blockSizeBytes);
  const hashes: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-delta-"));
    db = await openDatabase(`sqlite:${join(dir, "okeanos.db")}`);
    await migrateToLatest(db);
    served = await servePithos(db, { blockSizeBytes, hashAlgorithm: "sha256" });
    await served.addUser("alice", "alice-secret");
    proxy = await startCountingProxy(Number(new URL(served.baseUrl).port));
    env = { OKEANOS_URL: proxy.url, OKEANOS_USER: "alice", OKEANOS_PASSWORD: "alice-secret", OKEANOS_TOKEN: "" };
    const file = await open(join(dir, "big.img"), "w");
    try {
      for (let index = 0; index < blocks; index++) {
        const block = patternBlock(pattern, index);
        await file.write(block, 0, block.length, index * blockSizeBytes);
        hashes.push(blockHash("sha256", block).toString("hex"));
      }
    } finally {
      await file.close();
    }
  }, 120_000);
  afterAll(async () => {
    await proxy?.close();
    await served?.close();
    await db?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("sends one changed block and the hashmap, then only the hashmap; downloads the same bytes", async () => {
    const local = join(dir, "big.img");
    const upload = async (): Promise<{ result: UploadResult; sentBytes: number; connections: number }> => {
      proxy.reset();
      const result = await okJson<UploadResult>(runCli(["--json", "file", "upload", local, "disks/big.img"], { env }));
      return { result, sentBytes: proxy.sentBytes, connections: proxy.connections };
    };
    const hashmapBodyBytes = Buffer.byteLength(hashmapRequestBody({ bytes: fileBytes, hashes }));

    const first = await upload();
    expect(first.result).toMatchObject({ bytes: fileBytes, blocks, blocksSent: blocks, bytesSent: fileBytes, hashmapBytes: 2 * hashmapBodyBytes });
    expect(first.sentBytes).toBeGreaterThan(fileBytes);
    // Keep-alive: the 256 block uploads reuse the connections of the 4 parallel requests.
    expect(first.connections).toBeLessThanOrEqual(8);

    // Change one block (index 100): 4 MiB of new content.
    const changedIndex = 100;
    const changed = patternBlock(pattern, blocks + changedIndex);
    hashes[changedIndex] = blockHash("sha256", changed).toString("hex");
    const file = await open(local, "r+");
    await file.write(changed, 0, changed.length, changedIndex * blockSizeBytes);
    await file.close();

    const second = await upload();
    expect(second.result).toMatchObject({ blocksSent: 1, bytesSent: blockSizeBytes, hashmapRequests: 2, hashmapBytes: 2 * hashmapBodyBytes });
    // The 409 round and the commit each carry the hashmap (synnefo.md B.3): that is the protocol's minimum.
    const deltaBoundBytes = blockSizeBytes + 2 * hashmapBodyBytes + httpOverheadAllowanceBytes;
    expect(second.sentBytes).toBeGreaterThanOrEqual(blockSizeBytes + 2 * hashmapBodyBytes);
    expect(second.sentBytes).toBeLessThanOrEqual(deltaBoundBytes);

    const third = await upload();
    expect(third.result).toMatchObject({ blocksSent: 0, bytesSent: 0, hashmapRequests: 1, hashmapBytes: hashmapBodyBytes });
    expect(third.sentBytes).toBeGreaterThanOrEqual(hashmapBodyBytes);
    expect(third.sentBytes).toBeLessThanOrEqual(hashmapBodyBytes + httpOverheadAllowanceBytes);

    const copy = join(dir, "copy.img");
    proxy.reset();
    const downloaded = await okJson<DownloadResult>(runCli(["--json", "file", "download", "disks/big.img", copy], { env }));
    expect(downloaded).toMatchObject({ bytes: fileBytes, blocksFetched: blocks, workingFile: "new" });
    expect(proxy.receivedBytes).toBeGreaterThan(fileBytes);
    expect(await sha256File(copy)).toBe(await sha256File(local));

    console.log(
      `delta sync, 1 GiB in ${blocks} blocks of 4 MiB, hashmap body ${hashmapBodyBytes} bytes: ` +
        `first upload sent ${first.sentBytes} bytes over ${first.connections} connections in ${first.result.seconds.toFixed(1)} s; ` +
        `one block changed: sent ${second.sentBytes} bytes (bound ${deltaBoundBytes}) in ${second.result.seconds.toFixed(1)} s; ` +
        `unchanged: sent ${third.sentBytes} bytes in ${third.result.seconds.toFixed(1)} s; download ${downloaded.seconds.toFixed(1)} s`,
    );
  }, 600_000);
});
