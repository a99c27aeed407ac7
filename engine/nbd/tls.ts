/**
 * TLS (proto.md "TLS support"): X.509 certificates from configuration, checked once at
 * startup, and the in-session upgrade after STARTTLS.
 *
 *   tlsConfigFrom(files, mode) ── read, parse, match key to certificate ──► TlsConfig
 *   Session: STARTTLS ─► ACK ─► upgradeToTls(raw socket) ─► TLSSocket ─► option haggling
 *                                                           goes on inside TLS
 *
 * Modes, in proto.md's terms: "require" is FORCEDTLS (every option but STARTTLS and ABORT
 * gets ERR_TLS_REQD until TLS is up; EXPORT_NAME closes), "optional" is SELECTIVETLS with no
 * TLS-only export (plaintext works as without TLS; a client may upgrade), and no config is
 * NOTLS (STARTTLS gets ERR_POLICY). With a CA, every client must present a certificate the CA
 * signed, or its handshake fails (qemu's `verify-peer`).
 *
 * Why a tls.Server per upgrade, not `new TLSSocket(socket, { isServer: true, requestCert,
 * rejectUnauthorized })`: a bare server-side TLSSocket asks for the client's certificate but
 * never rejects one that fails verification (Node checks the chain only on tls.Server's
 * connection path). Emitting 'connection' on a tls.Server is Node's documented way to hand it
 * a socket; one server per upgrade is how we learn which socket succeeded or failed. It costs
 * about 0.5 ms (parsing the PEM files into a context), against a few ms of handshake.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { access, readFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { join } from "node:path";
import { createSecureContext, createServer, type TLSSocket, type TlsOptions } from "node:tls";
import { EngineError } from "../errors.ts";

export const TlsMode = { OFF: "off", OPTIONAL: "optional", REQUIRE: "require" } as const;
export type TlsMode = (typeof TlsMode)[keyof typeof TlsMode];

export function isTlsMode(text: string): text is TlsMode {
  return (Object.values(TlsMode) as string[]).includes(text);
}

/** PEM files: the server's certificate (chain) and key, and the CA that signs client certificates. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Given: clients must present a certificate this CA signed (verify-peer). */
  caFile?: string | undefined;
}

export interface TlsConfig {
  readonly mode: typeof TlsMode.OPTIONAL | typeof TlsMode.REQUIRE;
  readonly files: TlsFiles;
  /** Client certificates are required and verified against files.caFile. */
  readonly verifyPeer: boolean;
  /** The server certificate's subject and expiry, for the startup message. */
  readonly subject: string;
  readonly validTo: Date;
  readonly serverOptions: TlsOptions;
}

/** What `okeanos nbd serve` (or any caller) was given; checked as a whole by tlsConfigFromOptions. */
export interface TlsSettings {
  mode?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  caFile?: string | undefined;
  /** qemu's layout (tls-creds-x509 dir=): server-cert.pem, server-key.pem, ca-cert.pem. */
  dir?: string | undefined;
}

/**
 * Settings → config, or undefined for no TLS. The mode defaults to "require" when files are
 * given (as qemu-nbd's --tls-creds does), "off" otherwise.
 */
export async function tlsConfigFromOptions(settings: TlsSettings): Promise<TlsConfig | undefined> {
  const { certFile, keyFile, caFile, dir } = settings;
  const explicit = certFile !== undefined || keyFile !== undefined || caFile !== undefined;
  if (dir !== undefined && explicit) throw invalid("give a TLS directory or certificate files, not both");
  const given = dir !== undefined || explicit;
  const mode = settings.mode ?? (given ? TlsMode.REQUIRE : TlsMode.OFF);
  if (!isTlsMode(mode)) throw invalid(`TLS mode ${JSON.stringify(mode)} is not one of ${Object.values(TlsMode).join(", ")}`);
  if (mode === TlsMode.OFF) {
    if (given) throw invalid("TLS is off, yet certificates were given: drop one or the other");
    return undefined;
  }
  const files = dir !== undefined ? await tlsFilesInDirectory(dir) : { certFile, keyFile, caFile };
  if (files.certFile === undefined || files.keyFile === undefined) {
    throw invalid(`TLS mode ${mode} needs a certificate and its private key (or a directory holding server-cert.pem and server-key.pem)`);
  }
  return tlsConfigFrom({ certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile }, mode);
}

/**
 * qemu's tls-creds-x509 layout for a server: server-cert.pem and server-key.pem, and
 * ca-cert.pem, which (as qemu's default verify-peer=on) makes client certificates required.
 */
