/**
 * RFB's handshake phase (RFC 6143 7.1, 7.2) on both sides of the console proxy, as two small
 * resumable state machines that do no I/O: bytes go in with push(), bytes to send and the
 * outcome come back as events.
 *
 *   websocket client ◄── ClientFacingHandshake ──► proxy ◄── UpstreamLogin ──► QEMU's VNC
 *     (security None: the console token            (VNC Authentication with the
 *      in the URL was the credential)                per-console password)
 *
 * UpstreamLogin, the proxy as an RFB client of QEMU:
 *
 *   awaitVersion ─► awaitSecurityTypes ─► awaitChallenge ─► awaitSecurityResult ─► ready
 *                   (3.3: awaitSecurityType,                └─► awaitFailureReason ─► failed
 *                    a u32 the server chose)     any stage: a refusal, bad bytes ─► failed
 *
 * ClientFacingHandshake, the proxy as an RFB server to the websocket client. Its greeting goes
 * out at once; it answers the client's version only once the upstream login has an outcome,
 * so a failed login reaches the client as RFB's own failure (a reason string noVNC shows):
 *
 *   awaitVersion ─► awaitUpstream ─► awaitSecurityType (3.7, 3.8) ─► ready
 *                        │        └─► ready (3.3: the server names None)
 *                        └─ upstream failed: security failure + reason ─► failed
 *
 * After `ready` both sides speak the initialisation phase (ClientInit, ServerInit) and the
 * normal protocol, which the proxy relays unchanged; bytes that arrived past the handshake
 * come with the `ready` event.
 */
import { vncAuthResponse, vncChallengeBytes } from "./vnc-des.ts";

/** RFC 6143 7.1.1: "RFB 003.008\n", twelve bytes. */
export const protocolVersionBytes = 12;
const protocolVersionPattern = /^RFB (\d{3})\.(\d{3})\n$/;
/** The versions whose handshakes differ (RFC 6143 7.1.1, Appendix A). */
export type RfbVersion = "3.3" | "3.7" | "3.8";
/** RFC 6143 7.1.2 and 8.1.2: the security types we speak. */
export const SecurityType = { invalid: 0, none: 1, vncAuthentication: 2 } as const;
/** RFC 6143 7.1.3. */
export const SecurityResult = { ok: 0, failed: 1 } as const;
/**
 * A failure reason string: QEMU's are a few words ("Authentication failed"); 4 KiB allows
 * any server's sentence and refuses a length field that is really garbage.
 */
export const reasonBytesMax = 4096;
/**
 * Bytes a peer may send ahead during the handshake: a client has nothing to send before
 * SecurityResult but its ClientInit (1 byte) and, eagerly, a few messages; 64 KiB bounds a
 * peer that is not speaking RFB.
 */
export const handshakeBufferedBytesMax = 64 * 1024;

export type HandshakeEvent =
  | { kind: "send"; bytes: Buffer }
  /** The handshake is done; `rest` arrived after it and belongs to the relayed stream. */
  | { kind: "ready"; rest: Buffer }
  | { kind: "failed"; failure: HandshakeFailure };

/**
 * Why a handshake failed. EAUTH: the server refused our password; ENO_VNC_AUTH: the server
 * offers no VNC Authentication; EREFUSED: the server refused the connection (with its reason);
 * EPROTOCOL: the peer does not speak RFB as we do (bad version, a type we did not offer…);
 * EUPSTREAM: (client side) the login to the server failed, the reason says how.
 */
export interface HandshakeFailure {
  code: "EAUTH" | "ENO_VNC_AUTH" | "EREFUSED" | "EPROTOCOL" | "EUPSTREAM";
  reason: string;
}

// ── messages ─────────────────────────────────────────────────────────────────────────────

export function encodeProtocolVersion(version: RfbVersion): Buffer {
  return Buffer.from(`RFB 003.00${version.slice(2)}\n`, "latin1");
}

/**
 * The version a ProtocolVersion message announces, or `undefined` when it is not one. RFC 6143
 * 7.1.1: versions other than 3.3, 3.7 and 3.8 "should be interpreted as 3.3" — except that a
 * later 3.x is at least 3.8 to us (Apple's 3.889 speaks 3.8's handshake).
 */
export function parseProtocolVersion(bytes: Buffer): RfbVersion | undefined {
  const match = protocolVersionPattern.exec(bytes.toString("latin1"));
  if (match === null || Number(match[1]) !== 3) return undefined;
  const minor = Number(match[2]);
  return minor >= 8 ? "3.8" : minor === 7 ? "3.7" : "3.3";
}

