/**
 * The kernel send buffer of unix-socket connections, through the optional native addon in
 * native/ (scripts/build-nbd-addon.sh). Node sets no SO_SNDBUF on stream sockets.
 *
 * Why: a unix socket's default send buffer (net.core.wmem_default, ~208 KiB) takes a 1 MiB
 * READ reply in about five writes, each waiting for the client to drain the one before and
 * each a wake-up of the event loop; with 4 MiB the reply goes out in one write. Measured on
 * 1 MiB sequential reads at QD 8: 1.1–1.3× nbdkit instead of 0.75× (bench/RESULTS.md, nbd run
 * 12), and the rados backend's 4 MiB reads gain the same way.
 *
 * Unix sockets only: a TCP socket's buffer is autotuned by the kernel (net.ipv4.tcp_wmem, up
 * to 4 MiB), and setting SO_SNDBUF would switch that off.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { Socket } from "node:net";

export interface SocketAddon {
  /** The socket's send buffer as the kernel accounts it (twice what was asked: its bookkeeping). */
  getSendBufferBytes(fd: number): number;
  /** Asks for `bytes` (SO_SNDBUFFORCE, else SO_SNDBUF capped at net.core.wmem_max); returns getSendBufferBytes after. */
  setSendBufferBytes(fd: number, bytes: number): number;
}

/** Where scripts/build-nbd-addon.sh puts the addon; OKEANOS_NBD_ADDON overrides it. */
export const socketAddonPath = join(import.meta.dirname, "native", "build", "Release", "okeanos_socket.node");

let loaded: SocketAddon | undefined;
let loadFailure: string | undefined;

/** The addon, loaded once; undefined (and `socketAddonProblem()` says why) when it is not built or does not load. */
export function loadSocketAddon(): SocketAddon | undefined {
  if (loaded !== undefined || loadFailure !== undefined) return loaded;
  const path = process.env["OKEANOS_NBD_ADDON"] ?? socketAddonPath;
  if (!existsSync(path)) {
    loadFailure = `the NBD addon is not built (${path} is missing): run scripts/build-nbd-addon.sh`;
    return undefined;
  }
  try {
    loaded = createRequire(import.meta.url)(path) as SocketAddon;
  } catch (error) {
    loadFailure = `the NBD addon ${path} does not load (${(error as Error).message}): run scripts/build-nbd-addon.sh`;
  }
  return loaded;
}

/** Why loadSocketAddon() returned undefined; undefined when it loaded or was not tried. */
export function socketAddonProblem(): string | undefined {
  return loadFailure;
}

export type SendBufferResult = { ok: true; bytes: number } | { ok: false; reason: string };

/**
 * Gives `socket` a send buffer of `bytes` as the kernel counts it (so asks for half). The
 * kernel may grant less: without CAP_NET_ADMIN it caps the request at net.core.wmem_max.
 */
export function setSendBuffer(socket: Socket, bytes: number): SendBufferResult {
  const addon = loadSocketAddon();
  if (addon === undefined) return { ok: false, reason: socketAddonProblem() ?? "the NBD addon is not loaded" };
  const fd = socketFd(socket);
  if (fd === undefined) return { ok: false, reason: "the socket has no file descriptor (closed, or not a libuv stream)" };
  try {
    return { ok: true, bytes: addon.setSendBufferBytes(fd, Math.max(1, Math.ceil(bytes / 2))) };
  } catch (error) {
    return { ok: false, reason: (error as Error).message };
  }
}

/** The socket's send buffer as the kernel counts it; undefined without the addon or a descriptor. */
export function sendBufferBytes(socket: Socket): number | undefined {
  const fd = socketFd(socket);
  const addon = loadSocketAddon();
  if (fd === undefined || addon === undefined) return undefined;
  return addon.getSendBufferBytes(fd);
}

/** `_handle.fd`: Node's long-standing (undocumented) view of a stream's descriptor; -1 or absent when it has none. */
function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}
