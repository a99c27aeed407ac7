/**
 * SSH keys for Nova's os-keypairs: parsing and fingerprinting an uploaded OpenSSH public key,
 * and generating a keypair when none is given (Nova answers the private key once, in
 * `private_key`, and keeps only the public half).
 *
 * OpenSSH's public key line is `<type> <base64 blob> [comment]`; the blob is RFC 4253 §6.6
 * wire format, starting with the type as an SSH string. Nova's fingerprint is the MD5 of the
 * blob, colon-separated hex (`ssh-keygen -l -E md5`).
 */
import { createHash, generateKeyPairSync } from "node:crypto";
import { ComputeError } from "./errors.ts";

/** Nova 2.1's keypair names: letters, digits, `-`, `_` and space (nova/api/validation). */
const keypairNamePattern = /^[A-Za-z0-9 _-]+$/;
/**
 * Generated keys: RSA 3072, OpenSSH's default size since 8.x; PKCS#1 PEM is a private key
 * format every ssh client reads.
 */
const generatedRsaBits = 3072;

export function checkKeypairName(name: string): string {
  if (typeof name !== "string" || name.length === 0 || name.length > 255 || !keypairNamePattern.test(name) || name.trim() !== name) {
    throw new ComputeError("EBAD_REQUEST", "Keypair data is invalid: Keypair name contains unsafe characters");
  }
  return name;
}

/** The key as stored (trimmed: the CLI sends the file verbatim) and its fingerprint. */
export function parsePublicKey(text: string): { publicKey: string; fingerprint: string } {
  const publicKey = text.trim();
  const [type, base64, ...rest] = publicKey.split(/\s+/);
  const invalid = () => new ComputeError("EBAD_REQUEST", "Keypair data is invalid: failed to generate fingerprint");
  if (type === undefined || base64 === undefined || rest.some((part) => part.includes("\n")) || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw invalid();
  const blob = Buffer.from(base64, "base64");
  if (blob.length < 4) throw invalid();
  const typeLength = blob.readUInt32BE(0);
  if (4 + typeLength > blob.length || blob.subarray(4, 4 + typeLength).toString("latin1") !== type) throw invalid();
  return { publicKey, fingerprint: md5Fingerprint(blob) };
}

export function generateKeypair(comment: string): { publicKey: string; privateKey: string; fingerprint: string } {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: generatedRsaBits });
  const jwk = publicKey.export({ format: "jwk" });
  const blob = Buffer.concat([sshString(Buffer.from("ssh-rsa")), sshMpint(Buffer.from(jwk.e!, "base64url")), sshMpint(Buffer.from(jwk.n!, "base64url"))]);
  return {
    publicKey: `ssh-rsa ${blob.toString("base64")} ${comment}`,
    privateKey: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    fingerprint: md5Fingerprint(blob),
  };
}

function md5Fingerprint(blob: Buffer): string {
  return createHash("md5").update(blob).digest("hex").match(/../g)!.join(":");
}

function sshString(data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  return Buffer.concat([length, data]);
}

/** RFC 4251 §5 mpint: big-endian two's complement, a leading zero when the top bit is set. */
function sshMpint(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return sshString((trimmed[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}
