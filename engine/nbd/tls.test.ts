/**
 * TLS (STARTTLS with X.509 certificates): a throwaway PKI from `openssl` (testing/pki.ts), one
 * server requiring TLS and client certificates, one offering it optionally without; driven by
 * the raw client (every reply the spec asks for, and the connections it must close), by
 * nbdinfo and qemu-io over TLS, and through `okeanos nbd serve --tls-dir`. With CI=true a
 * missing tool fails the file; otherwise the tests that need it are skipped loudly.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../engine.ts";
import { openObjectStore } from "../blocker/open-store.ts";
import { Command, Option, OptionReply, TransmissionFlag } from "./protocol.ts";
import { NbdServer } from "./server.ts";
import { infoRequestData, metaContextData, optionFrame } from "./testing/frames.ts";
import { makeTestPki, type TestPki } from "./testing/pki.ts";
import { RawClient } from "./testing/raw-client.ts";
import { requireTools, runTool, runToolOk } from "./testing/require-tool.ts";
import { tlsConfigFrom, tlsConfigFromOptions, tlsFilesInDirectory } from "./tls.ts";

const opensslAvailable = requireTools("openssl");
const clientsAvailable = opensslAvailable && requireTools("nbdinfo", "qemu-io");

const blockSizeBytes = 64 * 1024;
const volumeBytes = 16 * blockSizeBytes;

let dir: string;
let pki: TestPki;
let engine: Engine;
/** TLS required, client certificates verified against the test CA. */
let required: NbdServer;
let requiredSocket: string;
/** TLS optional, no client certificates. */
let optional: NbdServer;
let optionalSocket: string;

beforeAll(async () => {
  if (!opensslAvailable) return;
  dir = await mkdtemp(join(tmpdir(), "okeanos-nbd-tls-"));
  pki = await makeTestPki(join(dir, "pki"));
  engine = await Engine.init(await openObjectStore(`file:${join(dir, "store")}`, { create: true }), { blockSizeBytes });
  for (const name of ["secure", "either", "cli-vol"]) await engine.createVolume(name, volumeBytes);
  requiredSocket = join(dir, "required.sock");
  required = new NbdServer({
    engine,
    exports: ["secure"],
    socketPath: requiredSocket,
    tcp: { port: 0, host: "127.0.0.1" },
    tls: await tlsConfigFrom({ certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert }, "require"),
  });
  await required.listen();
  optionalSocket = join(dir, "optional.sock");
  optional = new NbdServer({
    engine,
    exports: ["either"],
    socketPath: optionalSocket,
    tls: await tlsConfigFrom({ certFile: pki.serverCert, keyFile: pki.serverKey }, "optional"),
  });
  await optional.listen();
}, 60_000);

afterAll(async () => {
  await required?.close();
  await optional?.close();
  await engine?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** The client's side: trust the test CA, check the name "localhost", present `identity`'s certificate. */
async function clientTls(identity: "client" | "rogue" | "none") {
  const ca = await readFile(pki.caCert);
  if (identity === "none") return { ca, servername: "localhost" };
  const [cert, key] = identity === "client" ? [pki.clientCert, pki.clientKey] : [pki.rogueCert, pki.rogueKey];
  return { ca, servername: "localhost", cert: await readFile(cert), key: await readFile(key) };
}

/** Connects, handshakes, STARTTLS → ACK, then the TLS handshake. */
async function connectTls(socketPath: string, identity: "client" | "rogue" | "none" = "client"): Promise<RawClient> {
  const client = await RawClient.connect(socketPath);
  await client.handshake();
  expect((await client.option(Option.STARTTLS)).map((reply) => reply.type)).toEqual([OptionReply.ACK]);
  await client.startTls(await clientTls(identity));
  return client;
}

async function only(client: RawClient, option: number, data?: Buffer): Promise<number> {
  const replies = await client.option(option, data);
  expect(replies).toHaveLength(1);
  return replies[0]!.type;
}

/** After GO: a WRITE and a READ of one block, simple replies. */
async function writeAndReadBack(client: RawClient, fill: number): Promise<void> {
  const payload = Buffer.alloc(blockSizeBytes, fill);
  client.request({ type: Command.WRITE, cookie: 1n, offsetBytes: blockSizeBytes, lengthBytes: blockSizeBytes }, payload);
  expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: 1n });
  client.request({ type: Command.READ, cookie: 2n, offsetBytes: blockSizeBytes, lengthBytes: blockSizeBytes });
  expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: 2n });
  expect((await client.read(blockSizeBytes)).equals(payload)).toBe(true);
}

