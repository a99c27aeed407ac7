/**
 * The RFB handshake machines over canonical byte streams, each fed whole, split at every
 * offset, and byte by byte: the bytes sent, the outcome and the bytes left over must not
 * depend on how the input was chunked.
 */
import { describe, expect, it } from "vitest";
import { vncAuthResponse } from "./vnc-des.ts";
import {
  ClientFacingHandshake,
  UpstreamLogin,
  encodeConnectionFailed,
  encodeSecurityResult,
  handshakeBufferedBytesMax,
  parseProtocolVersion,
  reasonBytesMax,
  type HandshakeEvent,
  type HandshakeFailure,
} from "./vnc-handshake.ts";

const v38 = Buffer.from("RFB 003.008\n");
const v37 = Buffer.from("RFB 003.007\n");
const v33 = Buffer.from("RFB 003.003\n");
const challenge = Buffer.from("000102030405060708090a0b0c0d0e0f", "hex");
const password = "secret12";
const u32 = (value: number) => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
};
const reason = (text: string) => Buffer.concat([u32(Buffer.byteLength(text)), Buffer.from(text)]);

interface Outcome {
  sent: Buffer;
  ready: boolean;
  failure: HandshakeFailure | undefined;
  /** `ready`'s rest plus the input never fed (it came after the outcome). */
  rest: Buffer;
}

/** Feeds chunks until an outcome; what a caller would do with the events. */
function drive(push: (chunk: Buffer) => HandshakeEvent[], chunks: readonly Buffer[], initial: HandshakeEvent[] = []): Outcome {
  const outcome: Outcome = { sent: Buffer.alloc(0), ready: false, failure: undefined, rest: Buffer.alloc(0) };
  const apply = (events: HandshakeEvent[]) => {
    for (const event of events) {
      if (event.kind === "send") outcome.sent = Buffer.concat([outcome.sent, event.bytes]);
      else if (event.kind === "ready") [outcome.ready, outcome.rest] = [true, Buffer.concat([outcome.rest, event.rest])];
      else outcome.failure = event.failure;
    }
  };
  apply(initial);
  for (const chunk of chunks) {
    if (outcome.ready || outcome.failure !== undefined) outcome.rest = Buffer.concat([outcome.rest, chunk]);
    else apply(push(chunk));
  }
  return outcome;
}

/** Every way of cutting `bytes`: whole, in two at each offset, and one byte at a time. */
function splits(bytes: Buffer): Buffer[][] {
  const ways: Buffer[][] = [[bytes]];
  for (let at = 1; at < bytes.length; at++) ways.push([bytes.subarray(0, at), bytes.subarray(at)]);
  ways.push([...bytes].map((byte) => Buffer.from([byte])));
  return ways;
}

function expectSameAtEverySplit(make: () => (chunk: Buffer) => HandshakeEvent[], bytes: Buffer, expected: Partial<Outcome>): void {
  for (const chunks of splits(bytes)) {
    const outcome = drive(make(), chunks);
    // After a failure the connection closes: what followed it is not anyone's.
    const rest = outcome.ready ? outcome.rest.toString("hex") : "";
    expect({ sent: outcome.sent.toString("hex"), ready: outcome.ready, failure: outcome.failure, rest }).toEqual({
      sent: (expected.sent ?? Buffer.alloc(0)).toString("hex"),
      ready: expected.ready ?? false,
      failure: expected.failure,
      rest: (expected.rest ?? Buffer.alloc(0)).toString("hex"),
    });
  }
}

const upstream = () => {
  const login = new UpstreamLogin(password);
  return (chunk: Buffer) => login.push(chunk);
};

