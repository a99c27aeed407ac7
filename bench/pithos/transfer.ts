/**
 * One large-object transfer, the same client code for okeanos and the ceiling: node:http,
 * a fresh connection (no agent), the body streamed from the pattern (pattern.ts) with
 * backpressure, the download checked against it as it arrives. Neither side ever holds the
 * object in memory.
 *
 * Timing: an upload runs from the request's first byte to the end of the response (for
 * okeanos: after the blocks are durable and the version is committed); a download from the
 * request to its last byte.
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { PatternChecker, writePattern } from "./pattern.ts";

export interface TransferResult {
  elapsedMs: number;
  /** This process's user + system CPU over the transfer. */
  clientCpuMs: number;
  status: number;
  /** The response's ETag, if any (okeanos: the MD5 of the data). */
  etag: string | undefined;
  /** Upload only: from the last body byte handed to the socket to the end of the response. */
  tailMs: number;
}

function clientCpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

async function drain(response: IncomingMessage): Promise<string> {
  let text = "";
  for await (const chunk of response) text += String(chunk);
  return text;
}

export async function upload(url: string, headers: Record<string, string>, totalBytes: number, salt: number): Promise<TransferResult> {
  const cpuStart = process.cpuUsage();
  const startMs = performance.now();
  const request = httpRequest(url, {
    method: "PUT",
    agent: false,
    headers: { ...headers, "content-type": "application/octet-stream", "content-length": String(totalBytes) },
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    request.once("response", resolve);
    request.once("error", reject);
  });
  // A server that answers early (an error) must not leave us waiting on backpressure.
  const answeredEarly = response.then(async (early) => {
    if (early.statusCode !== undefined && early.statusCode >= 300) throw new Error(`PUT ${url}: ${early.statusCode} ${await drain(early)}`);
  });
  answeredEarly.catch(() => undefined);
  await Promise.race([writePattern(request, totalBytes, salt), answeredEarly]);
  request.end();
  const sentMs = performance.now();
  const answer = await response;
  const body = await drain(answer);
  const endMs = performance.now();
  const elapsedMs = endMs - startMs;
  const status = answer.statusCode ?? 0;
  if (status !== 201 && status !== 200) throw new Error(`PUT ${url}: ${status} ${body}`);
  const etag = answer.headers.etag;
  return { elapsedMs, clientCpuMs: clientCpuMs(cpuStart), status, etag: typeof etag === "string" ? etag : undefined, tailMs: endMs - sentMs };
}

export async function download(url: string, headers: Record<string, string>, totalBytes: number, salt: number): Promise<TransferResult> {
  const cpuStart = process.cpuUsage();
  const startMs = performance.now();
  const request = httpRequest(url, { method: "GET", agent: false, headers });
  const answer = await new Promise<IncomingMessage>((resolve, reject) => {
    request.once("response", resolve);
    request.once("error", reject);
    request.end();
  });
  const status = answer.statusCode ?? 0;
  if (status !== 200) throw new Error(`GET ${url}: ${status} ${await drain(answer)}`);
  const checker = new PatternChecker(salt);
  await new Promise<void>((resolve, reject) => {
    answer.on("data", (chunk: Buffer) => {
      try {
        checker.update(chunk);
      } catch (error) {
        answer.destroy(error as Error);
      }
    });
    answer.once("end", resolve);
    answer.once("error", reject);
    answer.once("close", () => {
      if (!answer.complete) reject(new Error(`GET ${url}: connection closed after ${checker.receivedBytes} bytes`));
    });
  });
  const elapsedMs = performance.now() - startMs;
  if (checker.receivedBytes !== totalBytes) throw new Error(`GET ${url}: ${checker.receivedBytes} bytes, expected ${totalBytes}`);
  const etag = answer.headers.etag;
  return { elapsedMs, clientCpuMs: clientCpuMs(cpuStart), status, etag: typeof etag === "string" ? etag : undefined, tailMs: 0 };
}

/** A small request (setup and checks, not timed). */
export async function simpleRequest(url: string, method: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  const response = await fetch(url, { method, headers, ...(body !== undefined && { body }) });
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
}
