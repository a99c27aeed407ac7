/**
 * JSON exactly as Python's json.dumps writes it with its defaults, which is what Swift's listings
 * are (container/server.py `json.dumps(listing)`; swift.md 8): separators `", "` and `": "`,
 * keys in insertion order, and ensure_ascii: every character outside space..`~` escaped, as
 * `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f` or `\u00e9` (lower-case hex, UTF-16 code units, so
 * astral characters become surrogate pairs). Clients and tests compare listings byte for byte.
 *
 *   JSON.stringify  [{"name":"é"}]
 *   json.dumps      [{"name": "\u00e9"}]
 */

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue | undefined };

const shortEscapes: Readonly<Record<string, string>> = {
  "\"": "\\\"",
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\b": "\\b",
  "\f": "\\f",
};

export function pythonJsonString(text: string): string {
  // json.encoder ESCAPE_ASCII = r'([\\"]|[^\ -~])'
  return `"${text.replace(/[\\"]|[^ -~]/g, (char) => shortEscapes[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`)}"`;
}

/**
 * Integers print as Python prints ints. Non-integral numbers use JavaScript's shortest form,
 * which matches Python's repr for the values listings carry; NaN and infinities are refused
 * (Python would write NaN, which is not JSON). Properties whose value is undefined are left out.
 */
export function pythonJsonDumps(value: JsonValue): string {
  if (value === null) return "null";
  if (typeof value === "string") return pythonJsonString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`cannot encode ${value} as JSON`);
    return Number.isInteger(value) && Math.abs(value) < 1e21 ? BigInt(value).toString() : String(value);
  }
  if (Array.isArray(value)) return `[${value.map(pythonJsonDumps).join(", ")}]`;
  const members: string[] = [];
  for (const [key, member] of Object.entries(value)) {
    if (member !== undefined) members.push(`${pythonJsonString(key)}: ${pythonJsonDumps(member)}`);
  }
  return `{${members.join(", ")}}`;
}
