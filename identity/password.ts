/**
 * Password hashing with scrypt (node:crypto), a random salt per user, kept as a PHC-style
 * string so the cost can be raised later without breaking stored hashes:
 *
 *   $scrypt$ln=15,r=8,p=1$<salt, base64>$<hash, base64>
 *
 * Verification reads the parameters from the stored string, so old hashes keep working.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";

/**
 * log2 of scrypt's N. 2^15 with r=8 takes 32 MiB and ~50 ms per hash here: RFC 7914 §2's
 * interactive-login figure. OWASP's 2^17 would take 128 MiB per concurrent login, which turns a
 * burst of logins into a memory exhaustion.
 */
export const scryptCostLog2Default = 15;
const scryptBlockSize = 8;
const scryptParallelism = 1;
/** 128 bits of salt (NIST SP 800-132 §5.1 asks for at least 128). */
const saltBytes = 16;
const hashBytes = 32;
/** Refuse absurd cost parameters in a stored hash (a corrupted row must not eat the machine). */
const scryptCostLog2Max = 20;
/** A password longer than this is refused before hashing: hashing is the costly step. */
export const passwordLengthMax = 1024;

export interface HashOptions {
  /** Tests lower this to keep hashing fast; stored in the hash, so verification follows. */
  costLog2?: number;
}

function scryptAsync(password: string, salt: Buffer, costLog2: number, r: number, p: number): Promise<Buffer> {
  // maxmem: scrypt needs 128·N·r bytes; Node's default cap (32 MiB) is exactly 2^15·8·128.
  const options: ScryptOptions = { N: 2 ** costLog2, r, p, maxmem: 256 * 2 ** costLog2 * r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize("NFC"), salt, hashBytes, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

export async function hashPassword(password: string, options: HashOptions = {}): Promise<string> {
  const costLog2 = options.costLog2 ?? scryptCostLog2Default;
  const salt = randomBytes(saltBytes);
  const key = await scryptAsync(password, salt, costLog2, scryptBlockSize, scryptParallelism);
  return `$scrypt$ln=${costLog2},r=${scryptBlockSize},p=${scryptParallelism}$${salt.toString("base64")}$${key.toString("base64")}`;
}

const phcPattern = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

/** True when `password` matches `stored`; false for a wrong password or an unreadable hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const match = phcPattern.exec(stored);
  if (match === null) return false;
  const [costLog2, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (costLog2 < 1 || costLog2 > scryptCostLog2Max || r < 1 || r > 32 || p < 1 || p > 16) return false;
  const expected = Buffer.from(match[5]!, "base64");
  const key = await scryptAsync(password, Buffer.from(match[4]!, "base64"), costLog2, r, p);
  return key.length === expected.length && timingSafeEqual(key, expected);
}

let dummyHash: Promise<string> | undefined;

/**
 * Burns the same time as a real verification, for a user who does not exist or has no
 * password: an attacker timing logins cannot tell which names exist.
 */
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummyHash ??= hashPassword("okeanos-dummy-password");
  await verifyPassword(password, await dummyHash);
  return false;
}
