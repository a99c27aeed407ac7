/**
 * Header values as Node's http carries them, and as text.
 *
 * HTTP header bytes are not text. Node's parser accepts bytes 0x80-0xFF in header values and
 * hands each byte to us as one latin1 character, so a UTF-8 value `é` (C3 A9) arrives as "Ã©";
 * it refuses raw non-ASCII bytes in the request target (400), so paths arrive percent-encoded.
 * Going out, Node writes each header character as one byte and refuses characters above 0xFF
 * (ERR_INVALID_CHAR). So UTF-8 text (Swift stores and returns metadata values as raw UTF-8,
 * swift.md 5) travels as "latin1 strings of UTF-8 bytes" both ways:
 *
 *   wire bytes C3 A9 ──Node──▶ "Ã©" ──decodeHeaderText──▶ "é" ──encodeHeaderText──▶ "Ã©" ──Node──▶ C3 A9
 *
 * One trap on the way out (measured, Node 24): when the first body chunk is a *string*, Node
 * prepends the header block to it and encodes both with the chunk's encoding (utf8), so "Ã©" goes
 * out as C3 83 C2 A9. A response whose headers carry non-ASCII must send a Buffer body (or none);
 * this package's renderers return Buffers for that reason.
 */

export type IncomingHeaders = Record<string, string | string[] | undefined>;

/** A request header's value; a repeated header's values joined by ", " as HTTP lists are. */
export function headerValue(headers: IncomingHeaders, lowerCaseName: string): string | undefined {
  const value = headers[lowerCaseName];
  return Array.isArray(value) ? value.join(", ") : value;
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The text a header value carries: its latin1 characters taken as bytes and decoded as UTF-8;
 * undefined when those bytes are not valid UTF-8. A string with characters above 0xFF did not
 * come from a socket (fastify's inject passes strings through untouched) and is taken as text
 * already; one whose characters all fit a byte is taken as bytes, so an inject test sends `é`
 * as "Ã©", the way a socket would deliver it (encodeHeaderText does that).
 */
export function decodeHeaderText(raw: string): string | undefined {
  const highest = highestCharCode(raw);
  if (highest < 0x80 || highest > 0xff) return raw;
  try {
    return fatalUtf8.decode(Buffer.from(raw, "latin1"));
  } catch {
    return undefined;
  }
}

/** The largest UTF-16 code unit in the text (-1 when empty): tells bytes-as-latin1 from text. */
export function highestCharCode(text: string): number {
  let highest = -1;
  for (let i = 0; i < text.length; i++) highest = Math.max(highest, text.charCodeAt(i));
  return highest;
}

/** Text as a header value Node will write as its UTF-8 bytes (see the diagram above). */
export function encodeHeaderText(text: string): string {
  return Buffer.from(text, "utf8").toString("latin1");
}

export function utf8ByteLength(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/**
 * Python's str.title() over a header-name fragment, which is how Swift spells every header name
 * it returns (swob HeaderKeyDict / HeaderEnvironProxy): a letter is upper-case when the character
 * before it is not a letter, lower-case otherwise — `mtime` → `Mtime`, `foo-bar` → `Foo-Bar`,
 * `a1b` → `A1B`. Underscores become dashes first, as in WSGI and Pithos+ (synnefo.md B.1).
 */
export function titleCaseHeaderName(name: string): string {
  let result = "";
  let previousIsLetter = false;
  for (const char of name.replaceAll("_", "-")) {
    const isLetter = char.toLowerCase() !== char.toUpperCase();
    result += isLetter ? (previousIsLetter ? char.toLowerCase() : char.toUpperCase()) : char;
    previousIsLetter = isLetter;
  }
  return result;
}
