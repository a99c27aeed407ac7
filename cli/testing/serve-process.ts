/**
 * `okeanos --json serve …` as a child process for tests: waits for its JSON banner (stdout),
 * and stops it with SIGTERM (a graceful stop) or SIGKILL (a crash), reporting the exit code
 * and everything it wrote to stderr.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { cliEntry } from "./run-cli.ts";

export interface ServeBanner {
  port: number;
  bind: string;
  baseUrl: string;
  database: string;
  store: string;
  objectStore: string;
  nbd: string[];
  /** The Nova API's URL, or null when compute is off. */
  compute: string | null;
  /** The Cinder API's URL (`{base}/volume/v3`; the project id follows). */
  volume?: string;
  firstUser?: { name: string; password: string };
}

/** A serve that prints no banner in this long is stuck (start-up is a few seconds, even loaded). */
const bannerTimeoutMs = 60_000;

export interface ServeProcess {
  banner: ServeBanner;
  pid: number;
  /** stdout after the banner (pino's log lines) and stderr, so far. */
  output(): { stdout: string; stderr: string };
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (a crash); resolves once the process is gone. */
  kill(): Promise<void>;
}

/** `args` go after `--json serve`; global options (before `serve`) in `globalArgs`. */
export async function startServe(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string | undefined>; globalArgs?: readonly string[] } = {},
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [cliEntry, ...(options.globalArgs ?? []), "--json", "serve", ...args], {
    cwd: options.cwd,
    env: { ...process.env, OKEANOS_DATABASE: undefined, OKEANOS_STORE: undefined, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, "exit");
  const banner = await new Promise<ServeBanner>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`okeanos serve printed no banner within ${bannerTimeoutMs} ms: ${stderr}`)), bannerTimeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const banner = bannerIn(stdout);
      if (banner === undefined) return;
      clearTimeout(timer);
      resolve(banner);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`okeanos serve exited (${code ?? signal}): ${stderr}`));
    });
  });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  return {
    banner,
    pid: child.pid as number,
    output: () => ({ stdout, stderr }),
    async stop() {
      if (!gone()) child.kill("SIGTERM");
      await exited;
      return child.exitCode;
    },
    async kill() {
      if (!gone()) child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * The banner in serve's stdout: the one pretty-printed JSON document (its first line is `{`),
 * among pino's one-line log records, which may come before it (compute's reconcile logs at
 * start-up); once it is complete.
 */
export function bannerIn(stdout: string): ServeBanner | undefined {
  const start = stdout.startsWith("{\n") ? 0 : stdout.indexOf("\n{\n") + 1;
  if (start === 0 && !stdout.startsWith("{\n")) return undefined;
  for (let end = stdout.indexOf("\n}", start); end !== -1; end = stdout.indexOf("\n}", end + 1)) {
    try {
      return JSON.parse(stdout.slice(start, end + 2)) as ServeBanner;
    } catch {
      // not the whole document yet
    }
  }
  return undefined;
}