export async function tlsFilesInDirectory(dir: string): Promise<TlsFiles> {
  const caFile = join(dir, "ca-cert.pem");
  const caPresent = await access(caFile).then(
    () => true,
    () => false,
  );
  return { certFile: join(dir, "server-cert.pem"), keyFile: join(dir, "server-key.pem"), caFile: caPresent ? caFile : undefined };
}

/** Reads and checks the files once, so a bad one fails at startup rather than at every client. */
export async function tlsConfigFrom(files: TlsFiles, mode: TlsConfig["mode"]): Promise<TlsConfig> {
  const certPem = await readPem(files.certFile, "certificate");
  const keyPem = await readPem(files.keyFile, "private key");
  const caPem = files.caFile === undefined ? undefined : await readPem(files.caFile, "CA certificate");
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certPem);
  } catch (error) {
    throw invalid(`${files.certFile} is not a PEM X.509 certificate (${messageOf(error)})`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    throw invalid(`${files.keyFile} is not an unencrypted PEM private key (${messageOf(error)})`);
  }
  if (!certificate.checkPrivateKey(key)) throw invalid(`the private key ${files.keyFile} does not belong to the certificate ${files.certFile}`);
  const now = Date.now();
  if (certificate.validToDate.getTime() < now) throw invalid(`the certificate ${files.certFile} expired on ${certificate.validToDate.toISOString()}`);
  if (certificate.validFromDate.getTime() > now) throw invalid(`the certificate ${files.certFile} is not valid before ${certificate.validFromDate.toISOString()}`);
  if (caPem !== undefined) checkCa(caPem, files.caFile as string);
  const verifyPeer = caPem !== undefined;
  const serverOptions: TlsOptions = {
    key: keyPem,
    cert: certPem,
    ...(caPem === undefined ? {} : { ca: caPem }),
    // proto.md "TLS versions": TLS 1.2 MUST, later SHOULD, older SHOULD NOT by default.
    minVersion: "TLSv1.2",
    requestCert: verifyPeer,
    rejectUnauthorized: verifyPeer,
  };
  try {
    createSecureContext(serverOptions); // whatever else OpenSSL refuses, refuse it now
  } catch (error) {
    throw invalid(`cannot use ${files.certFile} / ${files.keyFile}${verifyPeer ? ` / ${files.caFile}` : ""}: ${messageOf(error)}`);
  }
  return { mode, files, verifyPeer, subject: certificate.subject.replaceAll("\n", ", "), validTo: certificate.validToDate, serverOptions };
}

export type TlsUpgrade = { ok: true; socket: TLSSocket } | { ok: false; reason: string };

/**
 * Runs the server side of a TLS handshake on `socket` (whose 'data' listeners the caller has
 * removed) and calls `done` exactly once: with the TLSSocket to use from now on, or with why
 * the handshake failed (the socket is destroyed then). Node feeds bytes the socket had
 * buffered, and finishes a write still queued on it, before TLS takes the stream over.
 */
export function upgradeToTls(socket: Socket, config: TlsConfig, done: (outcome: TlsUpgrade) => void): void {
  let settled = false;
  const settle = (outcome: TlsUpgrade) => {
    if (settled) return;
    settled = true;
    done(outcome);
  };
  const server = createServer(config.serverOptions);
  server.once("secureConnection", (tlsSocket: TLSSocket) => {
    tlsSocket.disableRenegotiation(); // a renegotiation is only a way to make us burn CPU
    settle({ ok: true, socket: tlsSocket });
  });
  server.once("tlsClientError", (error: Error, tlsSocket: TLSSocket) => {
    tlsSocket.destroy();
    // A certificate that does not verify closes the socket "cleanly": the reason is here.
    const authorization = tlsSocket.authorizationError;
    settle({ ok: false, reason: authorization === null || authorization === undefined ? messageOf(error) : `client certificate rejected: ${String(authorization)}` });
  });
  server.emit("connection", socket);
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw invalid(`cannot read the TLS ${what} ${path}: ${messageOf(error)}`);
  }
}

/** Every certificate in the CA file must parse, and at least one must be a CA. */
function checkCa(caPem: Buffer, caFile: string): void {
  const blocks = caPem.toString("latin1").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw invalid(`${caFile} holds no PEM certificate`);
  const certificates = blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw invalid(`${caFile} holds a certificate that does not parse (${messageOf(error)})`);
    }
  });
  if (!certificates.some((certificate) => certificate.ca)) throw invalid(`${caFile} holds no CA certificate (basicConstraints CA:TRUE)`);
}

function invalid(message: string): EngineError {
  return new EngineError("EINVALID", message);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
