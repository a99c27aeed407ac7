/**
 * Small-object requests/s with wrk (Debian package `wrk`): its Lua scripts, one run, and
 * its numbers. The scripts are written to the run's temp dir; every request they make is
 * built by `request()`:
 *
 *   put.lua  PUT CONTAINER/small-RUN-THREAD-N, a 4 KiB body that starts with that name: a
 *            new object and a distinct block per request (nothing deduplicated)
 *   get.lua  GET CONTAINER/get-I for I cycling over the objects made beforehand
 *
 * Both send X-Auth-Token; the ceiling gets the same requests and ignores it. `done()`
 * prints one line `WRK_JSON {…}` that run() parses; status codes other than 2xx/3xx are
 * wrk's `errors.status`, and any error fails the run.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../nbd/processes.ts";

const common = String.raw`
local thread_count = 0
function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"errorsConnect":%d,"errorsRead":%d,"errorsWrite":%d,"errorsStatus":%d,"errorsTimeout":%d,"latencyMeanUs":%.1f,"latencyP50Us":%d,"latencyP99Us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(99)))
end
`;

const putScript = String.raw`
-- args: CONTAINER_PATH TOKEN RUN SIZE_BYTES
function init(args)
  prefix = args[1]
  headers = { ["X-Auth-Token"] = args[2], ["Content-Type"] = "application/octet-stream" }
  run_id = args[3]
  filler = string.rep("okeanos-bench-", math.ceil(tonumber(args[4]) / 14)):sub(1, tonumber(args[4]))
  counter = 0
end

function request()
  counter = counter + 1
  local name = string.format("small-%s-%d-%d", run_id, id, counter)
  return wrk.format("PUT", prefix .. "/" .. name, headers, name .. filler:sub(#name + 1))
end
` + common;

const getScript = String.raw`
-- args: CONTAINER_PATH TOKEN COUNT
function init(args)
  prefix = args[1]
  headers = { ["X-Auth-Token"] = args[2] }
  count = tonumber(args[3])
  counter = id * 7919
end

function request()
  counter = counter + 1
  return wrk.format("GET", prefix .. "/get-" .. (counter % count), headers)
end
` + common;

export interface WrkScripts {
  put: string;
  get: string;
}

export async function writeWrkScripts(dir: string): Promise<WrkScripts> {
  const scripts = { put: join(dir, "put.lua"), get: join(dir, "get.lua") };
  await writeFile(scripts.put, putScript);
  await writeFile(scripts.get, getScript);
  return scripts;
}

export interface WrkResult {
  requests: number;
  durationUs: number;
  bytes: number;
  errorsConnect: number;
  errorsRead: number;
  errorsWrite: number;
  errorsStatus: number;
  errorsTimeout: number;
  latencyMeanUs: number;
  latencyP50Us: number;
  latencyP99Us: number;
  requestsPerSecond: number;
}

export interface WrkRun {
  baseUrl: string;
  script: string;
  args: readonly string[];
  threads: number;
  connections: number;
  seconds: number;
}

export async function runWrk(options: WrkRun): Promise<WrkResult> {
  const { stdout } = await run("wrk", [
    `--threads=${options.threads}`,
    `--connections=${options.connections}`,
    `--duration=${options.seconds}s`,
    "--timeout=10s",
    `--script=${options.script}`,
    options.baseUrl,
    "--",
    ...options.args,
  ]);
  const line = stdout.split("\n").find((text) => text.startsWith("WRK_JSON "));
  if (line === undefined) throw new Error(`wrk printed no WRK_JSON line:\n${stdout}`);
  const parsed = JSON.parse(line.slice("WRK_JSON ".length)) as Omit<WrkResult, "requestsPerSecond">;
  const errors = parsed.errorsConnect + parsed.errorsRead + parsed.errorsWrite + parsed.errorsStatus + parsed.errorsTimeout;
  if (errors > 0) {
    throw new Error(`wrk: ${errors} errors in ${parsed.requests} requests (connect ${parsed.errorsConnect}, read ${parsed.errorsRead}, write ${parsed.errorsWrite}, status ${parsed.errorsStatus}, timeout ${parsed.errorsTimeout})`);
  }
  return { ...parsed, requestsPerSecond: parsed.requests / (parsed.durationUs / 1e6) };
}

/** wrk is a plain executable whose `-v` exits 1: look it up on PATH instead. */
export async function wrkMissing(): Promise<string | undefined> {
  try {
    await run("sh", ["-c", "command -v wrk"]);
    return undefined;
  } catch {
    return "wrk not found (Debian: wrk)";
  }
}
