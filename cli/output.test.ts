import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CommanderError } from "commander";
import { describe, expect, it } from "vitest";
import { DbError, dbErrorCodes, type DbErrorCode } from "../db/index.ts";
import { EngineError, engineErrorCodes, type EngineErrorCode } from "../engine/errors.ts";
import { errorLines, exitCodeOf, exitCodes, LocalFileError, localFileError, table, UsageError } from "./output.ts";

describe("exit codes", () => {
  it("gives every EngineError code its own exit code, apart from the CLI's own", () => {
    const engineCodes = Object.keys(engineErrorCodes) as EngineErrorCode[];
    const numbers = engineCodes.map((code) => exitCodeOf(new EngineError(code, "x")));
    const dbCodes = Object.keys(dbErrorCodes) as DbErrorCode[];
    const dbNumbers = dbCodes.map((code) => exitCodeOf(new DbError(code, "x")));
    const remoteNumbers = Object.values(exitCodes.remote);
    expect(new Set([...numbers, ...dbNumbers, ...remoteNumbers, exitCodes.ok, exitCodes.internal, exitCodes.usage, exitCodes.file]).size).toBe(
      engineCodes.length + dbCodes.length + remoteNumbers.length + 4,
    );
    expect(exitCodeOf(new CommanderError(1, "commander.unknownOption", "error: unknown option"))).toBe(exitCodes.usage);
    expect(exitCodeOf(new UsageError("x"))).toBe(exitCodes.usage);
    expect(exitCodeOf(new LocalFileError("x"))).toBe(exitCodes.file);
    expect(exitCodeOf(new TypeError("x"))).toBe(exitCodes.internal);
  });

  it("are documented in cli/README.md exactly as the code has them", async () => {
    const readme = await readFile(join(import.meta.dirname, "README.md"), "utf8");
    const documented = new Map<string, number>();
    for (const match of readme.matchAll(/^\| (\d+) \| `?([A-Za-z_]+)`? \|/gm)) documented.set(match[2] as string, Number(match[1]));
    const expected = new Map<string, number>([
      ["ok", exitCodes.ok],
      ["internal", exitCodes.internal],
      ["usage", exitCodes.usage],
      ["file", exitCodes.file],
      ...Object.entries(exitCodes.engine),
      ...Object.entries(exitCodes.database).map(([code, exit]): [string, number] => [`DB_${code}`, exit]),
      ...Object.entries(exitCodes.remote).map(([code, exit]): [string, number] => [`REMOTE_${code}`, exit]),
      ...Object.entries(exitCodes.compute).map(([code, exit]): [string, number] => [`COMPUTE_${code}`, exit]),
    ]);
    expect(documented).toEqual(expected);
  });
});

describe("error lines", () => {
  it("prints operating errors as one line, without a stack", () => {
    expect(errorLines(new EngineError("ENOT_FOUND", "no volume named x"), false)).toEqual(["okeanos: no volume named x"]);
    expect(errorLines(new CommanderError(1, "commander.unknownCommand", "error: unknown command 'x'\n(Did you mean y?)"), true)).toEqual([
      "okeanos: unknown command 'x' (Did you mean y?)",
    ]);
  });

  it("marks unexpected errors and shows their stack only when debugging", () => {
    expect(errorLines(new TypeError("boom"), false)).toEqual(["okeanos: internal error: boom (OKEANOS_DEBUG=1 shows where)"]);
    const debug = errorLines(new TypeError("boom"), true);
    expect(debug[0]).toBe("okeanos: internal error: boom");
    expect(debug[1]).toMatch(/^TypeError: boom\n\s+at /);
  });

  it("names the file and the reason of a local file error", () => {
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/x/y'"), { code: "ENOENT" });
    expect(localFileError("open", "/x/y", enoent).message).toBe("cannot open /x/y: no such file or directory");
  });
});

describe("tables", () => {
  it("are plain aligned columns", () => {
    expect(table(["NAME", "SIZE"], [["vm1", "10 GiB"], ["a-longer-name", 5]])).toBe("NAME           SIZE\nvm1            10 GiB\na-longer-name  5");
  });
});
