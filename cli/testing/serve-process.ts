/**
 * `okeanos --json serve …` as a child process for tests: waits for its JSON banner (stdout),
 * and stops it with SIGTERM, reporting the exit code and everything it wrote to stderr.
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
  firstUser?: { name: string; password: string };
}

export interface ServeProcess {
  banner: ServeBanner;
  /** stdout after the banner (pino's log lines) and stderr, so far. */
  output(): { stdout: string; stderr: string };
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
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
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const banner = firstJsonDocument(stdout);
      if (banner !== undefined) resolve(banner as ServeBanner);
    });
    child.once("exit", (code) => reject(new Error(`okeanos serve exited ${code}: ${stderr}`)));
  });
  return {
    banner,
    output: () => ({ stdout, stderr }),
    async stop() {
      child.kill("SIGTERM");
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}

/** The JSON document at the start of `text`, if it is complete (log lines may follow it). */
function firstJsonDocument(text: string): unknown {
  for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", end + 1)) {
    try {
      return JSON.parse(text.slice(0, end));
    } catch {
      // not a whole document yet
    }
  }
  return undefined;
}