function encodeReason(reason: string): Buffer {
  const text = Buffer.from(reason, "utf8").subarray(0, reasonBytesMax);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(text.length);
  return Buffer.concat([length, text]);
}

/** 3.7 and 3.8's list of security types (RFC 6143 7.1.2). */
export function encodeSecurityTypes(types: readonly number[]): Buffer {
  return Buffer.from([types.length, ...types]);
}

/** The server's refusal before any security: 3.7+ a zero-length type list, 3.3 type 0; then the reason. */
export function encodeConnectionFailed(version: RfbVersion, reason: string): Buffer {
  const head = version === "3.3" ? Buffer.alloc(4) : Buffer.from([0]);
  return Buffer.concat([head, encodeReason(reason)]);
}

/** 3.3's security type, chosen by the server: a u32. */
export function encodeSecurityType33(type: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(type);
  return bytes;
}

/** SecurityResult; a failure carries its reason from 3.8 on. */
export function encodeSecurityResult(ok: boolean, version: RfbVersion = "3.8", reason = ""): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(ok ? SecurityResult.ok : SecurityResult.failed);
  return ok || version !== "3.8" ? head : Buffer.concat([head, encodeReason(reason)]);
}

// ── input buffering ──────────────────────────────────────────────────────────────────────

/** The bytes received and not yet consumed: handshake messages are tiny, so one Buffer. */
class Input {
  #bytes: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.#bytes = this.#bytes.length === 0 ? chunk : Buffer.concat([this.#bytes, chunk]);
  }

  get length(): number {
    return this.#bytes.length;
  }

  peek(index: number): number | undefined {
    return this.#bytes[index];
  }

  take(count: number): Buffer | undefined {
    if (this.#bytes.length < count) return undefined;
    const taken = this.#bytes.subarray(0, count);
    this.#bytes = this.#bytes.subarray(count);
    return taken;
  }

  /** A u32 length then that many bytes (a reason string); undefined until all are here. */
  takeReason(): string | undefined {
    if (this.#bytes.length < 4) return undefined;
    const length = this.#bytes.readUInt32BE(0);
    if (length > reasonBytesMax) throw new RfbProtocolError(`a reason string of ${length} bytes (at most ${reasonBytesMax})`);
    const whole = this.take(4 + length);
    // For logs and for people: QEMU counts a trailing NUL in the length ("Authentication failed\0").
    // eslint-disable-next-line no-control-regex
    return whole?.subarray(4).toString("utf8").replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  }

  rest(): Buffer {
    const rest = this.#bytes;
    this.#bytes = Buffer.alloc(0);
    return rest;
  }
}

class RfbProtocolError extends Error {}

// ── the proxy as a client of the VNC server ─────────────────────────────────────────────

export const UpstreamState = {
  awaitVersion: "awaitVersion",
  awaitSecurityTypes: "awaitSecurityTypes",
  awaitSecurityType: "awaitSecurityType",
  awaitChallenge: "awaitChallenge",
  awaitSecurityResult: "awaitSecurityResult",
  awaitFailureReason: "awaitFailureReason",
  awaitRefusalReason: "awaitRefusalReason",
  ready: "ready",
  failed: "failed",
} as const;
export type UpstreamState = (typeof UpstreamState)[keyof typeof UpstreamState];

/** Logs in to a VNC server with VNC Authentication. */
export class UpstreamLogin {
  readonly #password: string;
  readonly #input = new Input();
  #state: UpstreamState = UpstreamState.awaitVersion;
  #version: RfbVersion = "3.8";

  constructor(password: string) {
    this.#password = password;
  }

  get state(): UpstreamState {
    return this.#state;
  }

  /** The version both sides speak, once the server's greeting is read. */
  get version(): RfbVersion {
    return this.#version;
  }

  push(chunk: Buffer): HandshakeEvent[] {
    if (this.#finished()) throw new Error(`UpstreamLogin: input after ${this.#state}`);
    this.#input.push(chunk);
    const events: HandshakeEvent[] = [];
    try {
      while (this.#step(events));
      if (!this.#finished() && this.#input.length > handshakeBufferedBytesMax) {
        throw new RfbProtocolError(`the VNC server sent more than ${handshakeBufferedBytesMax} bytes during the handshake`);
      }
    } catch (error) {
      if (!(error instanceof RfbProtocolError)) throw error;
      events.push(this.#fail("EPROTOCOL", error.message));
    }
    return events;
  }

  #finished(): boolean {
    return this.#state === UpstreamState.ready || this.#state === UpstreamState.failed;
  }

  #fail(code: HandshakeFailure["code"], reason: string): HandshakeEvent {
    this.#state = UpstreamState.failed;
    return { kind: "failed", failure: { code, reason } };
  }

  /** One transition if its input is here; false when waiting for more (or finished). */
  #step(events: HandshakeEvent[]): boolean {
    switch (this.#state) {
      case UpstreamState.awaitVersion: {
        const bytes = this.#input.take(protocolVersionBytes);
        if (bytes === undefined) return false;
        const version = parseProtocolVersion(bytes);
        if (version === undefined) throw new RfbProtocolError(`not an RFB server: it greeted with ${JSON.stringify(bytes.toString("latin1"))}`);
        this.#version = version;
        events.push({ kind: "send", bytes: encodeProtocolVersion(version) });
        this.#state = version === "3.3" ? UpstreamState.awaitSecurityType : UpstreamState.awaitSecurityTypes;
        return true;
      }
      case UpstreamState.awaitSecurityTypes: {
        const count = this.#input.peek(0);
        if (count === undefined) return false;
        if (count === 0) {
          this.#input.take(1);
          this.#state = UpstreamState.awaitRefusalReason;
          return true;
        }
        const types = this.#input.take(1 + count)?.subarray(1);
        if (types === undefined) return false;
        if (!types.includes(SecurityType.vncAuthentication)) {
          events.push(this.#fail("ENO_VNC_AUTH", `the VNC server offers no VNC Authentication (security types ${[...types].join(", ")})`));
          return false;
        }
        events.push({ kind: "send", bytes: Buffer.from([SecurityType.vncAuthentication]) });
        this.#state = UpstreamState.awaitChallenge;
        return true;
      }
      case UpstreamState.awaitSecurityType: {
        const bytes = this.#input.take(4);
        if (bytes === undefined) return false;
        const type = bytes.readUInt32BE(0);
        if (type === SecurityType.invalid) {
          this.#state = UpstreamState.awaitRefusalReason;
          return true;
        }
        if (type !== SecurityType.vncAuthentication) {
          events.push(this.#fail("ENO_VNC_AUTH", `the VNC server chose security type ${type}, not VNC Authentication`));
          return false;
        }
        this.#state = UpstreamState.awaitChallenge;
        return true;
      }
      case UpstreamState.awaitChallenge: {
        const challenge = this.#input.take(vncChallengeBytes);
        if (challenge === undefined) return false;
        events.push({ kind: "send", bytes: vncAuthResponse(this.#password, challenge) });
        this.#state = UpstreamState.awaitSecurityResult;
        return true;
      }
      case UpstreamState.awaitSecurityResult: {
        const bytes = this.#input.take(4);
        if (bytes === undefined) return false;
        const result = bytes.readUInt32BE(0);
        if (result === SecurityResult.ok) {
          this.#state = UpstreamState.ready;
          events.push({ kind: "ready", rest: this.#input.rest() });
          return false;
        }
        // RFC 6143 7.1.3: only 3.8 follows a failure with its reason.
        if (this.#version === "3.8") {
          this.#state = UpstreamState.awaitFailureReason;
          return true;
        }
        events.push(this.#fail("EAUTH", "the VNC server refused the password"));
        return false;
      }
      case UpstreamState.awaitFailureReason: {
        const reason = this.#input.takeReason();
        if (reason === undefined) return false;
        events.push(this.#fail("EAUTH", `the VNC server refused the password: ${reason}`));
        return false;
      }
      case UpstreamState.awaitRefusalReason: {
        const reason = this.#input.takeReason();
        if (reason === undefined) return false;
        events.push(this.#fail("EREFUSED", `the VNC server refused the connection: ${reason}`));
        return false;
      }
      case UpstreamState.ready:
      case UpstreamState.failed:
        return false;
    }
  }
}

// ── the proxy as a server to the websocket client ───────────────────────────────────────

export const ClientFacingState = {
  awaitVersion: "awaitVersion",
  awaitUpstream: "awaitUpstream",
  awaitSecurityType: "awaitSecurityType",
  ready: "ready",
  failed: "failed",
} as const;
export type ClientFacingState = (typeof ClientFacingState)[keyof typeof ClientFacingState];

type UpstreamOutcome = { ok: true } | { ok: false; reason: string };

/** Presents RFB 3.8 with security type None to a client; answers 3.3 and 3.7 clients in their form. */
export class ClientFacingHandshake {
  readonly #input = new Input();
  #state: ClientFacingState = ClientFacingState.awaitVersion;
  #version: RfbVersion | undefined;
  #upstream: UpstreamOutcome | undefined;

  get state(): ClientFacingState {
    return this.#state;
  }

  /** The version the client chose, once read. */
  get version(): RfbVersion | undefined {
    return this.#version;
  }

  /** What the server says first: RFC 6143 7.1.1. */
  greeting(): Buffer {
    return encodeProtocolVersion("3.8");
  }

  push(chunk: Buffer): HandshakeEvent[] {
    if (this.#finished()) throw new Error(`ClientFacingHandshake: input after ${this.#state}`);
    this.#input.push(chunk);
    return this.#run();
  }

  #finished(): boolean {
    return this.#state === ClientFacingState.ready || this.#state === ClientFacingState.failed;
  }

  /** The upstream login succeeded: offer the client security type None. */
  upstreamReady(): HandshakeEvent[] {
    this.#upstream = { ok: true };
    return this.#run();
  }

  /** The upstream login failed: refuse the client with `reason` in RFB's own form. */
  upstreamFailed(reason: string): HandshakeEvent[] {
    this.#upstream = { ok: false, reason };
    return this.#run();
  }

  #run(): HandshakeEvent[] {
    const events: HandshakeEvent[] = [];
    try {
      while (this.#step(events));
      if (!this.#finished() && this.#input.length > handshakeBufferedBytesMax) {
        throw new RfbProtocolError(`the client sent more than ${handshakeBufferedBytesMax} bytes during the handshake`);
      }
    } catch (error) {
      if (!(error instanceof RfbProtocolError)) throw error;
      this.#state = ClientFacingState.failed;
      events.push({ kind: "failed", failure: { code: "EPROTOCOL", reason: error.message } });
    }
    return events;
  }

  #step(events: HandshakeEvent[]): boolean {
    switch (this.#state) {
      case ClientFacingState.awaitVersion: {
        const bytes = this.#input.take(protocolVersionBytes);
        if (bytes === undefined) return false;
        const version = parseProtocolVersion(bytes);
        if (version === undefined) throw new RfbProtocolError(`not an RFB client: it answered ${JSON.stringify(bytes.toString("latin1"))}`);
        this.#version = version;
        this.#state = ClientFacingState.awaitUpstream;
        return true;
      }
      case ClientFacingState.awaitUpstream: {
        const version = this.#version!;
        if (this.#upstream === undefined) return false;
        if (!this.#upstream.ok) {
          events.push({ kind: "send", bytes: encodeConnectionFailed(version, this.#upstream.reason) });
          this.#state = ClientFacingState.failed;
          events.push({ kind: "failed", failure: { code: "EUPSTREAM", reason: this.#upstream.reason } });
          return false;
        }
        if (version === "3.3") {
          // RFC 6143 Appendix A.1: 3.3's server picks the type; None has no SecurityResult before 3.8.
          events.push({ kind: "send", bytes: encodeSecurityType33(SecurityType.none) });
          this.#state = ClientFacingState.ready;
          events.push({ kind: "ready", rest: this.#input.rest() });
          return false;
        }
        events.push({ kind: "send", bytes: encodeSecurityTypes([SecurityType.none]) });
        this.#state = ClientFacingState.awaitSecurityType;
        return true;
      }
      case ClientFacingState.awaitSecurityType: {
        const chosen = this.#input.take(1);
        if (chosen === undefined) return false;
        const version = this.#version!;
        if (chosen[0] !== SecurityType.none) {
          const reason = `security type ${chosen[0]} was not offered (only None: the console URL is the credential)`;
          // 3.8 says why in a failed SecurityResult; 3.7 has no way to, and just closes.
          if (version === "3.8") events.push({ kind: "send", bytes: encodeSecurityResult(false, version, reason) });
          this.#state = ClientFacingState.failed;
          events.push({ kind: "failed", failure: { code: "EPROTOCOL", reason } });
          return false;
        }
        // RFC 6143 7.2.1: with None, 3.8 sends SecurityResult; 3.7 goes straight to ClientInit.
        if (version === "3.8") events.push({ kind: "send", bytes: encodeSecurityResult(true) });
        this.#state = ClientFacingState.ready;
        events.push({ kind: "ready", rest: this.#input.rest() });
        return false;
      }
      case ClientFacingState.ready:
      case ClientFacingState.failed:
        return false;
    }
  }
}
