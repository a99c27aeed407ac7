/**
 * DES (FIPS 46-3) encryption of one 64-bit block, and RFB's "VNC Authentication" response
 * built on it (RFC 6143 7.2.2). Written out here because Node's OpenSSL 3 offers `des-ecb`
 * only with the legacy provider loaded (`crypto.getCiphers()` lists no `des-ecb`); the one
 * place we need DES answers QEMU's 16-byte challenge, so speed does not matter and the code
 * follows the standard's tables bit by bit, for easy checking against FIPS 46-3.
 *
 * Not for anything but RFB: single DES is broken, and VNC Authentication only keeps a
 * password off the wire of a local unix socket.
 */

/** FIPS 46-3's tables number bits 1..64 from the most significant bit of the first byte. */
type Bits = Uint8Array;

const initialPermutation = [
  58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
  57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, 61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];
/** IP⁻¹: the inverse of the initial permutation, derived rather than transcribed. */
const finalPermutation = Array.from({ length: 64 }, (_, out) => initialPermutation.indexOf(out + 1) + 1);
/** E: the 32-bit half expanded to 48 bits. */
const expansion = [
  32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
  16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1,
];
/** P: the permutation of the S-boxes' 32 output bits. */
const permutation = [16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25];
/** PC-1: the key's 56 bits (parity bits 8, 16… dropped) as C0 then D0. */
const permutedChoice1 = [
  57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
  63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];
/** PC-2: the 48 bits of a round key from CnDn. */
const permutedChoice2 = [
  14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
  41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];
/** Left rotations of C and D before each of the 16 rounds. */
const keyShifts = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];
/** S1..S8, each 4 rows of 16: row from the outer bits of a 6-bit group, column from the inner four. */
const substitutionBoxes = [
  [14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, 0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
    4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, 15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13],
  [15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, 3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
    0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, 13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9],
  [10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, 13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
    13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, 1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12],
  [7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, 13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
    10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, 3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14],
  [2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, 14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
    4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, 11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3],
  [12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, 10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
    9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, 4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13],
  [4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, 13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
    1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, 6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12],
  [13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, 1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
    7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, 2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11],
];

export const desBlockBytes = 8;
export const desKeyBytes = 8;

function toBits(bytes: Uint8Array): Bits {
  const bits = new Uint8Array(bytes.length * 8);
  for (let i = 0; i < bits.length; i++) bits[i] = (bytes[i >> 3]! >> (7 - (i & 7))) & 1;
  return bits;
}

function fromBits(bits: Bits): Buffer {
  const bytes = Buffer.alloc(bits.length / 8);
  for (let i = 0; i < bits.length; i++) bytes[i >> 3]! |= bits[i]! << (7 - (i & 7));
  return bytes;
}

/** out[i] = in[table[i]], with the tables' 1-based bit numbers. */
function permute(input: Bits, table: readonly number[]): Bits {
  return Uint8Array.from(table, (position) => input[position - 1]!);
}

function rotateLeft(half: Bits, count: number): Bits {
  return Uint8Array.from(half, (_, i) => half[(i + count) % half.length]!);
}

/** K1..K16, 48 bits each (FIPS 46-3 "Key schedule calculation"). */
function roundKeys(key: Uint8Array): Bits[] {
  const chosen = permute(toBits(key), permutedChoice1);
  let c = chosen.subarray(0, 28);
  let d = chosen.subarray(28);
  return keyShifts.map((shift) => {
    c = rotateLeft(c, shift);
    d = rotateLeft(d, shift);
    const cd = new Uint8Array(56);
    cd.set(c, 0);
    cd.set(d, 28);
    return permute(cd, permutedChoice2);
  });
}

/** f(R, K): expand, mix in the round key, substitute through S1..S8, permute. */
function cipherFunction(right: Bits, roundKey: Bits): Bits {
  const mixed = permute(right, expansion).map((bit, i) => bit ^ roundKey[i]!);
  const substituted = new Uint8Array(32);
  for (let box = 0; box < 8; box++) {
    const group = mixed.subarray(box * 6, box * 6 + 6);
    const row = (group[0]! << 1) | group[5]!;
    const column = (group[1]! << 3) | (group[2]! << 2) | (group[3]! << 1) | group[4]!;
    const value = substitutionBoxes[box]![row * 16 + column]!;
    for (let bit = 0; bit < 4; bit++) substituted[box * 4 + bit] = (value >> (3 - bit)) & 1;
  }
  return permute(substituted, permutation);
}

/** DES-ECB encryption of one 8-byte block under an 8-byte key (parity bits ignored). */
export function desEncryptBlock(key: Uint8Array, block: Uint8Array): Buffer {
  if (key.length !== desKeyBytes || block.length !== desBlockBytes) throw new RangeError("DES takes an 8-byte key and an 8-byte block");
  let bits = permute(toBits(block), initialPermutation);
  let left = bits.slice(0, 32);
  let right = bits.slice(32);
  for (const roundKey of roundKeys(key)) {
    const f = cipherFunction(right, roundKey);
    [left, right] = [right, left.map((bit, i) => bit ^ f[i]!)];
  }
  // The last round's halves are not swapped back: the preoutput is R16 L16.
  bits = new Uint8Array(64);
  bits.set(right, 0);
  bits.set(left, 32);
  return fromBits(permute(bits, finalPermutation));
}

/** RFB's password length: VNC Authentication keys DES with at most 8 bytes of it. */
export const vncPasswordBytesMax = 8;
/** RFC 6143 7.2.2: the server's random challenge, and the client's answer, are 16 bytes. */
export const vncChallengeBytes = 16;

function reverseBits(byte: number): number {
  let reversed = 0;
  for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) reversed |= 1 << (7 - bit);
  return reversed;
}

/**
 * The DES key of a VNC password: its first 8 bytes (UTF-8; shorter ones padded with zeros),
 * each byte's bits reversed. RFC 6143 7.2.2 does not say so, but every implementation does it
 * (the original d3des.c took the key low bit first): QEMU's ui/vnc.c, libvncserver's
 * rfbEncryptBytes, noVNC's des.js all reverse the bits.
 */
export function vncDesKey(password: string): Buffer {
  const key = Buffer.alloc(desKeyBytes);
  Buffer.from(password, "utf8").copy(key, 0, 0, vncPasswordBytesMax);
  for (let i = 0; i < key.length; i++) key[i] = reverseBits(key[i]!);
  return key;
}

/** RFC 6143 7.2.2: the challenge's two 8-byte halves, each DES-encrypted with the password's key. */
export function vncAuthResponse(password: string, challenge: Uint8Array): Buffer {
  if (challenge.length !== vncChallengeBytes) throw new RangeError(`a VNC challenge is ${vncChallengeBytes} bytes`);
  const key = vncDesKey(password);
  return Buffer.concat([desEncryptBlock(key, challenge.subarray(0, 8)), desEncryptBlock(key, challenge.subarray(8, 16))]);
}
