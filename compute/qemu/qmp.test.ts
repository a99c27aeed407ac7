/**
 * The QMP client against a scripted QMP server on a unix socket: negotiation, replies matched
 * by id (also out of order), errors as typed values, events before and after a wait, timeouts,
 * and the ends of a connection (QEMU exits, garbage, nobody listening).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { QmpClient, QmpState, isQmpError, qmpExecute } from "./qmp.ts";

const greeting = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r\n';

interface Command {
  execute: string;
  arguments?: Record<string, unknown>;
  id: number;
}

/** A fake QEMU monitor: greets, accepts qmp_capabilities, then hands each command to `onCommand`. */
class FakeQmp {
  readonly server: Server;
  readonly commands: Command[] = [];
  sockets: Socket[] = [];
  onCommand: (command: Command, socket: Socket) => void = (command, socket) => reply(socket, { return: {}, id: command.id });
  sendGreeting = true;

  constructor() {
    this.server = createServer((socket) => {
      this.sockets.push(socket);
      if (this.sendGreeting) socket.write(greeting);
      let buffered = "";
      socket.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("utf8");
        for (let end = buffered.indexOf("\n"); end >= 0; end = buffered.indexOf("\n")) {
          const command = JSON.parse(buffered.slice(0, end)) as Command;
          buffered = buffered.slice(end + 1);
          this.commands.push(command);
          if (command.execute === "qmp_capabilities") reply(socket, { return: {}, id: command.id });
          else this.onCommand(command, socket);
        }
      });
      socket.on("error", () => undefined);
    });
  }
}

function reply(socket: Socket, message: unknown): void {
  socket.write(`${JSON.stringify(message)}\r\n`);
}

let dir: string;
let socketPath: string;
let fake: FakeQmp;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-qmp-"));
  socketPath = join(dir, "qmp.sock");
  fake = new FakeQmp();
  await new Promise<void>((resolve) => fake.server.listen(socketPath, resolve));
});

afterEach(async () => {
  for (const socket of fake.sockets) socket.destroy();
  await new Promise((resolve) => fake.server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe("QmpClient", () => {
  it("negotiates capabilities and runs a command", async () => {
    fake.onCommand = (command, socket) => reply(socket, { return: { status: "running", running: true }, id: command.id });
    const client = await QmpClient.connect(socketPath);
    expect(client.state).toBe(QmpState.READY);
    expect(client.greeting?.capabilities).toEqual(["oob"]);
    expect(await client.execute("query-status")).toEqual({ status: "running", running: true });
    expect(fake.commands.map((command) => command.execute)).toEqual(["qmp_capabilities", "query-status"]);
    client.close();
    await client.closed;
    expect(client.state).toBe(QmpState.CLOSED);
  });

  it("matches replies to commands by id, whatever their order, and sends arguments", async () => {
    const held: Command[] = [];
    fake.onCommand = (command, socket) => {
      held.push(command);
      if (held.length < 2) return;
      for (const each of held.reverse()) reply(socket, { return: each.arguments?.["n"], id: each.id });
    };
    const client = await QmpClient.connect(socketPath);
    const answers = await Promise.all([client.execute("echo", { n: 1 }), client.execute("echo", { n: 2 })]);
    expect(answers).toEqual([1, 2]);
    client.close();
  });

  it("rejects with ECOMMAND and QMP's error class; the session goes on", async () => {
    fake.onCommand = (command, socket) => {
      if (command.execute === "nosuch") reply(socket, { id: command.id, error: { class: "CommandNotFound", desc: "The command nosuch has not been found" } });
      else reply(socket, { return: {}, id: command.id });
    };
    const client = await QmpClient.connect(socketPath);
    const error = await client.execute("nosuch").catch((caught: unknown) => caught);
    expect(isQmpError(error, "ECOMMAND")).toBe(true);
    expect(error).toMatchObject({ errorClass: "CommandNotFound", message: expect.stringContaining("nosuch has not been found") });
    expect(await client.execute("query-status")).toEqual({});
    client.close();
  });

  it("delivers events: one received before the wait, one after, and to listeners", async () => {
    fake.onCommand = (command, socket) => {
      reply(socket, { event: "POWERDOWN", timestamp: { seconds: 1, microseconds: 0 } });
      reply(socket, { return: {}, id: command.id });
    };
    const client = await QmpClient.connect(socketPath);
    const heard: string[] = [];
    client.onEvent((event) => heard.push(event.event));
    await client.execute("system_powerdown");
    expect((await client.waitForEvent("POWERDOWN")).event).toBe("POWERDOWN");
    const shutdown = client.waitForEvent("SHUTDOWN");
    reply(fake.sockets[0] as Socket, { event: "SHUTDOWN", data: { guest: true, reason: "guest-shutdown" }, timestamp: { seconds: 2, microseconds: 5 } });
    expect(await shutdown).toMatchObject({ event: "SHUTDOWN", data: { guest: true }, timestampMicros: 2_000_005 });
    expect(heard).toEqual(["POWERDOWN", "SHUTDOWN"]);
    client.close();
  });

  it("times a command out with ETIMEOUT and ignores its late answer", async () => {
    const late: Command[] = [];
    fake.onCommand = (command, socket) => {
      if (command.execute === "slow") late.push(command);
      else reply(socket, { return: "fast", id: command.id });
    };
    const client = await QmpClient.connect(socketPath);
    const error = await client.execute("slow", undefined, { timeoutMs: 50 }).catch((caught: unknown) => caught);
    expect(isQmpError(error, "ETIMEOUT")).toBe(true);
    reply(fake.sockets[0] as Socket, { return: "late", id: late[0]?.id });
    expect(await client.execute("quick")).toBe("fast");
    client.close();
  });

  it("times out connecting when no greeting comes (QEMU's monitor is busy with another client)", async () => {
    fake.sendGreeting = false;
    const error = await QmpClient.connect(socketPath, { timeoutMs: 100 }).catch((caught: unknown) => caught);
    expect(isQmpError(error, "ETIMEOUT")).toBe(true);
  });

  it("rejects pending commands and waits with ECLOSED when QEMU goes away", async () => {
    fake.onCommand = (_command, socket) => socket.destroy();
    const client = await QmpClient.connect(socketPath);
    const event = client.waitForEvent("SHUTDOWN", { timeoutMs: 5_000 });
    const error = await client.execute("quit").catch((caught: unknown) => caught);
    expect(isQmpError(error, "ECLOSED")).toBe(true);
    await expect(event).rejects.toMatchObject({ code: "ECLOSED" });
    await expect(client.execute("query-status")).rejects.toMatchObject({ code: "ECLOSED" });
  });

  it("ends the session with EPROTOCOL on bytes that are not QMP", async () => {
    fake.onCommand = (_command, socket) => socket.write("this is not json\r\n");
    const client = await QmpClient.connect(socketPath);
    await expect(client.execute("query-status")).rejects.toMatchObject({ code: "EPROTOCOL" });
    expect(client.state).toBe(QmpState.CLOSED);
  });

  it("says ECONNECT when nobody listens, and qmpExecute runs one command and closes", async () => {
    await expect(QmpClient.connect(join(dir, "absent.sock"))).rejects.toMatchObject({ code: "ECONNECT" });
    fake.onCommand = (command, socket) => reply(socket, { return: { ok: command.arguments }, id: command.id });
    expect(await qmpExecute(socketPath, "set_password", { protocol: "vnc", password: "x" })).toEqual({ ok: { protocol: "vnc", password: "x" } });
    await new Promise<void>((resolve) => (fake.sockets[0] as Socket).once("close", () => resolve()));
  });
});
