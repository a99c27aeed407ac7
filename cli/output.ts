/**
 * Everything the CLI shows: tables for people, JSON for scripts, progress bars on a
 * terminal, and errors as one line plus an exit code.
 *
 *   command action ──► Report { text, json } ──► stdout (text, or JSON with --json)
 *                 └──► Progress ──► stderr, only when stderr is a TTY
 *   thrown error ──► exitCodeOf(error) ──► `okeanos: <message>` on stderr
 */
import { CommanderError } from "commander";
import { createRequire } from "node:module";
import type TableConstructor from "cli-table3";
import { isComputeError, type ComputeErrorCode } from "../compute/errors.ts";
import { isDbError, type DbErrorCode } from "../db/errors.ts";
import { isEngineError, type EngineErrorCode } from "../engine/errors.ts";
import { isRemoteError, type RemoteErrorCode } from "./pithos-client/errors.ts";

/** What a command hands back to be printed: the human text and the machine value. */
export interface Report {
  text: string;
  json: unknown;
}

export function printReport(report: Report, json: boolean): void {
  const out = json ? JSON.stringify(report.json, null, 2) : report.text;
  if (out !== "") process.stdout.write(out.endsWith("\n") ? out : `${out}\n`);
}

// ── tables ─────────────────────────────────────────────────────────────────

/** Borderless, colourless columns (like `ls -l` or `kubectl get`): easy to read and to grep. */
const plainTable = {
  chars: {
    top: "", "top-mid": "", "top-left": "", "top-right": "",
    bottom: "", "bottom-mid": "", "bottom-left": "", "bottom-right": "",
    left: "", "left-mid": "", mid: "", "mid-mid": "",
    right: "", "right-mid": "", middle: "  ",
  },
  style: { head: [], border: [], "padding-left": 0, "padding-right": 0 },
};

/** For the modules loaded on first use: cli-table3 and cli-progress. */
const requireHere = createRequire(import.meta.url);

/** Loaded on first use: a command that prints a line, not a table, starts ~8 ms sooner. */
function loadTable(): typeof TableConstructor {
  return requireHere("cli-table3") as typeof TableConstructor;
}

export function table(head: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const Table = loadTable();
  const out = new Table({ ...plainTable, head: [...head] });
  for (const row of rows) out.push(row.map(String));
  return trimLines(out.toString());
}

/** Two columns, field and value, for one object (`volume info`, `store stats`). */
export function fieldTable(rows: ReadonlyArray<readonly [string, string | number]>): string {
  const Table = loadTable();
  const out = new Table(plainTable);
  for (const [field, value] of rows) out.push([`${field}:`, String(value)]);
  return trimLines(out.toString());
}

function trimLines(text: string): string {
  return text
    .split("\n")
    .map((line) => line.trimEnd())
    .join("\n");
}

// ── progress ───────────────────────────────────────────────────────────────

export interface Progress {
  update(value: number): void;
  stop(): void;
}

const noProgress: Progress = { update() {}, stop() {} };

/**
 * A progress bar on stderr when stderr is a terminal; otherwise nothing, so that logs and
 * pipes stay clean and stdout (the result, or its JSON) is never mixed with it.
 */