/** The server still takes clients: a full TLS session (GO, I/O, DISC) works. */
async function expectServing(): Promise<void> {
  const client = await connectTls(requiredSocket);
  expect((await client.option(Option.GO, infoRequestData("secure"))).at(-1)!.type).toBe(OptionReply.ACK);
  await writeAndReadBack(client, 0x33);
  client.request({ type: Command.DISC });
  expect(await client.closesWithin()).toBe(true);
}

describe.skipIf(!opensslAvailable)("TLS configuration", () => {
  it("loads a certificate, its key and a CA; qemu's directory layout gives the same", async () => {
    const config = await tlsConfigFrom({ certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert }, "require");
    expect(config).toMatchObject({ mode: "require", verifyPeer: true, subject: "CN=localhost" });
    expect(config.validTo.getTime()).toBeGreaterThan(Date.now());
    expect(await tlsFilesInDirectory(pki.serverDir)).toEqual({
      certFile: join(pki.serverDir, "server-cert.pem"),
      keyFile: join(pki.serverDir, "server-key.pem"),
      caFile: join(pki.serverDir, "ca-cert.pem"),
    });
    expect(await tlsConfigFromOptions({ dir: pki.serverDir })).toMatchObject({ mode: "require", verifyPeer: true });
    expect(await tlsConfigFromOptions({ mode: "optional", certFile: pki.serverCert, keyFile: pki.serverKey })).toMatchObject({ mode: "optional", verifyPeer: false });
    expect(await tlsConfigFromOptions({})).toBeUndefined();
    expect(await tlsConfigFromOptions({ mode: "off" })).toBeUndefined();
  });

  it.each([
    ["an unreadable certificate", () => ({ mode: "require", certFile: join(dir, "missing.pem"), keyFile: pki.serverKey }), /cannot read the TLS certificate .*missing\.pem/],
    ["a key that is not the certificate's", () => ({ certFile: pki.serverCert, keyFile: pki.clientKey }), /private key .*client-key\.pem does not belong to the certificate/],
    ["a key file given as the certificate", () => ({ certFile: pki.serverKey, keyFile: pki.serverKey }), /server-key\.pem is not a PEM X\.509 certificate/],
    ["a certificate given as the key", () => ({ certFile: pki.serverCert, keyFile: pki.serverCert }), /server-cert\.pem is not an unencrypted PEM private key/],
    ["a CA file without certificates", () => ({ certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.serverKey }), /holds no PEM certificate/],
    ["a CA file holding no CA", () => ({ certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.clientCert }), /holds no CA certificate/],
    ["an unknown mode", () => ({ mode: "maybe", certFile: pki.serverCert, keyFile: pki.serverKey }), /not one of off, optional, require/],
    ["TLS off with certificates", () => ({ mode: "off", certFile: pki.serverCert, keyFile: pki.serverKey }), /TLS is off, yet certificates were given/],
    ["TLS required without certificates", () => ({ mode: "require" }), /needs a certificate and its private key/],
    ["a certificate without its key", () => ({ certFile: pki.serverCert }), /needs a certificate and its private key/],
    ["a directory and files", () => ({ dir: pki.serverDir, certFile: pki.serverCert }), /not both/],
  ])("refuses %s at startup, with a clear message", async (_what, settings, message) => {
    await expect(tlsConfigFromOptions(settings())).rejects.toThrow(message);
  });
});

