/**
 * A TCP proxy that counts the bytes each way, for measuring what a client really puts on
 * the wire (request lines, headers and bodies, every connection).
 *
 *   client ──► 127.0.0.1:proxy ──(count sent)──► target
 *          ◄──────────────────(count received)──┘
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface CountingProxy {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Bytes from clients to the target, and back, since start or the last reset(). */
  sentBytes: number;
  receivedBytes: number;
  connections: number;
  reset(): void;
  close(): Promise<void>;
}

export async function startCountingProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<CountingProxy> {
  const sockets = new Set<Socket>();
  const proxy = { sentBytes: 0, receivedBytes: 0, connections: 0 } as CountingProxy;
  const server: Server = createServer((client) => {
    proxy.connections++;
    const upstream = createConnection({ port: targetPort, host: targetHost });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (chunk: Buffer) => (proxy.sentBytes += chunk.length));
    upstream.on("data", (chunk: Buffer) => (proxy.receivedBytes += chunk.length));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.reset = () => {
    proxy.sentBytes = 0;
    proxy.receivedBytes = 0;
    proxy.connections = 0;
  };
  proxy.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return proxy;
}
