/**
 * Where an instance's state lives: one directory per instance under the driver's state
 * directory, named by the instance id.
 *
 *   <stateDir>/<id>/
 *     spec.json      the InstanceSpec it was last started with (user data as base64)
 *     qemu.pid       written by QEMU (-pidfile), removed by QEMU when it exits cleanly
 *     qmp.sock       QMP (-qmp unix:…,server=on,wait=off)
 *     vnc.sock       VNC (-vnc unix:…,password=on)
 *     console.log    the serial console (a file chardev, appended across boots)
 *     qemu.log       QEMU's own errors: before -daemonize returns, and after (-D keeps stderr)
 *     seed.iso       the NoCloud seed (nocloud.ts)
 */
import { join } from "node:path";
import { ComputeError } from "../errors.ts";

/**
 * Linux's sockaddr_un.sun_path is 108 bytes including the terminating NUL (unix(7)); a longer
 * path cannot be bound or connected to. QEMU would fail with a bare "path too long".
 */
export const socketPathBytesMax = 107;

/** Instance ids are the service's uuids; anything that is one path component and safe in QEMU options is accepted. */
export const instanceIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface InstanceLayout {
  dir: string;
  specFile: string;
  pidFile: string;
  qmpSocket: string;
  vncSocket: string;
  consoleLog: string;
  qemuLog: string;
  seedIso: string;
}

export function checkInstanceId(id: string): void {
  if (!instanceIdPattern.test(id)) throw new ComputeError("EBAD_REQUEST", `not an instance id: ${JSON.stringify(id)}`);
}

/** The layout of instance `id` under `stateDir` (absolute); checks the id and the socket paths' length. */
export function instanceLayout(stateDir: string, id: string): InstanceLayout {
  checkInstanceId(id);
  const dir = join(stateDir, id);
  const layout: InstanceLayout = {
    dir,
    specFile: join(dir, "spec.json"),
    pidFile: join(dir, "qemu.pid"),
    qmpSocket: join(dir, "qmp.sock"),
    vncSocket: join(dir, "vnc.sock"),
    consoleLog: join(dir, "console.log"),
    qemuLog: join(dir, "qemu.log"),
    seedIso: join(dir, "seed.iso"),
  };
  checkSocketPath(layout.qmpSocket, `the QMP socket (state directory ${stateDir} is too long: choose a shorter one)`);
  checkSocketPath(layout.vncSocket, `the VNC socket (state directory ${stateDir} is too long: choose a shorter one)`);
  return layout;
}

/** Throws a ComputeError naming `what` when `path` cannot be a unix socket's address. */
export function checkSocketPath(path: string, what: string): void {
  const bytes = Buffer.byteLength(path, "utf8");
  if (bytes > socketPathBytesMax) {
    throw new ComputeError("EHYPERVISOR", `${path} is ${bytes} bytes, over the ${socketPathBytesMax} a unix socket path may have: ${what}`);
  }
}
