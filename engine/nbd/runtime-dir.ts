/**
 * The per-user runtime directory where `okeanos nbd serve` puts its control socket, named
 * after its pid so that a process holding a volume's lock can be found from the lock's holder
 * record ({ host, pid }):
 *
 *   $XDG_RUNTIME_DIR/okeanos/nbd-<pid>.sock        when XDG_RUNTIME_DIR is set (systemd logins)
 *   ${TMPDIR:-/tmp}/okeanos-<uid>/nbd-<pid>.sock   otherwise, or when the first is unusable
 *
 * The directory is the access control (as for ssh-agent and tmux): it must be a real directory
 * owned by us with no group or other permissions, or we refuse to use it — someone else could
 * have made `/tmp/okeanos-<uid>` first, to listen in our place or to read our requests.
 * Sockets left by processes that died without a graceful shutdown (SIGKILL, a crash) are
 * removed when the next server prepares the directory; clients ignore them (connecting fails).
 */
import { lstat, mkdir, readdir, rm } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { EngineError } from "../errors.ts";

const controlSocketPattern = /^nbd-(\d+)\.sock$/;

export function controlSocketName(pid: number): string {
  return `nbd-${pid}.sock`;
}

function currentUid(): number {
  return process.getuid?.() ?? userInfo().uid;
}

/** Candidate directories, preferred first. */
export function runtimeDirectories(env: NodeJS.ProcessEnv = process.env, uid: number = currentUid()): string[] {
  const directories: string[] = [];
  const xdg = env["XDG_RUNTIME_DIR"];
  if (xdg !== undefined && xdg !== "") directories.push(join(xdg, "okeanos"));
  const tmp = env["TMPDIR"];
  directories.push(join(tmp !== undefined && tmp !== "" ? tmp : "/tmp", `okeanos-${uid}`));
  return directories;
}

/**
 * Creates (or checks) the first usable runtime directory, removes the sockets of dead
 * processes from it and returns its path. Throws EINVALID when no candidate is usable.
 */
export async function prepareRuntimeDirectory(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  let lastError: unknown;
  for (const directory of runtimeDirectories(env)) {
    try {
      await mkdir(directory, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "EEXIST") throw error;
      });
      await checkPrivateDirectory(directory);
      await removeStaleSockets(directory);
      return directory;
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError instanceof EngineError
    ? lastError
    : new EngineError("EINVALID", `no usable runtime directory for the control socket: ${String(lastError)}`, {}, { cause: lastError });
}

/** The control socket of process `pid`, if a private runtime directory holds one. */
export async function findControlSocket(pid: number, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  for (const directory of runtimeDirectories(env)) {
    const path = join(directory, controlSocketName(pid));
    const found = await lstat(path).catch(() => undefined);
    if (found === undefined || !found.isSocket()) continue;
    try {
      await checkPrivateDirectory(directory);
    } catch {
      continue; // not ours: whatever answers there is not to be trusted
    }
    return path;
  }
  return undefined;
}

/** A directory we own, not a symlink, with no group or other permission bits. */
export async function checkPrivateDirectory(directory: string): Promise<void> {
  const found = await lstat(directory);
  const uid = currentUid();
  if (!found.isDirectory()) throw new EngineError("EINVALID", `${directory} is not a directory`);
  if (found.uid !== uid || (found.mode & 0o077) !== 0) {
    const mode = (found.mode & 0o777).toString(8).padStart(4, "0");
    throw new EngineError("EINVALID", `${directory} is not private (owner uid ${found.uid}, mode ${mode}; want uid ${uid}, mode 0700): not using it`);
  }
}

/** Removes sockets named after dead processes, and one named after us (a dead process's pid, reused). */
async function removeStaleSockets(directory: string): Promise<void> {
  for (const name of await readdir(directory)) {
    const match = controlSocketPattern.exec(name);
    if (match === null) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || !isAlive(pid)) await rm(join(directory, name), { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is just not ours to signal.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
