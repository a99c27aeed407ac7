import { describe, expect, it } from "vitest";
import { guessContentType } from "./content-type.ts";

describe("guessContentType (swift.md 5)", () => {
  it.each([
    ["a.txt", "text/plain"],
    ["dir/notes.TXT", "text/plain"],
    ["photo.jpg", "image/jpeg"],
    ["data.json", "application/json"],
    ["page.html", "text/html"],
    ["noextension", "application/octet-stream"],
    ["unknown.zzzz", "application/octet-stream"],
    ["trailing.", "application/octet-stream"],
    [".hidden", "application/octet-stream"],
    ["..txt", "application/octet-stream"],
    ["a.d/b", "application/octet-stream"],
    ["photos.jpg/", "application/octet-stream"],
    ["archive.tar.gz", "application/gzip"],
  ])("%s → %s", (name, type) => {
    expect(guessContentType(name)).toBe(type);
  });
});
