import { describe, expect, it } from "vitest";
import { nameMatcher } from "./views.ts";

describe("nameMatcher (Nova's ?name= regular expression)", () => {
  it("matches as a regular expression, anywhere in the name, as re.search does", () => {
    expect(nameMatcher("^vm[0-9]$")("vm1")).toBe(true);
    expect(nameMatcher("^vm[0-9]$")("vm10")).toBe(false);
    expect(nameMatcher("web")("my-web-1")).toBe(true);
  });

  it("falls back to plain text for a pattern JavaScript cannot compile, so exact-name lookups still work", () => {
    expect(nameMatcher("vm(1")("vm(1")).toBe(true);
    expect(nameMatcher("vm(1")("vm1")).toBe(false);
  });

  it("does not compile patterns that backtrack without bound: a quantified group or many quantifiers", () => {
    const hostile = "a".repeat(40);
    // As regular expressions these would take ~2^40 or ~40^9 steps on a non-matching name.
    expect(nameMatcher("(a+)+b")(hostile)).toBe(false);
    expect(nameMatcher("(a|aa)*b")(hostile)).toBe(false);
    expect(nameMatcher("a*a*a*a*a*a*a*a*a*b")(hostile)).toBe(false);
    // …and are then plain text.
    expect(nameMatcher("(a+)+b")("x(a+)+by")).toBe(true);
  });

  it("treats an over-long pattern as plain text", () => {
    const long = "x".repeat(300);
    expect(nameMatcher(long)(long)).toBe(true);
    expect(nameMatcher(long)("x")).toBe(false);
  });
});
