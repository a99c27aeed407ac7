import { describe, expect, it } from "vitest";
import { hashPassword, verifyPassword } from "./password.ts";
import { LoginThrottle, throttledNamesMax } from "./throttle.ts";

describe("password hashing (scrypt)", () => {
  it("verifies the right password only, with a per-user salt", async () => {
    const first = await hashPassword("correct horse", { costLog2: 4 });
    const second = await hashPassword("correct horse", { costLog2: 4 });
    expect(first).toMatch(/^\$scrypt\$ln=4,r=8,p=1\$/);
    expect(first).not.toBe(second);
    expect(await verifyPassword("correct horse", first)).toBe(true);
    expect(await verifyPassword("correct horsf", first)).toBe(false);
    expect(await verifyPassword("x", "not a hash")).toBe(false);
    expect(await verifyPassword("x", "$scrypt$ln=40,r=8,p=1$AAAA$AAAA")).toBe(false);
  });

  it("the default cost hashes and verifies", async () => {
    const stored = await hashPassword("pw");
    expect(stored).toMatch(/^\$scrypt\$ln=15,/);
    expect(await verifyPassword("pw", stored)).toBe(true);
  });
});

describe("LoginThrottle", () => {
  it("bounds the names it tracks", () => {
    const throttle = new LoginThrottle({ failuresMax: 1, now: () => 0 });
    throttle.recordFailure("first");
    for (let i = 0; i < throttledNamesMax; i++) throttle.recordFailure(`n${i}`);
    expect(throttle.retryAfterSeconds("first")).toBe(0); // evicted, oldest first
    expect(throttle.retryAfterSeconds(`n${throttledNamesMax - 1}`)).toBeGreaterThan(0);
  });
});