describe("UpstreamLogin (the proxy logging in to QEMU)", () => {
  it("3.8: answers the challenge with DES of the password and is ready after SecurityResult OK", () => {
    const server = Buffer.concat([v38, Buffer.from([1, 2]), challenge, u32(0), Buffer.from("after")]);
    expectSameAtEverySplit(upstream, server, {
      sent: Buffer.concat([v38, Buffer.from([2]), vncAuthResponse(password, challenge)]),
      ready: true,
      rest: Buffer.from("after"),
    });
  });

  it("picks VNC Authentication among other types", () => {
    const server = Buffer.concat([v38, Buffer.from([3, 1, 16, 2]), challenge, u32(0)]);
    expectSameAtEverySplit(upstream, server, { sent: Buffer.concat([v38, Buffer.from([2]), vncAuthResponse(password, challenge)]), ready: true });
  });

  it("3.8: a refused password, with the server's reason", () => {
    const server = Buffer.concat([v38, Buffer.from([1, 2]), challenge, u32(1), Buffer.from([0, 0, 0, 22]), Buffer.from("Authentication failed\0")]);
    expectSameAtEverySplit(upstream, server, {
      sent: Buffer.concat([v38, Buffer.from([2]), vncAuthResponse(password, challenge)]),
      failure: { code: "EAUTH", reason: "the VNC server refused the password: Authentication failed" },
    });
  });

  it("3.7: a refused password has no reason string", () => {
    const server = Buffer.concat([v37, Buffer.from([1, 2]), challenge, u32(1)]);
    expectSameAtEverySplit(upstream, server, {
      sent: Buffer.concat([v37, Buffer.from([2]), vncAuthResponse(password, challenge)]),
      failure: { code: "EAUTH", reason: "the VNC server refused the password" },
    });
  });

  it("3.3: the server chooses VNC Authentication as a u32", () => {
    const server = Buffer.concat([v33, u32(2), challenge, u32(0)]);
    expectSameAtEverySplit(upstream, server, { sent: Buffer.concat([v33, vncAuthResponse(password, challenge)]), ready: true });
    expectSameAtEverySplit(upstream, Buffer.concat([v33, u32(1)]), {
      sent: v33,
      failure: { code: "ENO_VNC_AUTH", reason: "the VNC server chose security type 1, not VNC Authentication" },
    });
    expectSameAtEverySplit(upstream, Buffer.concat([v33, u32(0), reason("busy")]), {
      sent: v33,
      failure: { code: "EREFUSED", reason: "the VNC server refused the connection: busy" },
    });
  });

  it("a server without VNC Authentication (password=off) is refused, not logged in to", () => {
    expectSameAtEverySplit(upstream, Buffer.concat([v38, Buffer.from([1, 1])]), {
      sent: v38,
      failure: { code: "ENO_VNC_AUTH", reason: "the VNC server offers no VNC Authentication (security types 1)" },
    });
  });

  it("a server refusing the connection says why", () => {
    expectSameAtEverySplit(upstream, Buffer.concat([v38, Buffer.from([0]), reason("Too many connections")]), {
      sent: v38,
      failure: { code: "EREFUSED", reason: "the VNC server refused the connection: Too many connections" },
    });
  });

  it("bytes that are not RFB end in EPROTOCOL", () => {
    expectSameAtEverySplit(upstream, Buffer.from("HTTP/1.1 200\n"), {
      failure: { code: "EPROTOCOL", reason: 'not an RFB server: it greeted with "HTTP/1.1 200"' },
    });
    const tooLong = drive(upstream(), [Buffer.concat([v38, Buffer.from([0]), u32(reasonBytesMax + 1)])]);
    expect(tooLong.failure?.code).toBe("EPROTOCOL");
  });

  it("refuses input after its outcome (a caller bug)", () => {
    const login = new UpstreamLogin(password);
    login.push(Buffer.concat([v38, Buffer.from([1, 1])]));
    expect(login.state).toBe("failed");
    expect(() => login.push(Buffer.from([0]))).toThrow(/input after failed/);
  });
});

