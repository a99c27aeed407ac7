/**
 * Accepted connections that read into one reused buffer instead of a fresh one per read.
 *
 * Why: a stream socket allocates a new 64 KiB buffer for every read. A 1 MiB WRITE is 16 of
 * them, each copied into the pooled payload and dropped: 1 MiB of garbage per request, and
 * garbage collection took 29% of the main thread on 1 MiB writes (bench/RESULTS.md, "nbd").
 * Node's `onread: { buffer, callback }` socket option reads into the caller's buffer, but a
 * net.Server has no such option for the sockets it accepts. So the server accepts paused
 * (pauseOnConnect, nothing read yet) and the connection's handle moves to a new Socket made
 * with `onread`:
 *
 *   net.Server ──accepted (paused)──► adoptWithReadBuffer ──► Socket({ handle, onread })
 *                  │ _handle = null, destroyed: the server's count of it drops (we count
 *                  │ our own sessions; see server.ts)
 *
 * `_handle` is Node's long-standing (undocumented) name for a socket's libuv handle; if it
 * is ever missing, the accepted socket is used as it is, with 'data' events.
 */
import { Socket } from "node:net";

export interface AdoptedSocket {
  socket: Socket;
  /** False when the accepted socket had to be kept as it is ('data' events, resumed). */
  reusedReadBuffer: boolean;
}

/** Moves `accepted`'s connection to a socket that reads into `buffer`; `onBytes` gets a view valid only during the call. */
export function adoptWithReadBuffer(accepted: Socket, buffer: Buffer, onBytes: (bytes: Buffer) => void): AdoptedSocket {
  const holder = accepted as unknown as { _handle?: object | null };
  const handle = holder._handle;
  if (handle === null || typeof handle !== "object" || accepted.destroyed) {
    accepted.resume();
    return { socket: accepted, reusedReadBuffer: false };
  }
  holder._handle = null;
  accepted.destroy(); // no handle: closes nothing, only settles the accepted object
  const socket = new Socket({
    handle,
    allowHalfOpen: true,
    readable: true,
    writable: true,
    onread: {
      buffer,
      callback: (bytesRead: number, target: Uint8Array) => {
        onBytes((target as Buffer).subarray(0, bytesRead));
        return true; // flow is controlled with pause() / resume(), as for any socket
      },
    },
  } as ConstructorParameters<typeof Socket>[0] & { handle: object });
  return { socket, reusedReadBuffer: true };
}
