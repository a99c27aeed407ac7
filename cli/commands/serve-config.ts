/**
 * `okeanos serve`'s configuration: command-line flags, then environment variables, then a
 * JSON file (`--config PATH` or OKEANOS_CONFIG), then the defaults — the first that sets a
 * setting wins. Every setting has all three forms:
 *
 *   file key       flag              environment
 *   port           --port            OKEANOS_PORT
 *   bind           --bind            OKEANOS_BIND
 *   publicUrl      --public-url      OKEANOS_PUBLIC_URL
 *   logLevel       --log-level       OKEANOS_LOG_LEVEL
 *   serviceUsers   --service-user    OKEANOS_SERVICE_USERS (comma-separated)
 *   nbd            --no-nbd          OKEANOS_NBD (0 turns it off)
 *   nbdSocket      --nbd-socket      OKEANOS_NBD_SOCKET
 *   nbdPort        --nbd-port        OKEANOS_NBD_PORT
 *   compute        --no-compute      OKEANOS_COMPUTE (0 turns it off)
 *   computeDir     --compute-dir     OKEANOS_COMPUTE_DIR
 *   database       --database        OKEANOS_DATABASE
 *   store          --store           OKEANOS_STORE
 *
 * A file key we do not know, or a value of the wrong type, is a usage error naming it: a typo
 * in a configuration file must not silently fall back to a default.
 */
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { LocalFileError, UsageError } from "../output.ts";

export interface ServeConfigFile {
  port?: number;
  bind?: string;
  publicUrl?: string;
  logLevel?: string;
  serviceUsers?: string[];
  nbd?: boolean;
  nbdSocket?: string;
  nbdPort?: number;
  compute?: boolean;
  computeDir?: string;
  database?: string;
  store?: string;
}

type Kind = "port" | "string" | "strings" | "boolean";

/** Each file key, its type, and the commander option it fills (attribute name, on which command). */
export const serveSettings: ReadonlyArray<{ key: keyof ServeConfigFile; kind: Kind; option: string; global?: true }> = [
  { key: "port", kind: "port", option: "port" },
  { key: "bind", kind: "string", option: "bind" },
  { key: "publicUrl", kind: "string", option: "publicUrl" },
  { key: "logLevel", kind: "string", option: "logLevel" },
  { key: "serviceUsers", kind: "strings", option: "serviceUser" },
  { key: "nbd", kind: "boolean", option: "nbd" },
  { key: "nbdSocket", kind: "string", option: "nbdSocket" },
  { key: "nbdPort", kind: "port", option: "nbdPort" },
  { key: "compute", kind: "boolean", option: "compute" },
  { key: "computeDir", kind: "string", option: "computeDir" },
  { key: "database", kind: "string", option: "database" },
  { key: "store", kind: "string", option: "store", global: true },
];

function checkValue(key: string, kind: Kind, value: unknown, where: string): unknown {
  const ok =
    kind === "port"
      ? Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 65535
      : kind === "string"
        ? typeof value === "string" && value !== ""
        : kind === "boolean"
          ? typeof value === "boolean"
          : Array.isArray(value) && value.every((item) => typeof item === "string" && item !== "");
  if (!ok) {
    const expected = { port: "a port number (0-65535)", string: "a non-empty string", boolean: "true or false", strings: "a list of strings" }[kind];
    throw new UsageError(`${where}: "${key}" must be ${expected}, not ${JSON.stringify(value)}`);
  }
  return value;
}

export async function readServeConfig(path: string): Promise<ServeConfigFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new LocalFileError(`cannot read the configuration file ${path}: ${(error as Error).message}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UsageError(`${path}: expected a JSON object of settings`);
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) {
    const setting = serveSettings.find((candidate) => candidate.key === key);
    if (setting === undefined) {
      throw new UsageError(`${path}: unknown setting "${key}" (known: ${serveSettings.map((s) => s.key).join(", ")})`);
    }
    config[key] = checkValue(key, setting.kind, value, path);
  }
  return config as ServeConfigFile;
}

/**
 * Fills every option the command line and the environment left at its default from the file.
 * `command` is the serve command; the store is a global option on its parent.
 */
export function applyServeConfig(command: Command, config: ServeConfigFile): void {
  for (const setting of serveSettings) {
    const value = config[setting.key];
    if (value === undefined) continue;
    const owner = setting.global === true ? (command.parent ?? command) : command;
    const source = owner.getOptionValueSource(setting.option);
    if (source === "cli" || source === "env") continue;
    owner.setOptionValueWithSource(setting.option, value, "config");
  }
}

/** OKEANOS_SERVICE_USERS, OKEANOS_NBD and OKEANOS_COMPUTE, which commander's `.env()` cannot express. */
export function applyServeEnvironment(command: Command, env: NodeJS.ProcessEnv = process.env): void {
  const users = env["OKEANOS_SERVICE_USERS"];
  if (users !== undefined && users !== "" && command.getOptionValueSource("serviceUser") !== "cli") {
    command.setOptionValueWithSource("serviceUser", users.split(",").map((user) => user.trim()).filter((user) => user !== ""), "env");
  }
  for (const [variable, option] of [["OKEANOS_NBD", "nbd"], ["OKEANOS_COMPUTE", "compute"]] as const) {
    const value = env[variable];
    if (value !== undefined && value !== "" && command.getOptionValueSource(option) !== "cli") {
      command.setOptionValueWithSource(option, !["0", "false", "no", "off"].includes(value.toLowerCase()), "env");
    }
  }
}