describe("ClientFacingHandshake (the proxy as the client's VNC server)", () => {
  const facing = (upstreamFirst: "ready" | "failed" | "none" = "ready") => () => {
    const handshake = new ClientFacingHandshake();
    if (upstreamFirst === "ready") handshake.upstreamReady();
    if (upstreamFirst === "failed") handshake.upstreamFailed("the VNC server refused the password");
    return (chunk: Buffer) => handshake.push(chunk);
  };
  const clientInit = Buffer.from([1]);

  it("greets with 3.8", () => {
    expect(new ClientFacingHandshake().greeting()).toEqual(v38);
  });

  it("3.8: offers None, confirms with SecurityResult OK, and hands ClientInit on", () => {
    expectSameAtEverySplit(facing(), Buffer.concat([v38, Buffer.from([1]), clientInit]), {
      sent: Buffer.concat([Buffer.from([1, 1]), u32(0)]),
      ready: true,
      rest: clientInit,
    });
  });

  it("3.7: offers None, and no SecurityResult follows it", () => {
    expectSameAtEverySplit(facing(), Buffer.concat([v37, Buffer.from([1]), clientInit]), { sent: Buffer.from([1, 1]), ready: true, rest: clientInit });
  });

  it("3.3 (and versions RFC 6143 says to read as 3.3): names None as a u32", () => {
    expectSameAtEverySplit(facing(), Buffer.concat([v33, clientInit]), { sent: u32(1), ready: true, rest: clientInit });
    expectSameAtEverySplit(facing(), Buffer.concat([Buffer.from("RFB 003.005\n"), clientInit]), { sent: u32(1), ready: true, rest: clientInit });
    expect(parseProtocolVersion(Buffer.from("RFB 003.889\n"))).toBe("3.8");
    expect(parseProtocolVersion(Buffer.from("RFB 004.000\n"))).toBeUndefined();
  });

  it("waits for the upstream login before answering the client's version", () => {
    const handshake = new ClientFacingHandshake();
    expect(handshake.push(Buffer.concat([v38, Buffer.from([1])]))).toEqual([]);
    expect(handshake.state).toBe("awaitUpstream");
    expect(handshake.version).toBe("3.8");
    const outcome = drive(() => [], [], handshake.upstreamReady());
    expect(outcome).toEqual({ sent: Buffer.concat([Buffer.from([1, 1]), u32(0)]), ready: true, failure: undefined, rest: Buffer.alloc(0) });
  });

  it("a failed upstream login reaches the client as RFB's connection failure, in its version's form", () => {
    const failure = { code: "EUPSTREAM", reason: "the VNC server refused the password" } as const;
    expectSameAtEverySplit(facing("failed"), v38, { sent: encodeConnectionFailed("3.8", failure.reason), failure });
    expectSameAtEverySplit(facing("failed"), v37, { sent: Buffer.concat([Buffer.from([0]), reason(failure.reason)]), failure });
    expectSameAtEverySplit(facing("failed"), v33, { sent: Buffer.concat([u32(0), reason(failure.reason)]), failure });
  });

  it("a security type it did not offer: 3.8 says why in SecurityResult, 3.7 just ends", () => {
    const why = "security type 2 was not offered (only None: the console URL is the credential)";
    expectSameAtEverySplit(facing(), Buffer.concat([v38, Buffer.from([2])]), {
      sent: Buffer.concat([Buffer.from([1, 1]), encodeSecurityResult(false, "3.8", why)]),
      failure: { code: "EPROTOCOL", reason: why },
    });
    expectSameAtEverySplit(facing(), Buffer.concat([v37, Buffer.from([2])]), { sent: Buffer.from([1, 1]), failure: { code: "EPROTOCOL", reason: why } });
  });

  it("a client that is not RFB, or floods the handshake, ends in EPROTOCOL", () => {
    expectSameAtEverySplit(facing(), Buffer.from("GET / HTTP/1.1\r\n"), {
      failure: { code: "EPROTOCOL", reason: 'not an RFB client: it answered "GET / HTTP/1"' },
    });
    const flood = drive(facing("none")(), [v38, Buffer.alloc(handshakeBufferedBytesMax + 1)]);
    expect(flood.failure?.code).toBe("EPROTOCOL");
  });
});
