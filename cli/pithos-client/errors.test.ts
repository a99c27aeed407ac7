import { describe, expect, it } from "vitest";
import { errorLines, exitCodeOf, exitCodes } from "../output.ts";
import { errorForFailure, errorForStatus, RemoteError, remoteCodeForStatus, remoteErrorCodes, serverReason, type RemoteErrorCode } from "./errors.ts";

describe("remote errors", () => {
  it("map HTTP statuses to codes", () => {
    expect([401, 403, 404, 409, 412, 413, 400, 411, 416, 422, 500, 503].map(remoteCodeForStatus)).toEqual([
      "EAUTH", "EFORBIDDEN", "ENOT_FOUND", "ECONFLICT", "EPRECONDITION", "EQUOTA", "EREFUSED", "EREFUSED", "EREFUSED", "EREFUSED", "ESERVER", "ESERVER",
    ]);
  });

  it("each have their own exit code", () => {
    for (const code of Object.keys(remoteErrorCodes) as RemoteErrorCode[]) {
      expect(exitCodeOf(new RemoteError(code, "x"))).toBe(exitCodes.remote[code]);
    }
  });

  it("quote the server's own explanation, on one line", () => {
    expect(serverReason("<html><h1>Not Found</h1><p>The resource could not be found.</p></html>")).toBe("The resource could not be found.");
    expect(serverReason('{"error":{"code":401,"title":"Unauthorized","message":"The request you have made requires authentication."}}')).toBe(
      "The request you have made requires authentication.",
    );
    expect(serverReason("plain\n  text")).toBe("plain text");
    const error = errorForStatus("download c/o", 503, "<html><h1>Service Unavailable</h1></html>", "req-1");
    expect(error.message).toBe("download c/o: Service Unavailable (HTTP 503, request req-1)");
    expect(errorLines(error, false)).toEqual(["okeanos: download c/o: Service Unavailable (HTTP 503, request req-1)"]);
    expect(errorForStatus("list c", 404, "", null).message).toBe("list c: not found (HTTP 404)");
  });

  it("say why a server could not be reached", () => {
    const refused = new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }) });
    const error = errorForFailure("list containers", "http://127.0.0.1:1/object-store/v1/AUTH_x", refused);
    expect(error.code).toBe("EUNREACHABLE");
    expect(error.message).toBe("list containers: cannot reach http://127.0.0.1:1: connection refused (ECONNREFUSED)");
  });
});
