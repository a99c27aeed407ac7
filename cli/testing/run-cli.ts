/**
 * Runs the real CLI as a child process (`node bin/okeanos.js …`: the package's bin, what
 * `npx okeanos` runs), as a user or a script would, and collects its exit code and output.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";

export const cliEntry = join(import.meta.dirname, "..", "..", "bin", "okeanos.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Kill the child after this long, and reject (a hang is a failure, not a result). */
  timeoutMs?: number;
}

/** Runs `command …args` (no shell); resolves whatever the exit code. */
export function runCommand(command: string, args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      { cwd: options.cwd, timeout: options.timeoutMs ?? 0, env: { ...process.env, OKEANOS_STORE: undefined, OKEANOS_DEBUG: undefined, ...options.env }, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== "number") {
          reject(error);
          return;
        }
        resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr });
      },
    );
  });
}

export function runCli(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  return runCommand(process.execPath, [cliEntry, ...args], options);
}

/** A CLI bound to one store directory: `okeanos("volume", "list")`. */
export function cliFor(storeDir: string, options: RunOptions = {}): (...args: string[]) => Promise<CliResult> {
  return (...args) => runCli(["--store", `file:${storeDir}`, ...args], options);
}

/** Runs and expects exit code 0; returns stdout. */
export async function ok(result: Promise<CliResult>): Promise<string> {
  const { code, stdout, stderr } = await result;
  if (code !== 0) throw new Error(`okeanos exited ${code}: ${stderr}`);
  return stdout;
}

/** Expects exit code 0 and parses stdout as JSON (pass --json). */
export async function okJson<T = unknown>(result: Promise<CliResult>): Promise<T> {
  return JSON.parse(await ok(result)) as T;
}
