/**
 * Hashing throughput on 4 MiB blocks: native BLAKE3 (@napi-rs/blake-hash) against SHA-256
 * (node:crypto, OpenSSL), and the engine's blockHash, which first strips trailing NUL
 * bytes (Pithos+ rule) — so its cost depends on where the block's data ends.
 *
 * MB/s is always 4 MiB (the block handed in) per mean call time, 10^6 bytes per second,
 * on the main thread, one call at a time.
 */
import { createHash, randomFillSync } from "node:crypto";
import { blake3 } from "@napi-rs/blake-hash";
import { Bench } from "tinybench";
import { blockHash, hashBytes } from "../engine/blocker/content.ts";
import { MiB, megabytesPerSecond, printTable, printTitle, round, type BenchContext, type BenchGroup } from "./common.ts";

const blockSizeBytes = 4 * MiB;

/** Keeps the digests observable so no call is optimised away. */
let sink = 0;

interface HashTask {
  name: string;
  block: string;
  /** Bytes actually hashed after stripping (for the table). */
  hashedBytes: number;
  run: () => void;
}

function buildTasks(): HashTask[] {
  const full = randomFillSync(Buffer.allocUnsafe(blockSizeBytes));
  // Data in the first half, zeros after: a typical partly written filesystem block.
  const halfZero = Buffer.alloc(blockSizeBytes);
  randomFillSync(halfZero, 0, blockSizeBytes / 2);
  halfZero[blockSizeBytes / 2 - 1] = 0xff;
  const zero = Buffer.alloc(blockSizeBytes);
  const keep = (digest: Buffer): void => {
    sink ^= digest[0] as number;
  };
  return [
    { name: "blake3 (native, @napi-rs/blake-hash)", block: "random", hashedBytes: blockSizeBytes, run: () => keep(blake3(full)) },
    { name: "sha256 (node:crypto)", block: "random", hashedBytes: blockSizeBytes, run: () => keep(createHash("sha256").update(full).digest()) },
    { name: "hashBytes blake3 (engine)", block: "random", hashedBytes: blockSizeBytes, run: () => keep(hashBytes("blake3", full)) },
    { name: "blockHash blake3 (engine)", block: "random", hashedBytes: blockSizeBytes, run: () => keep(blockHash("blake3", full)) },
    { name: "blockHash blake3 (engine)", block: "2 MiB data + 2 MiB NULs", hashedBytes: blockSizeBytes / 2, run: () => keep(blockHash("blake3", halfZero)) },
    { name: "blockHash blake3 (engine)", block: "all zero", hashedBytes: 0, run: () => keep(blockHash("blake3", zero)) },
    { name: "blockHash sha256 (engine)", block: "random", hashedBytes: blockSizeBytes, run: () => keep(blockHash("sha256", full)) },
  ];
}

async function run(context: BenchContext): Promise<void> {
  printTitle("hash: 4 MiB blocks, one call at a time on the main thread");
  const bench = context.quick ? new Bench({ time: 50, warmupTime: 10, iterations: 4, warmupIterations: 2 }) : new Bench({ time: 1500, warmupTime: 300 });
  const tasks = buildTasks();
  for (const [index, task] of tasks.entries()) bench.add(`${index} ${task.name} ${task.block}`, task.run);
  await bench.run();

  const measured = tasks.map((task, index) => {
    const result = (bench.tasks[index] as (typeof bench.tasks)[number]).result;
    if (result.state !== "completed") throw new Error(`hash task ${task.name} ${result.state}`);
    return { task, meanMs: result.latency.mean, rmePercent: result.latency.rme, samples: result.latency.samplesCount };
  });
  const sha256Ms = (measured[1] as (typeof measured)[number]).meanMs;
  printTable(
    measured.map(({ task, meanMs, rmePercent, samples }) => ({
      hash: task.name,
      block: task.block,
      "bytes hashed": task.hashedBytes,
      "ms/block": round(meanMs),
      "MB/s (4 MiB per call)": round(megabytesPerSecond(blockSizeBytes, meanMs)),
      "× sha256 speed": round(sha256Ms / meanMs, 2),
      "±% (rme)": round(rmePercent, 2),
      iterations: samples,
    })),
  );
  const blake3Ms = (measured[0] as (typeof measured)[number]).meanMs;
  console.log(`BLAKE3/SHA-256 throughput ratio: ${round(sha256Ms / blake3Ms, 3)}×`);
  if (sink === -1) console.log("");
}

export const hashGroup: BenchGroup = {
  name: "hash",
  description: "BLAKE3 (native) vs SHA-256 (node:crypto) on 4 MiB blocks, and the engine's blockHash",
  run,
};