export function progressBar(label: string, total: number, unit: "bytes" | "blocks"): Progress {
  if (process.stderr.isTTY !== true || total <= 0) return noProgress;
  // Loaded on first use: only a terminal gets a bar, and cli-progress' ~17 modules would
  // cost every short command 25–50 ms of start-up.
  const cliProgress = requireHere("cli-progress") as typeof import("cli-progress");
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {shown} | ETA {eta_formatted}`,
      barsize: 30,
      hideCursor: true,
      clearOnComplete: true,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  const shown = (value: number): string => (unit === "bytes" ? `${formatMiB(value)}/${formatMiB(total)} MiB` : `${value}/${total} blocks`);
  bar.start(total, 0, { shown: shown(0) });
  return {
    update(value) {
      bar.update(value, { shown: shown(value) });
    },
    stop() {
      bar.stop();
    },
  };
}

function formatMiB(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(0);
}

// ── errors and exit codes ──────────────────────────────────────────────────

/**
 * Exit codes: one per EngineError, DbError and RemoteError code, so a script can tell "not found" from "locked"
 * without parsing messages. cli/README.md documents the same table (a test compares them).
 */
export const exitCodes = {
  ok: 0,
  /** Anything unexpected: a bug. OKEANOS_DEBUG=1 prints the stack. */
  internal: 1,
  /** The command line itself is wrong: unknown command or option, missing or malformed argument. */
  usage: 2,
  /** A local file named on the command line (import/export) could not be read or written. */
  file: 3,
  engine: {
    ENOT_FOUND: 10,
    EEXISTS: 11,
    EVOLUME_LOCKED: 12,
    ERANGE_PAST_END: 13,
    EREAD_ONLY: 14,
    EINVALID: 15,
    ENOT_FROZEN: 16,
    ECORRUPT: 17,
    ENO_STORE: 18,
    ECLOSED: 19,
    EIO: 20,
  } satisfies Record<EngineErrorCode, number>,
  /** The metadata database's DbError codes (user, token, quota commands); README: `DB_<code>`. */
  database: {
    ENOT_FOUND: 30,
    EEXISTS: 31,
    EINVALID: 32,
    EQUOTA_EXCEEDED: 33,
    EQUOTA_NEGATIVE: 34,
    ECOMMISSION_RESOLVED: 35,
    ECLIENT_KEY_REUSED: 36,
    EBUSY: 37,
    EUNSUPPORTED: 38,
    ECONFLICT: 39,
    EPRECONDITION: 40,
  } satisfies Record<DbErrorCode, number>,
  /** The object store over HTTP (`okeanos file`): cli/pithos-client/errors.ts; README: `REMOTE_<code>`. */
  remote: {
    EAUTH: 50,
    EFORBIDDEN: 51,
    ENOT_FOUND: 52,
    ECONFLICT: 53,
    EPRECONDITION: 54,
    EQUOTA: 55,
    EREFUSED: 56,
    ESERVER: 57,
    EUNREACHABLE: 58,
    EINTEGRITY: 59,
    EPROTOCOL: 60,
  } satisfies Record<RemoteErrorCode, number>,
  /** The compute service (`okeanos server`, `flavor`): compute/errors.ts; README: `COMPUTE_<code>`. */
  compute: {
    EBAD_REQUEST: 70,
    EUNAUTHORIZED: 71,
    EFORBIDDEN: 72,
    EQUOTA: 73,
    ENOT_FOUND: 74,
    ECONFLICT: 75,
    ENOT_ACCEPTABLE: 76,
    EINTERNAL: 77,
    ENOT_IMPLEMENTED: 78,
    EHYPERVISOR: 79,
  } satisfies Record<ComputeErrorCode, number>,
} as const;

/** An error about a local file named on the command line (not the store): exit code 3. */
export class LocalFileError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LocalFileError";
  }
}

/** Wraps a Node fs error as a LocalFileError saying what we were doing with which file. */
export function localFileError(action: string, path: string, error: unknown): LocalFileError {
  const errno = error as NodeJS.ErrnoException;
  const reason = errno.code !== undefined ? errnoReason(errno) : String(error);
  return new LocalFileError(`cannot ${action} ${path}: ${reason}`, { cause: error });
}

function errnoReason(error: NodeJS.ErrnoException): string {
  // "ENOENT: no such file or directory, open '/x'" → "no such file or directory"
  const match = /^[A-Z0-9_]+: ([^,]+)/.exec(error.message);
  return match?.[1] ?? error.message;
}

/** A usage error found after commander parsed the line (e.g. conflicting arguments): exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function exitCodeOf(error: unknown): number {
  if (isEngineError(error)) return exitCodes.engine[error.code];
  if (isDbError(error)) return exitCodes.database[error.code];
  if (isRemoteError(error)) return exitCodes.remote[error.code];
  if (isComputeError(error)) return exitCodes.compute[error.code];
  if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : exitCodes.usage;
  if (error instanceof UsageError) return exitCodes.usage;
  if (error instanceof LocalFileError) return exitCodes.file;
  return exitCodes.internal;
}

/**
 * The lines printed on stderr for a failure: exactly one, plus the stack when debugging
 * (OKEANOS_DEBUG=1) — the only way to see where an unexpected error came from.
 */
export function errorLines(error: unknown, debug: boolean): string[] {
  const internal = exitCodeOf(error) === exitCodes.internal;
  const message = error instanceof Error ? error.message : String(error);
  // commander prefixes its own messages with "error: "; ours must stay one line.
  const oneLine = message.replace(/^error: /, "").replace(/\s*\n\s*/g, " ").trim();
  const hint = internal && !debug ? " (OKEANOS_DEBUG=1 shows where)" : "";
  const lines = [`okeanos: ${internal ? "internal error: " : ""}${oneLine}${hint}`];
  if (debug && error instanceof Error && !(error instanceof CommanderError) && error.stack !== undefined) lines.push(error.stack);
  return lines;
}
