/**
 * A `rados:` store's connection, started before the command's own modules are loaded.
 *
 * Why: a short command on Ceph spends ~35 ms waiting for the monitor handshake and the pool,
 * and ~95 ms loading its modules (commander, the engine, the command), one after the other.
 * Started first, the connection proceeds on librados' threads while the main thread loads
 * the modules, and the command finds it open (bench/RESULTS.md, "RADOS run 8").
 *
 * The guess is made from a scan of the command line (scanArgs), before commander has parsed
 * it; the command then asks for its store with the options commander parsed, and gets the
 * early connection only if they are the same store and Ceph client (takeEarlyStore). Any
 * other outcome (another store, a usage error, a command that never opens one) closes it.
 */
import type { ObjectStore } from "../engine/blocker/object-store.ts";
import { radosStoreTarget, type RadosConnectOptions } from "../engine/blocker/open-store.ts";

/** The commands that open the `--store` (cli/commands): only these connect early. */
const storeCommands = new Set(["store", "volume", "gc", "nbd", "image"]);

/** The program's global options that take a value (the rest are flags). */
export const globalOptionsWithValue: ReadonlySet<string> = new Set(["--store", "--ceph-conf", "--ceph-id"]);

export interface ScannedArgs {
  /** The first word that is not an option or an option's value (none after `--`). */
  firstWord: string | undefined;
  /** The last value given to each global option, as `--opt value` or `--opt=value`. */
  globalValues: ReadonlyMap<string, string>;
  asksForHelp: boolean;
}

/** A first look at a command line, without commander (main.ts and the early connection). */
export function scanArgs(args: readonly string[]): ScannedArgs {
  let firstWord: string | undefined;
  let asksForHelp = false;
  const globalValues = new Map<string, string>();
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (arg === "--") break;
    if (!arg.startsWith("-")) {
      firstWord ??= arg;
      continue;
    }
    if (arg === "-h" || arg === "--help") asksForHelp = true;
    const equals = arg.indexOf("=");
    if (equals !== -1 && globalOptionsWithValue.has(arg.slice(0, equals))) globalValues.set(arg.slice(0, equals), arg.slice(equals + 1));
    else if (globalOptionsWithValue.has(arg) && index + 1 < args.length) globalValues.set(arg, args[++index]!);
  }
  return { firstWord, globalValues, asksForHelp };
}

interface EarlyStore {
  key: string;
  store: Promise<ObjectStore>;
  /** Set once the connection attempt is over: the store, or undefined if it failed. */
  outcome?: { opened: ObjectStore | undefined };
}

let early: EarlyStore | undefined;

/** Which store and Ceph client a connection is for; the environment fills in what options leave out, as commander and RadosObjectStore do. */
function storeKey(uri: string, rados: RadosConnectOptions, env: NodeJS.ProcessEnv): string {
  return JSON.stringify([uri, rados.cephConf ?? env["CEPH_CONF"] ?? null, rados.cephId ?? env["CEPH_ID"] ?? null, rados.keyring ?? null]);
}

/**
 * Starts connecting to the store `args` name, if it is a `rados:` one and the command opens
 * it; otherwise does nothing. Resolves once the connection is under way (the backend's module
 * and librados loaded, the connect issued), so that the modules loaded next overlap it.
 * Never rejects: a failure is the command's to report, when it opens the store itself.
 */
export async function openStoreEarly(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const scanned = scanArgs(args);
  if (scanned.asksForHelp || scanned.firstWord === undefined || !storeCommands.has(scanned.firstWord)) return;
  const uri = scanned.globalValues.get("--store") ?? env["OKEANOS_STORE"];
  if (uri === undefined || !uri.toLowerCase().startsWith("rados:")) return;
  const cephConf = scanned.globalValues.get("--ceph-conf");
  const cephId = scanned.globalValues.get("--ceph-id");
  const rados: RadosConnectOptions = { ...(cephConf === undefined ? {} : { cephConf }), ...(cephId === undefined ? {} : { cephId }) };
  let store: Promise<ObjectStore>;
  try {
    const target = radosStoreTarget(uri, rados);
    const { RadosObjectStore } = await import("../engine/blocker/rados/rados.ts");
    // Runs up to the connect call before it returns.
    store = RadosObjectStore.open(target);
  } catch {
    return;
  }
  const started: EarlyStore = { key: storeKey(uri, rados, env), store };
  store.then(
    (opened) => (started.outcome = { opened }),
    () => (started.outcome = { opened: undefined }),
  );
  early = started;
}

/**
 * The early connection, if it is to the store the command asks for (and nobody took it yet);
 * an early connection to another store is closed.
 */
export function takeEarlyStore(uri: string, rados: RadosConnectOptions, env: NodeJS.ProcessEnv = process.env): Promise<ObjectStore> | undefined {
  const taken = early;
  if (taken === undefined) return undefined;
  early = undefined;
  if (taken.key === storeKey(uri, rados, env)) return taken.store;
  closeQuietly(taken.store);
  return undefined;
}

/**
 * Closes an early connection the command did not take, now or, if it is still connecting,
 * once it connects. "pending" in that case (a cluster that does not answer): the caller
 * should exit rather than wait for librados' mount timeout.
 */
export async function closeUntakenStore(): Promise<"none" | "closed" | "pending"> {
  const untaken = early;
  if (untaken === undefined) return "none";
  early = undefined;
  if (untaken.outcome === undefined) {
    closeQuietly(untaken.store);
    return "pending";
  }
  await untaken.outcome.opened?.close().catch(() => undefined);
  return "closed";
}

/**
 * Exits with `code` when closeUntakenStore said "pending": a normal exit would join libuv's
 * thread pool, where librados' connect blocks until its mount timeout (30 s). What was
 * written is kept: Node writes stdout and stderr synchronously on Linux (files, pipes and
 * terminals).
 */
export async function exitAtOnce(code: number): Promise<never> {
  const { loadRadosAddon } = await import("../engine/blocker/rados/native.ts");
  try {
    loadRadosAddon().exitNow?.(code);
  } catch {
    // no addon: nothing of librados' can be holding the exit either
  }
  process.exit(code);
}

function closeQuietly(store: Promise<ObjectStore>): void {
  store.then(
    (opened) => opened.close().catch(() => undefined),
    () => undefined,
  );
}
