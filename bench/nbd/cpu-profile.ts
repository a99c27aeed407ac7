/**
 * A summary of a V8 `.cpuprofile` (what `node --cpu-prof` writes): self time per function,
 * the share of the main thread that was idle, in GC, or in native code ("(program)").
 *
 * The format: `nodes` is the call tree (each node one function at one call site, with its
 * `callFrame`), `samples[i]` is the node on top of the stack at sample i, and
 * `timeDeltas[i]` the µs between sample i-1 and sample i. Sample i is charged the interval
 * up to the next sample, timeDeltas[i + 1].
 *
 * Timestamps are CLOCK_MONOTONIC µs, the clock of `process.hrtime` in every process on the
 * machine, so the caller can keep only the samples taken while its fio job ran (not the
 * server's start-up: module loading, type stripping, opening the store).
 */
import { readFile } from "node:fs/promises";
import { relative } from "node:path";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionSelfTime {
  /** "name (file:line)", or a V8 pseudo-frame like "(garbage collector)". */
  frame: string;
  selfMs: number;
  /** Share of the busy (non-idle) time. */
  busyPercent: number;
}

export interface ProfileSummary {
  wallMs: number;
  idleMs: number;
  busyMs: number;
  gcMs: number;
  /** "(program)": native code V8 cannot attribute to a JS function (libuv, syscalls, the C++ side of Node). */
  programMs: number;
  top: FunctionSelfTime[];
  /** Self time per source file, for "where in the code base". */
  byFile: Array<{ file: string; selfMs: number; busyPercent: number }>;
}

export interface SummaryOptions {
  /** Paths under this directory are shown relative to it. */
  rootDir: string;
  /** Keep only samples taken in [fromUs, toUs] (CLOCK_MONOTONIC µs, as process.hrtime). */
  fromUs?: number;
  toUs?: number;
  topCount?: number;
}

export async function summariseCpuProfile(path: string, options: SummaryOptions): Promise<ProfileSummary> {
  const { rootDir, fromUs = -Infinity, toUs = Infinity, topCount = 15 } = options;
  const profile = JSON.parse(await readFile(path, "utf8")) as CpuProfile;
  const frames = new Map<number, CallFrame>(profile.nodes.map((node) => [node.id, node.callFrame]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const labels = new Map<number, string>();
  const labelOf = (id: number, frame: CallFrame): string => {
    let label = labels.get(id);
    if (label === undefined) labels.set(id, (label = frameLabel(frame, rootDir, callerInProject(id, frames, parents, rootDir))));
    return label;
  };
  const selfUs = new Map<string, number>();
  const fileUs = new Map<string, number>();
  let idleUs = 0;
  let totalUs = 0;
  let timestampUs = profile.startTime;
  for (let index = 0; index < profile.samples.length; index++) {
    timestampUs += profile.timeDeltas[index] ?? 0;
    const durationUs = profile.timeDeltas[index + 1] ?? 0;
    const frame = frames.get(profile.samples[index] as number);
    if (frame === undefined || timestampUs < fromUs || timestampUs > toUs) continue;
    totalUs += durationUs;
    if (frame.functionName === "(idle)") {
      idleUs += durationUs;
      continue;
    }
    const key = labelOf(profile.samples[index] as number, frame);
    selfUs.set(key, (selfUs.get(key) ?? 0) + durationUs);
    const file = frame.url !== "" ? shortUrl(frame.url, rootDir) : frame.functionName.startsWith("(") ? frame.functionName : "(native bindings: fs, sockets)";
    fileUs.set(file, (fileUs.get(file) ?? 0) + durationUs);
  }
  const busyUs = totalUs - idleUs;
  const percent = (us: number): number => (busyUs === 0 ? 0 : (100 * us) / busyUs);
  const sorted = [...selfUs].sort((a, b) => b[1] - a[1]);
  return {
    wallMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    busyMs: busyUs / 1000,
    gcMs: (selfUs.get("(garbage collector)") ?? 0) / 1000,
    programMs: (selfUs.get("(program)") ?? 0) / 1000,
    top: sorted.slice(0, topCount).map(([frame, us]) => ({ frame, selfMs: us / 1000, busyPercent: percent(us) })),
    byFile: [...fileUs]
      .sort((a, b) => b[1] - a[1])
      .slice(0, topCount)
      .map(([file, us]) => ({ file, selfMs: us / 1000, busyPercent: percent(us) })),
  };
}

/**
 * A native binding (`read`, `writeBuffer`, `writev`…) says little on its own: the same one
 * serves the socket and the files. Name the nearest caller in our own code.
 */
function callerInProject(id: number, frames: Map<number, CallFrame>, parents: Map<number, number>, rootDir: string): string | undefined {
  const frame = frames.get(id);
  if (frame === undefined || frame.url !== "" || frame.functionName.startsWith("(")) return undefined;
  for (let ancestor = parents.get(id), depth = 0; ancestor !== undefined && depth < 32; ancestor = parents.get(ancestor), depth++) {
    const caller = frames.get(ancestor);
    if (caller !== undefined && caller.url.startsWith("file://") && !caller.url.includes("/node_modules/")) return frameLabel(caller, rootDir);
  }
  return undefined;
}

function frameLabel(frame: CallFrame, rootDir: string, caller?: string): string {
  if (frame.url === "") return `${frame.functionName || "(anonymous native)"}${caller === undefined ? "" : ` [native, from ${caller}]`}`;
  // lineNumber is 0-based in the profile.
  return `${frame.functionName || "(anonymous)"} (${shortUrl(frame.url, rootDir)}:${frame.lineNumber + 1})`;
}

function shortUrl(url: string, rootDir: string): string {
  if (url.startsWith("file://")) return relative(rootDir, new URL(url).pathname);
  return url;
}