describe.skipIf(!opensslAvailable)("TLS required (FORCEDTLS), raw client", () => {
  it("answers every option but STARTTLS and ABORT with ERR_TLS_REQD before TLS; STARTTLS with data is ERR_INVALID", async () => {
    const client = await RawClient.connect(requiredSocket);
    await client.handshake();
    expect(await only(client, Option.LIST)).toBe(OptionReply.ERR_TLS_REQD);
    expect(await only(client, Option.INFO, infoRequestData("secure"))).toBe(OptionReply.ERR_TLS_REQD);
    expect(await only(client, Option.GO, infoRequestData("secure"))).toBe(OptionReply.ERR_TLS_REQD);
    expect(await only(client, Option.GO, infoRequestData("no-such-export"))).toBe(OptionReply.ERR_TLS_REQD);
    expect(await only(client, Option.STRUCTURED_REPLY)).toBe(OptionReply.ERR_TLS_REQD);
    expect(await only(client, Option.LIST_META_CONTEXT, metaContextData("secure", []))).toBe(OptionReply.ERR_TLS_REQD);
    expect(await only(client, 99, Buffer.from("unknown"))).toBe(OptionReply.ERR_TLS_REQD);
    expect(await only(client, Option.STARTTLS, Buffer.from("x"))).toBe(OptionReply.ERR_INVALID);
    // Still haggling, still in plaintext: STARTTLS proper works now.
    expect(await only(client, Option.STARTTLS)).toBe(OptionReply.ACK);
    await client.startTls(await clientTls("client"));
    client.destroy();
  });

  it("runs option haggling and transmission inside TLS; a second STARTTLS is ERR_INVALID", async () => {
    const client = await connectTls(requiredSocket);
    expect(await only(client, Option.STARTTLS)).toBe(OptionReply.ERR_INVALID);
    const list = await client.option(Option.LIST);
    expect(list.map((reply) => reply.type)).toEqual([OptionReply.SERVER, OptionReply.ACK]);
    expect(await only(client, Option.STRUCTURED_REPLY)).toBe(OptionReply.ACK);
    const go = await client.option(Option.GO, infoRequestData("secure"));
    expect(go.at(-1)!.type).toBe(OptionReply.ACK);
    const exportInfo = go.find((reply) => reply.type === OptionReply.INFO && reply.data.readUInt16BE(0) === 0)!;
    expect(Number(exportInfo.data.readBigUInt64BE(2))).toBe(volumeBytes);
    expect(exportInfo.data.readUInt16BE(10) & TransmissionFlag.SEND_DF).toBeTruthy(); // structured replies negotiated inside TLS
    const payload = Buffer.alloc(blockSizeBytes, 0x5a);
    client.request({ type: Command.WRITE, cookie: 7n, offsetBytes: 0, lengthBytes: blockSizeBytes }, payload);
    const [done] = await client.readStructuredReply();
    expect(done).toMatchObject({ cookie: 7n });
    client.request({ type: Command.DISC });
    expect(await client.closesWithin()).toBe(true);
  });

  it("closes on EXPORT_NAME before TLS, without a reply (proto.md: the server MUST disconnect)", async () => {
    const client = await RawClient.connect(requiredSocket);
    await client.handshake();
    client.send(optionFrame(Option.EXPORT_NAME, Buffer.from("secure")));
    expect(await client.closesWithin()).toBe(true);
    await expect(client.read(1)).rejects.toThrow(/closed with 0 of 1 bytes/);
  });

  it("acknowledges ABORT before TLS, then closes", async () => {
    const client = await RawClient.connect(requiredSocket);
    await client.handshake();
    expect(await only(client, Option.ABORT)).toBe(OptionReply.ACK);
    expect(await client.closesWithin()).toBe(true);
  });

  it("closes a connection that sends garbage instead of a ClientHello, and goes on serving", async () => {
    const client = await RawClient.connect(requiredSocket);
    await client.handshake();
    expect(await only(client, Option.STARTTLS)).toBe(OptionReply.ACK);
    client.send(Buffer.from("this is not a TLS ClientHello, not at all\r\n".repeat(8)));
    expect(await client.closesWithin()).toBe(true);
    await expectServing();
  });

  it("closes a connection that sends bytes after STARTTLS without waiting for the ACK", async () => {
    const client = await RawClient.connect(requiredSocket);
    await client.handshake();
    client.send(Buffer.concat([optionFrame(Option.STARTTLS), optionFrame(Option.LIST)]));
    expect((await client.readOptionReply()).type).toBe(OptionReply.ACK);
    expect(await client.closesWithin()).toBe(true);
    await expectServing();
  });

  it.each([
    ["no client certificate", "none"],
    ["a client certificate our CA did not sign", "rogue"],
  ] as const)("fails the handshake of a client with %s, and goes on serving", async (_what, identity) => {
    const client = await RawClient.connect(requiredSocket);
    await client.handshake();
    expect(await only(client, Option.STARTTLS)).toBe(OptionReply.ACK);
    // TLS 1.3: the client may finish its side before the server has judged its certificate;
    // either way no option is ever answered and the connection closes.
    const handshake = await client.startTls(await clientTls(identity)).then(
      () => "done",
      (error: Error) => error.message,
    );
    if (handshake === "done") {
      client.send(optionFrame(Option.LIST));
      await expect(client.readOptionReply()).rejects.toThrow(/closed/);
    }
    expect(await client.closesWithin()).toBe(true);
    await expectServing();
  });

  it("a client that stalls in the TLS handshake is closed by the handshake timeout", async () => {
    const server = new NbdServer({
      engine,
      exports: ["secure"],
      socketPath: join(dir, "timeout.sock"),
      handshakeTimeoutMs: 300,
      tls: await tlsConfigFrom({ certFile: pki.serverCert, keyFile: pki.serverKey }, "require"),
    });
    await server.listen();
    try {
      const client = await RawClient.connect(join(dir, "timeout.sock"));
      await client.handshake();
      expect(await only(client, Option.STARTTLS)).toBe(OptionReply.ACK);
      expect(server.connections.map((connection) => connection.state)).toEqual(["TLS_HANDSHAKE"]);
      expect(await client.closesWithin(3000)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it("graceful shutdown closes a connection in the middle of its TLS handshake", async () => {
    const socketPath = join(dir, "shutdown.sock");
    const server = new NbdServer({ engine, exports: ["secure"], socketPath, tls: await tlsConfigFrom({ certFile: pki.serverCert, keyFile: pki.serverKey }, "require") });
    await server.listen();
    const client = await RawClient.connect(socketPath);
    await client.handshake();
    expect(await only(client, Option.STARTTLS)).toBe(OptionReply.ACK);
    await server.close();
    expect(await client.closesWithin()).toBe(true);
  });
});

describe.skipIf(!opensslAvailable)("TLS optional (SELECTIVETLS, no TLS-only export), raw client", () => {
  it("serves plaintext clients as without TLS", async () => {
    const client = await RawClient.connect(optionalSocket);
    await client.open("either");
    await writeAndReadBack(client, 0x11);
    client.request({ type: Command.DISC });
    expect(await client.closesWithin()).toBe(true);
  });

  it("upgrades on STARTTLS without a client certificate, forgetting what was negotiated before", async () => {
    const client = await RawClient.connect(optionalSocket);
    await client.handshake();
    expect(await only(client, Option.STRUCTURED_REPLY)).toBe(OptionReply.ACK);
    expect(await only(client, Option.STARTTLS)).toBe(OptionReply.ACK);
    await client.startTls(await clientTls("none"));
    // proto.md "NBD_OPT_STARTTLS": structured replies from before TLS are gone.
    expect(await only(client, Option.SET_META_CONTEXT, metaContextData("either", ["base:allocation"]))).toBe(OptionReply.ERR_INVALID);
    expect(await only(client, Option.STRUCTURED_REPLY)).toBe(OptionReply.ACK);
    expect(await only(client, Option.STARTTLS)).toBe(OptionReply.ERR_INVALID);
    client.send(optionFrame(Option.GO, infoRequestData("either")));
    let reply = await client.readOptionReply();
    while (reply.type === OptionReply.INFO) reply = await client.readOptionReply();
    expect(reply.type).toBe(OptionReply.ACK);
    client.request({ type: Command.DISC });
    expect(await client.closesWithin()).toBe(true);
  });
});

describe.skipIf(!clientsAvailable)("real clients over TLS", () => {
  const tlsUri = (socketPath: string, name: string, certificates: string) =>
    `nbds+unix:///${name}?socket=${socketPath}&tls-certificates=${certificates}`;
  const qemuTlsArgs = (socketPath: string, name: string, certificates: string) => [
    "--object",
    `tls-creds-x509,id=tls0,endpoint=client,dir=${certificates}`,
    "--image-opts",
    // qemu checks the server's name even over a unix socket, so it needs one to check.
    `driver=nbd,server.type=unix,server.path=${socketPath},export=${name},tls-creds=tls0,tls-hostname=localhost`,
  ];

  it("nbdinfo over TLS reports the export; the URI the server prints is nbds", async () => {
    expect(required.uris("secure")[0]).toBe(`nbds+unix:///secure?socket=${requiredSocket}`);
    const info = JSON.parse(await runToolOk("nbdinfo", ["--json", tlsUri(requiredSocket, "secure", pki.clientDir)])) as {
      TLS: boolean;
      exports: Array<{ "export-name": string; "export-size": number; can_multi_conn: boolean }>;
    };
    expect(info.TLS).toBe(true);
    expect(info.exports).toEqual([expect.objectContaining({ "export-name": "secure", "export-size": volumeBytes, can_multi_conn: true })]);
  });

  it("nbdinfo and qemu-io over TCP, the client checking the server's name against its certificate", async () => {
    const port = required.addresses.flatMap((address) => (address.kind === "tcp" ? [address.port] : []))[0]!;
    expect(required.uris("secure")).toContain(`nbds://127.0.0.1:${port}/secure`);
    const info = JSON.parse(await runToolOk("nbdinfo", ["--json", `nbds://localhost:${port}/secure?tls-certificates=${pki.clientDir}`])) as { TLS: boolean };
    expect(info.TLS).toBe(true);
    await runToolOk("qemu-io", [
      "--object",
      `tls-creds-x509,id=tls0,endpoint=client,dir=${pki.clientDir}`,
      "--image-opts",
      `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${port},export=secure,tls-creds=tls0`,
      "-c",
      "read 0 64k",
    ]);
    const wrongName = await runTool("qemu-io", [
      "--object",
      `tls-creds-x509,id=tls0,endpoint=client,dir=${pki.clientDir}`,
      "--image-opts",
      `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${port},export=secure,tls-creds=tls0,tls-hostname=other.example`,
      "-c",
      "read 0 512",
    ]);
    expect(wrongName.code).not.toBe(0);
    expect(wrongName.stderr).toMatch(/other\.example/);
  });

  it("nbdinfo in plaintext, or with a certificate our CA did not sign, is refused", async () => {
    const plain = await runTool("nbdinfo", [`nbd+unix:///secure?socket=${requiredSocket}`], { env: { LIBNBD_DEBUG: "1" } });
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toContain("this server requires TLS"); // our ERR_TLS_REQD message, as libnbd logs it
    const rogue = await runTool("nbdinfo", [tlsUri(requiredSocket, "secure", pki.rogueDir)]);
    expect(rogue.code).not.toBe(0);
  });

  it("nbdinfo works both ways against the optional server", async () => {
    const plain = JSON.parse(await runToolOk("nbdinfo", ["--json", `nbd+unix:///either?socket=${optionalSocket}`])) as { TLS: boolean };
    expect(plain.TLS).toBe(false);
    const secure = JSON.parse(await runToolOk("nbdinfo", ["--json", tlsUri(optionalSocket, "either", pki.clientDir)])) as { TLS: boolean };
    expect(secure.TLS).toBe(true);
  });

  it("qemu-io writes and reads back a pattern over TLS; without tls-creds it is refused", async () => {
    const output = await runToolOk("qemu-io", [
      ...qemuTlsArgs(requiredSocket, "secure", pki.clientDir),
      "-c",
      "write -P 0x5a 0 64k",
      "-c",
      "read -P 0x5a 0 64k",
      "-c",
      "write -P 0xa5 300k 200k",
      "-c",
      "read -P 0xa5 300k 200k",
    ]);
    expect(output).not.toMatch(/fail|error/i);
    const plain = await runTool("qemu-io", ["-f", "raw", `nbd+unix:///secure?socket=${requiredSocket}`, "-c", "read 0 512"]);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/TLS negotiation required/);
    const rogue = await runTool("qemu-io", [...qemuTlsArgs(requiredSocket, "secure", pki.rogueDir), "-c", "read 0 512"]);
    expect(rogue.code).not.toBe(0);
  });
});

describe.skipIf(!clientsAvailable)("okeanos nbd serve --tls", () => {
  const entry = join(import.meta.dirname, "..", "..", "bin", "okeanos.js");
  const serve = (...args: string[]) => spawn(process.execPath, [entry, "--store", `file:${join(dir, "store")}`, "nbd", "serve", ...args], { stdio: ["ignore", "pipe", "pipe"] });

  it("serves with qemu's certificate directory until SIGTERM", async () => {
    const cliSocket = join(dir, "cli.sock");
    const child = serve("cli-vol", "--socket", cliSocket, "--tls-dir", pki.serverDir);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const deadline = Date.now() + 20_000;
    while (!stdout.includes("SIGINT or SIGTERM")) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`okeanos nbd serve did not start:\n${stdout}\n${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(stdout).toContain(`nbds+unix:///cli-vol?socket=${cliSocket}`);
    expect(stdout).toContain("TLS required: CN=localhost");
    expect(stdout).toContain(`client certificates must be signed by ${join(pki.serverDir, "ca-cert.pem")}`);
    const info = JSON.parse(await runToolOk("nbdinfo", ["--json", `nbds+unix:///cli-vol?socket=${cliSocket}&tls-certificates=${pki.clientDir}`])) as { TLS: boolean };
    expect(info.TLS).toBe(true);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("refuses to start with a key that does not match the certificate, naming both files", async () => {
    const child = serve("cli-vol", "--socket", join(dir, "bad.sock"), "--tls-cert", pki.serverCert, "--tls-key", pki.clientKey);
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", (exitCode) => resolve(exitCode)));
    expect(code).not.toBe(0);
    expect(stderr).toContain(`the private key ${pki.clientKey} does not belong to the certificate ${pki.serverCert}`);
  });
});
