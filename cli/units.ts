/**
 * Sizes and durations as people type them, and back.
 *
 * Sizes: plain bytes (`1048576`) or a number with a K, M, G or T suffix meaning powers of
 * 1024, as qemu-img and dd read them (`4M`, `10G`, `1.5G`; `10GiB` and `10GB` are the
 * same). Durations: `0`, or a number with ms, s, m, h or d (`30s`, `10m`, `1h`).
 */

const sizeUnits: Readonly<Record<string, number>> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };
const sizePattern = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i;

/** Bytes for a size string; throws a one-line Error naming the accepted forms. */
export function parseSize(text: string): number {
  const match = sizePattern.exec(text.trim());
  const unit = match === null ? undefined : sizeUnits[(match[2] as string).toUpperCase()];
  const bytes = match === null || unit === undefined ? Number.NaN : Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) {
    throw new Error(`invalid size ${JSON.stringify(text)}: use bytes or a number with K, M, G or T (powers of 1024), e.g. 10G`);
  }
  return bytes;
}

const durationUnitsMs: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const durationPattern = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/** Milliseconds for a duration string; a bare number other than 0 is refused as ambiguous. */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (/^0+$/.test(trimmed)) return 0;
  const match = durationPattern.exec(trimmed);
  const unitMs = match === null ? undefined : durationUnitsMs[match[2] as string];
  const ms = match === null || unitMs === undefined ? Number.NaN : Math.round(Number(match[1]) * unitMs);
  if (!Number.isSafeInteger(ms)) {
    throw new Error(`invalid duration ${JSON.stringify(text)}: use 0 or a number with ms, s, m, h or d, e.g. 30s, 10m, 1h`);
  }
  return ms;
}

const binaryUnits = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;

/** `4 MiB`, `1.5 GiB`, `512 bytes`: at most one decimal, exact values without one. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < binaryUnits.length - 1) {
    value /= 1024;
    unit++;
  }
  const rounded = Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${rounded} ${binaryUnits[unit]}`;
}

/** `1h`, `10m`, `30s`, `250ms`, `1h30m`: the shortest exact spelling. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0";
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, unitMs] of Object.entries(durationUnitsMs).reverse()) {
    const count = Math.floor(rest / unitMs);
    if (count > 0) parts.push(`${count}${unit}`);
    rest -= count * unitMs;
  }
  return parts.join("");
}
