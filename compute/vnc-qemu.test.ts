/**
 * The console proxy against a real QEMU VNC server: `qemu-system-x86_64 -machine none` with
 * no disk, VNC on a unix socket with `password=on` and the password set over QMP, as the
 * driver does. A websocket client goes through /compute/console/<token> and completes RFB up
 * to ServerInit (framebuffer size and name) — QEMU sends ServerInit only after a successful
 * VNC Authentication, so this proves the proxy logged in. A wrong password reaches the client
 * as RFB's failure reason. Needs qemu-system-x86: skipped with a loud warning without it,
 * failed under CI=true.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { requireTools } from "../engine/nbd/testing/require-tool.ts";
import { computeHarness, type ComputeHarness } from "./api/testing/harness.ts";
import { qmpExecute } from "./qemu/qmp.ts";
import { UpstreamLogin } from "./vnc-handshake.ts";

const haveQemu = requireTools("qemu-system-x86_64");
const password = "s3cr3t!x";

/** The websocket's bytes, read by count whatever the message boundaries. */
function wsReader(ws: WebSocket): (count: number) => Promise<Buffer> {
  let buffered = Buffer.alloc(0);
  let waiting: { count: number; resolve: (bytes: Buffer) => void } | undefined;
  const serve = () => {
    if (waiting === undefined || buffered.length < waiting.count) return;
    const { count, resolve } = waiting;
    waiting = undefined;
    const bytes = buffered.subarray(0, count);
    buffered = buffered.subarray(count);
    resolve(bytes);
  };
  ws.on("message", (data: Buffer) => {
    buffered = Buffer.concat([buffered, data]);
    serve();
  });
  return (count) => new Promise((resolve) => ((waiting = { count, resolve }), serve()));
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await probe())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe.skipIf(!haveQemu)("console proxy against QEMU's VNC server", () => {
  let dir: string;
  let qemu: ChildProcess;
  let stderr = "";
  let h: ComputeHarness;
  let base: string;
  const vncPath = () => join(dir, "vnc.sock");

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-vnc-qemu-"));
    const qmpPath = join(dir, "qmp.sock");
    // No disk, no devices, no guest code run (-S): enough for QEMU's VNC server to answer.
    qemu = spawn("qemu-system-x86_64", [
      "-nodefaults", "-no-user-config", "-display", "none", "-S", "-machine", "none",
      "-vnc", `unix:${vncPath()},password=on`, "-qmp", `unix:${qmpPath},server=on,wait=off`,
    ], { stdio: ["ignore", "ignore", "pipe"] });
    qemu.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await until(`QEMU's QMP socket (stderr: ${stderr})`, () => qmpExecute(qmpPath, "query-status").then(() => true, () => false));
    await qmpExecute(qmpPath, "set_password", { protocol: "vnc", password });

    h = await computeHarness({ consoleProxy: true });
    const address = await h.app.listen({ host: "127.0.0.1", port: 0 });
    base = address.replace(/^http/, "ws");
  }, 60_000);

  afterAll(async () => {
    await h?.app.close();
    if (qemu !== undefined && qemu.exitCode === null) {
      const exited = once(qemu, "exit");
      qemu.kill("SIGKILL");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("logs in with the console's password: the client reaches ServerInit with security None", async () => {
    h.fake.vncEndpoint = { address: { kind: "unix", path: vncPath() }, password };
    const ws = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const read = wsReader(ws);
    await once(ws, "open");
    expect((await read(12)).toString()).toBe("RFB 003.008\n");
    ws.send(Buffer.from("RFB 003.008\n"));
    expect(await read(2)).toEqual(Buffer.from([1, 1]));
    ws.send(Buffer.from([1]));
    expect((await read(4)).readUInt32BE(0)).toBe(0);
    // ClientInit (shared), then QEMU's ServerInit (RFC 6143 7.3.2): width, height, pixel format, name.
    ws.send(Buffer.from([1]));
    const serverInit = await read(24);
    const width = serverInit.readUInt16BE(0);
    const height = serverInit.readUInt16BE(2);
    const name = (await read(serverInit.readUInt32BE(20))).toString();
    expect(width).toBeGreaterThan(0);
    expect(height).toBeGreaterThan(0);
    expect(name).toBe("QEMU");
    // The normal protocol goes through: a FramebufferUpdateRequest gets a FramebufferUpdate (type 0).
    const request = Buffer.alloc(10);
    request.writeUInt8(3, 0);
    request.writeUInt16BE(width, 6);
    request.writeUInt16BE(height, 8);
    ws.send(request);
    expect((await read(1))[0]).toBe(0);
    ws.close();
  });

  it("a wrong password: QEMU refuses it, and the client gets RFB's failure reason", async () => {
    h.fake.vncEndpoint = { address: { kind: "unix", path: vncPath() }, password: "wrong" };
    const ws = new WebSocket(`${base}/compute/console/${h.fake.issueConsoleToken()}`, ["binary"]);
    const read = wsReader(ws);
    await once(ws, "open");
    const closed = once(ws, "close");
    expect((await read(12)).toString()).toBe("RFB 003.008\n");
    ws.send(Buffer.from("RFB 003.008\n"));
    expect(await read(1)).toEqual(Buffer.from([0]));
    const reason = (await read((await read(4)).readUInt32BE(0))).toString();
    expect(reason).toMatch(/could not log in to the server's display/);
    expect(((await closed) as [number])[0]).toBe(1011);
  });

  it("UpstreamLogin alone speaks QEMU's dialect (3.8, a failure with its reason)", async () => {
    const { createConnection } = await import("node:net");
    const socket = createConnection(vncPath());
    const login = new UpstreamLogin("wrong");
    const outcome = await new Promise<string>((resolve) => {
      socket.on("data", (chunk: Buffer) => {
        for (const event of login.push(chunk)) {
          if (event.kind === "send") socket.write(event.bytes);
          else resolve(event.kind === "ready" ? "ready" : `${event.failure.code}: ${event.failure.reason}`);
        }
      });
    });
    socket.destroy();
    expect(outcome).toBe("EAUTH: the VNC server refused the password: Authentication failed");
  });
});
