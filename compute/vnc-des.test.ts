/**
 * DES against published vectors (NBS Special Publication 500-20's variable-plaintext,
 * variable-key, permutation and S-box tests; FIPS 81's "Now is t"; the textbook example),
 * against OpenSSL's triple DES with three equal keys (which is single DES) on random input,
 * and VNC Authentication's key rule.
 */
import { createCipheriv, getCiphers } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { desEncryptBlock, vncAuthResponse, vncDesKey } from "./vnc-des.ts";

const vectors: Array<[key: string, plaintext: string, ciphertext: string]> = [
  ["133457799bbcdff1", "0123456789abcdef", "85e813540f0ab405"],
  ["0123456789abcdef", "4e6f772069732074", "3fa40e8a984d4815"],
  // SP 500-20 variable plaintext (key 01…01): one bit set at a time.
  ["0101010101010101", "8000000000000000", "95f8a5e5dd31d900"],
  ["0101010101010101", "4000000000000000", "dd7f121ca5015619"],
  // Variable key (plaintext zero).
  ["8001010101010101", "0000000000000000", "95a8d72813daa94d"],
  // Permutation operation test.
  ["1046913489980131", "0000000000000000", "88d55e54f54c97b4"],
  // Substitution table test.
  ["7ca110454a1a6e57", "01a1d6d039776742", "690f5b0d9a26939b"],
];

const hex = (text: string) => Buffer.from(text, "hex");

/** Single DES through OpenSSL: EDE with K1 = K2 = K3 encrypts, decrypts and encrypts with K, which is E_K. */
function opensslDes(key: Uint8Array, block: Uint8Array): Buffer {
  const cipher = createCipheriv("des-ede3-ecb", Buffer.concat([key, key, key]), null);
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(block), cipher.final()]);
}

describe("DES", () => {
  it.each(vectors)("key %s encrypts %s to %s", (key, plaintext, ciphertext) => {
    expect(desEncryptBlock(hex(key), hex(plaintext)).toString("hex")).toBe(ciphertext);
  });

  it.skipIf(!getCiphers().includes("des-ede3-ecb"))("agrees with OpenSSL on random keys and blocks", () => {
    const bytes8 = fc.uint8Array({ minLength: 8, maxLength: 8 });
    fc.assert(fc.property(bytes8, bytes8, (key, block) => {
      expect(desEncryptBlock(key, block)).toEqual(opensslDes(key, block));
    }), { numRuns: 300 });
  });

  it("refuses keys and blocks that are not 8 bytes", () => {
    expect(() => desEncryptBlock(Buffer.alloc(7), Buffer.alloc(8))).toThrow(RangeError);
    expect(() => desEncryptBlock(Buffer.alloc(8), Buffer.alloc(9))).toThrow(RangeError);
  });
});

describe("VNC Authentication", () => {
  it("keys DES with the password's first 8 bytes, zero-padded, each byte's bits reversed", () => {
    // "p" = 0x70 = 0111 0000 → 0000 1110 = 0x0e; "a" = 0x61 → 0x86.
    expect(vncDesKey("pa").toString("hex")).toBe("0e86000000000000");
    expect(vncDesKey("secret12345")).toEqual(vncDesKey("secret12"));
    expect(vncDesKey("")).toEqual(Buffer.alloc(8));
  });

  it("answers each half of the challenge with DES under that key", () => {
    const challenge = hex("e1a2a8e578561d2611b0ddd624b4fbe1");
    const key = vncDesKey("secret12");
    const expected = Buffer.concat([desEncryptBlock(key, challenge.subarray(0, 8)), desEncryptBlock(key, challenge.subarray(8))]);
    expect(vncAuthResponse("secret12", challenge)).toEqual(expected);
    expect(() => vncAuthResponse("x", Buffer.alloc(8))).toThrow(RangeError);
  });
});
