/**
 * The deterministic operation stream of the crash test: the child process performs it,
 * the parent replays it to know what the volume must hold. Same seed, same stream.
 */
export type CrashOp =
  | { kind: "write"; offsetBytes: number; data: Buffer }
  | { kind: "zero"; offsetBytes: number; lengthBytes: number }
  | { kind: "flush" }
  | { kind: "snapshot"; name: string };

export const crashBlockSizeBytes = 4096;
export const crashVolumeBytes = 64 * crashBlockSizeBytes + 1000;

function* numbers(seed: number): Generator<number, never> {
  let x = (seed * 2654435761 + 0x9e3779b9) >>> 0 || 1;
  while (true) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    yield x;
  }
}

export function* crashOps(seed: number): Generator<CrashOp, never> {
  const random = numbers(seed);
  const next = (limit: number) => (random.next().value as number) % limit;
  for (let step = 1; ; step++) {
    const roll = next(100);
    if (roll < 60) {
      const lengthBytes = 1 + next(3 * crashBlockSizeBytes);
      const offsetBytes = next(crashVolumeBytes - lengthBytes + 1);
      const data = Buffer.alloc(lengthBytes);
      for (let i = 0; i < lengthBytes; i++) data[i] = (random.next().value as number) & 0xff;
      yield { kind: "write", offsetBytes, data };
    } else if (roll < 75) {
      const lengthBytes = 1 + next(4 * crashBlockSizeBytes);
      yield { kind: "zero", offsetBytes: next(crashVolumeBytes - lengthBytes + 1), lengthBytes };
    } else if (roll < 95) {
      yield { kind: "flush" };
    } else {
      yield { kind: "snapshot", name: `snap-${seed}-${step}` };
    }
  }
}

/** Applies ops 1..count of the stream to `bytes`; returns snapshot contents by name. */
export function replay(seed: number, count: number, bytes: Buffer): Map<string, Buffer> {
  const snapshots = new Map<string, Buffer>();
  const ops = crashOps(seed);
  for (let i = 1; i <= count; i++) {
    const op = ops.next().value as CrashOp;
    if (op.kind === "write") op.data.copy(bytes, op.offsetBytes);
    else if (op.kind === "zero") bytes.fill(0, op.offsetBytes, op.offsetBytes + op.lengthBytes);
    else if (op.kind === "snapshot") snapshots.set(op.name, Buffer.from(bytes));
  }
  return snapshots;
}

/** Byte ranges ops first..last may have touched (writes and zeroes). */
export function touchedRanges(seed: number, first: number, last: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  const ops = crashOps(seed);
  for (let i = 1; i <= last; i++) {
    const op = ops.next().value as CrashOp;
    if (i < first) continue;
    if (op.kind === "write") ranges.push([op.offsetBytes, op.offsetBytes + op.data.length]);
    else if (op.kind === "zero") ranges.push([op.offsetBytes, op.offsetBytes + op.lengthBytes]);
  }
  return ranges;
}
