import { describe, expect, it } from "vitest";
import { formatBytes, formatDuration, parseDuration, parseSize } from "./units.ts";

describe("parseSize", () => {
  it("reads bytes and K/M/G/T as powers of 1024", () => {
    expect(parseSize("0")).toBe(0);
    expect(parseSize("1048576")).toBe(1048576);
    expect(parseSize("4K")).toBe(4096);
    expect(parseSize("4k")).toBe(4096);
    expect(parseSize("4M")).toBe(4 * 1024 ** 2);
    expect(parseSize("10G")).toBe(10 * 1024 ** 3);
    expect(parseSize("2T")).toBe(2 * 1024 ** 4);
    expect(parseSize("10GiB")).toBe(10 * 1024 ** 3);
    expect(parseSize("10GB")).toBe(10 * 1024 ** 3);
    expect(parseSize("1.5G")).toBe(1.5 * 1024 ** 3);
    expect(parseSize(" 8 M ")).toBe(8 * 1024 ** 2);
  });

  it("refuses what is not a whole number of bytes", () => {
    for (const bad of ["", "G", "-1G", "10X", "1.5", "0.1K", "1e3", "10 G B", "99999999999T", "0x10"]) {
      expect(() => parseSize(bad), bad).toThrow(/invalid size .*use bytes or a number with K, M, G or T/);
    }
  });
});

describe("parseDuration", () => {
  it("reads 0 and ms/s/m/h/d", () => {
    expect(parseDuration("0")).toBe(0);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("10m")).toBe(600_000);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("1.5h")).toBe(5_400_000);
    expect(parseDuration("2d")).toBe(172_800_000);
  });

  it("refuses bare numbers other than 0 and unknown units", () => {
    for (const bad of ["", "5", "-1s", "1w", "s", "1 hour"]) expect(() => parseDuration(bad), bad).toThrow(/invalid duration/);
  });
});

describe("formatting", () => {
  it("formats bytes with binary units", () => {
    expect(formatBytes(0)).toBe("0 bytes");
    expect(formatBytes(512)).toBe("512 bytes");
    expect(formatBytes(4096)).toBe("4 KiB");
    expect(formatBytes(1.5 * 1024 ** 2)).toBe("1.5 MiB");
    expect(formatBytes(10 * 1024 ** 3)).toBe("10 GiB");
    expect(formatBytes(1234567)).toBe("1.2 MiB");
  });

  it("formats durations as they are typed", () => {
    expect(formatDuration(0)).toBe("0");
    expect(formatDuration(3_600_000)).toBe("1h");
    expect(formatDuration(5_400_000)).toBe("1h30m");
    expect(formatDuration(30_250)).toBe("30s250ms");
    for (const text of ["1h", "10m", "30s", "2d", "250ms"]) expect(formatDuration(parseDuration(text))).toBe(text);
  });
});
