/**
 * External tools for interop tests (qemu-io, qemu-img, nbdinfo, nbdcopy, nbdsh, the OpenStack
 * clients…), with the Debian packages that provide them.
 *
 * requireTools() says whether they are all installed. When one is missing: with CI=true the
 * test file fails (CI must run the interop suite, not skip it silently); otherwise the tests
 * are skipped with a loud message on stderr naming what to install.
 */
import { execFile } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { constants } from "node:os";
import { delimiter, join } from "node:path";

/** Debian packages providing each tool, for the message. */
const packageOf: Readonly<Record<string, string>> = {
  "qemu-io": "qemu-utils",
  "qemu-img": "qemu-utils",
  "qemu-nbd": "qemu-utils",
  nbdinfo: "libnbd-bin",
  nbdcopy: "libnbd-bin",
  nbdsh: "libnbd-bin python3-libnbd",
  nbdkit: "nbdkit",
  fio: "fio",
  swift: "python3-swiftclient",
  rclone: "rclone",
  openstack: "python3-openstackclient",
  glance: "python3-glanceclient",
  "qemu-system-x86_64": "qemu-system-x86",
  genisoimage: "genisoimage",
  isoinfo: "genisoimage",
};

export function findTool(name: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir === "") continue;
    const path = join(dir, name);
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** True if every tool is on PATH; throws when one is missing and CI=true; else warns loudly. */
export function requireTools(...names: string[]): boolean {
  const missing = names.filter((name) => findTool(name) === undefined);
  if (missing.length === 0) return true;
  const packages = [...new Set(missing.map((name) => packageOf[name] ?? name))].join(" ");
  const message = `interop tools missing: ${missing.join(", ")} (apt-get install ${packages})`;
  if (process.env["CI"] === "true") throw new Error(`${message}; CI=true, so this fails instead of skipping`);
  process.stderr.write(`\n${"!".repeat(78)}\n!! SKIPPING interop tests: ${message}\n${"!".repeat(78)}\n\n`);
  return false;
}

export interface ToolResult {
  /** The exit code; 128 + the signal's number when a signal ended it (as a shell reports it). */
  code: number;
  /** The signal that ended it, if one did. */
  signal: NodeJS.Signals | undefined;
  stdout: string;
  stderr: string;
}

/** Runs a tool (no shell) and resolves whatever its exit code; rejects only if it cannot start or times out. */
export function runTool(command: string, args: readonly string[], options: { timeoutMs?: number; env?: Record<string, string>; cwd?: string } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...options.env }, cwd: options.cwd },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ code: 0, signal: undefined, stdout, stderr });
        } else if (typeof error.code === "number") {
          resolve({ code: error.code, signal: undefined, stdout, stderr });
        } else if (typeof error.signal === "string" && error.killed !== true) {
          resolve({ code: 128 + (constants.signals[error.signal] ?? 0), signal: error.signal, stdout, stderr });
        } else {
          reject(new Error(`${command} ${args.join(" ")}: ${error.message}\n${stderr}`));
        }
      },
    );
  });
}

/** Runs a tool and expects exit code 0; returns its stdout. */
export async function runToolOk(command: string, args: readonly string[], options: { timeoutMs?: number } = {}): Promise<string> {
  const result = await runTool(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${result.code}\n${result.stderr}\n${result.stdout}`);
  return result.stdout;
}
