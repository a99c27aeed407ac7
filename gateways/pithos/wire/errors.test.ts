import { describe, expect, it } from "vitest";
import { errorResponse, pithosErrors, PithosError, pythonQuote, rangeNotSatisfiable, statusPage, statusReasons, toPithosError, unauthorized } from "./errors.ts";

describe("Swift's error pages (swob.py RESPONSE_REASONS)", () => {
  it.each([
    [400, "<html><h1>Bad Request</h1><p>The server could not comply with the request since it is either malformed or otherwise incorrect.</p></html>"],
    [401, "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the document you requested.</p></html>"],
    [403, "<html><h1>Forbidden</h1><p>Access was denied to this resource.</p></html>"],
    [404, "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"],
    [409, "<html><h1>Conflict</h1><p>There was a conflict when trying to complete your request.</p></html>"],
    [411, "<html><h1>Length Required</h1><p>Content-Length header required.</p></html>"],
    [412, "<html><h1>Precondition Failed</h1><p>A precondition for this request was not met.</p></html>"],
    [413, "<html><h1>Request Entity Too Large</h1><p>The body of your request was too large for this server.</p></html>"],
    [416, "<html><h1>Requested Range Not Satisfiable</h1><p>The Range requested is not available.</p></html>"],
    [422, "<html><h1>Unprocessable Entity</h1><p>Unable to process the contained instructions</p></html>"],
    [500, "<html><h1>Internal Error</h1><p>The server has either erred or is incapable of performing the requested operation.</p></html>"],
    [503, "<html><h1>Service Unavailable</h1><p>The server is currently unavailable. Please try again at a later time.</p></html>"],
    [202, "<html><h1>Accepted</h1><p>The request is accepted for processing.</p></html>"],
  ])("%d", (status, page) => {
    expect(statusPage(status)).toBe(page);
  });

  it("every code in the table has a page", () => {
    for (const { status } of Object.values(pithosErrors)) expect(statusReasons[status]).toBeDefined();
  });
});

describe("errorResponse", () => {
  it("sends the page as text/html; charset=UTF-8, or nothing for HEAD", () => {
    const notFound = new PithosError("ENOT_FOUND");
    expect(errorResponse(notFound, "GET")).toEqual({
      status: 404,
      headers: { "Content-Type": "text/html; charset=UTF-8" },
      body: Buffer.from("<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"),
    });
    expect(errorResponse(notFound, "HEAD").body.length).toBe(0);
  });

  it("sends Swift's own sentence when there is one, with its Content-Type", () => {
    const limit = new PithosError("EPRECONDITION_FAILED", "Maximum limit is 10000");
    expect(errorResponse(limit, "GET")).toMatchObject({ status: 412, body: Buffer.from("Maximum limit is 10000") });
    const plain = new PithosError("EBAD_REQUEST", "No content type", { contentType: "text/plain" });
    expect(errorResponse(plain, "PUT").headers["Content-Type"]).toBe("text/plain");
  });

  it("401 names the realm, URL-quoted; 416 carries Content-Range", () => {
    expect(errorResponse(unauthorized("AUTH_test"), "GET").headers["Www-Authenticate"]).toBe('Swift realm="AUTH_test"');
    expect(unauthorized().headers["Www-Authenticate"]).toBe('Swift realm="unknown"');
    expect(unauthorized('a "b"').headers["Www-Authenticate"]).toBe('Swift realm="a%20%22b%22"');
    expect(errorResponse(rangeNotSatisfiable(1000), "GET")).toMatchObject({ status: 416, headers: { "Content-Range": "bytes */1000" } });
  });
});

describe("toPithosError", () => {
  it("passes ours through, keeps a framework 4xx status, hides anything else as 500", () => {
    const ours = new PithosError("ECONFLICT");
    expect(toPithosError(ours)).toBe(ours);
    expect(toPithosError(Object.assign(new Error("too big"), { statusCode: 413 })).code).toBe("ETOO_LARGE");
    expect(toPithosError(Object.assign(new Error("odd"), { statusCode: 418 })).code).toBe("EBAD_REQUEST");
    const internal = toPithosError(new Error("database password is hunter2"));
    expect(internal.status).toBe(500);
    expect(errorResponse(internal, "GET").body.toString()).not.toContain("hunter2");
    expect(toPithosError(null).status).toBe(500);
  });
});

describe("pythonQuote (urllib.parse.quote, safe='/'; vector from Python 3.11)", () => {
  it("quotes like Python", () => {
    expect(pythonQuote("AUTH_té st/x?")).toBe("AUTH_t%C3%A9%20st/x%3F");
    expect(pythonQuote("a-b.c_d~e")).toBe("a-b.c_d~e");
  });
});
