/** `okeanos file`'s argument handling, without a server (file.test.ts runs the commands against one). */
import { describe, expect, it } from "vitest";
import { UsageError } from "../output.ts";
import { loginOptions, parseRemote, sharingHeader } from "./file.ts";

describe("okeanos file arguments", () => {
  it("split CONTAINER[/PATH]", () => {
    expect(parseRemote("photos")).toEqual({ container: "photos", path: "" });
    expect(parseRemote("photos/")).toEqual({ container: "photos", path: "" });
    expect(parseRemote("/photos/2025/a b.jpg")).toEqual({ container: "photos", path: "2025/a b.jpg" });
    expect(() => parseRemote("/")).toThrow(UsageError);
  });

  it("build X-Object-Sharing", () => {
    expect(sharingHeader({ read: "u1, u2", write: "u3" })).toBe("read=u1,u2;write=u3");
    expect(sharingHeader({ write: "u3" })).toBe("write=u3");
    expect(sharingHeader({ clear: true })).toBe("");
    expect(() => sharingHeader({})).toThrow(UsageError);
    expect(() => sharingHeader({ clear: true, read: "u1" })).toThrow(UsageError);
  });

  it("take a token from the environment, or a user with a password", async () => {
    expect(await loginOptions({ url: "http://h:1/" }, { OKEANOS_TOKEN: "t", OKEANOS_STORAGE_URL: "http://h:1/object-store/v1/AUTH_u" })).toEqual({
      url: "http://h:1",
      token: "t",
      storageUrl: "http://h:1/object-store/v1/AUTH_u",
    });
    expect(await loginOptions({ url: "http://h:1", user: "alice" }, { OKEANOS_PASSWORD: "pw" })).toEqual({ url: "http://h:1", user: "alice", password: "pw" });
    await expect(loginOptions({ url: "http://h:1" }, {})).rejects.toThrow(/no credentials/);
    await expect(loginOptions({ url: "http://h:1", user: "alice" }, {})).rejects.toThrow(/no password for alice/);
  });
});
