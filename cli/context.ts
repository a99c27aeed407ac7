/**
 * What every command shares: the global options and opening the engine on `--store`.
 */
import { InvalidArgumentError, type Command } from "commander";
import { Engine } from "../engine/engine.ts";
import { openObjectStore, type RadosConnectOptions } from "../engine/blocker/open-store.ts";
import type { ObjectStore } from "../engine/blocker/object-store.ts";
import { takeEarlyStore } from "./early-store.ts";
import { printReport, type Report } from "./output.ts";
import { parseDuration, parseSize } from "./units.ts";

export const storeUriDefault = "file:./data";

export interface GlobalOptions {
  store: string;
  json: boolean;
  /** How a rados: store connects: --ceph-conf and --ceph-id (commander reads $CEPH_CONF and $CEPH_ID for them). */
  rados: RadosConnectOptions;
}

export function globalOptions(command: Command): GlobalOptions {
  const options = command.optsWithGlobals<{ store?: string; json?: boolean; cephConf?: string; cephId?: string }>();
  return {
    store: options.store ?? storeUriDefault,
    json: options.json === true,
    rados: { ...(options.cephConf === undefined ? {} : { cephConf: options.cephConf }), ...(options.cephId === undefined ? {} : { cephId: options.cephId }) },
  };
}

/**
 * The global options' store, opened (`create`: a file store's directory may be made, for
 * `store init`); a rados: store's connection may have been started already (early-store.ts).
 */
export function openStore(options: GlobalOptions, open: { create?: boolean } = {}): Promise<ObjectStore> {
  return takeEarlyStore(options.store, options.rados) ?? openObjectStore(options.store, { ...open, rados: options.rados });
}

/** Opens the store's engine, runs `action`, closes the engine whatever happens. */
export async function withEngine<T>(options: GlobalOptions, action: (engine: Engine) => Promise<T>): Promise<T> {
  const objects = await openStore(options);
  const engine = await openEngine(objects);
  try {
    return await action(engine);
  } finally {
    await engine.close();
  }
}

async function openEngine(objects: ObjectStore): Promise<Engine> {
  try {
    return await Engine.open(objects);
  } catch (error) {
    await objects.close();
    throw error;
  }
}

/** Runs a command's handler with the global options and prints the Report it returns. */
export async function report(command: Command, handler: (options: GlobalOptions) => Promise<Report>): Promise<void> {
  const options = globalOptions(command);
  printReport(await handler(options), options.json);
}

/** commander argParsers: a malformed value is a usage error naming the option. */
export function sizeArgument(text: string): number {
  return asInvalidArgument(() => parseSize(text));
}

export function durationArgument(text: string): number {
  return asInvalidArgument(() => parseDuration(text));
}

function asInvalidArgument<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** "Examples:" help text appended to a command's --help. */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((line) => `  $ ${line}`).join("\n")}\n`;
}
