/**
 * A throwaway PostgreSQL server for tests, from Debian's packages (`postgresql`): initdb into a
 * temporary folder, `pg_ctl start` listening only on a unix socket in that folder, and gone
 * again after the suite. Nothing outside the folder is touched; no port is opened.
 *
 *   /tmp/okeanos-pg-XXXXXX/      owned by the server's user
 *   ├── data/                    the cluster (fsync off: a crash of the test loses nothing we want)
 *   ├── .s.PGSQL.5432            the socket: postgresql://okeanos@/<db>?host=/tmp/okeanos-pg-XXXXXX
 *   └── server.log
 *
 * initdb and postgres refuse to run as root. As root (CI), both run as the `postgres` user the
 * Debian package creates (else `nobody`) through runuser(1), util-linux; a developer who is not
 * root runs them as themself.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { chown, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

/** What initdb makes the superuser; tests connect as it, with trust authentication. */
const superuser = "okeanos";
/** sockaddr_un.sun_path is 108 bytes on Linux, with its terminating NUL. */
const socketPathLengthMax = 107;
/** initdb takes ~1.5 s here and pg_ctl's start ~0.3 s; a loaded 2-core CI machine gets 60 s. */
const startTimeoutSeconds = 60;

export interface PostgresInstallation {
  binDir: string;
}

/**
 * The newest /usr/lib/postgresql/<version>/bin with initdb, pg_ctl and postgres, or the folder
 * in OKEANOS_POSTGRES_BIN. Undefined when there is none.
 */
export function findPostgres(): PostgresInstallation | undefined {
  const candidates: string[] = [];
  const override = process.env.OKEANOS_POSTGRES_BIN;
  if (override) candidates.push(override);
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((name) => /^\d+(\.\d+)?$/.test(name))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((version) => join(root, version, "bin")));
  }
  const binDir = candidates.find((dir) => ["initdb", "pg_ctl", "postgres"].every((tool) => existsSync(join(dir, tool))));
  return binDir === undefined ? undefined : { binDir };
}

interface RunAs {
  user: string;
  uid: number;
  gid: number;
}

/** Who runs the server: undefined = this process's own user (not root). */
function serverUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const user of ["postgres", "nobody"]) {
    const uid = spawnSync("id", ["-u", user], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", user], { encoding: "utf8" });
    if (uid.status === 0 && gid.status === 0) return { user, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  }
  throw new Error("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as");
}

function command(runAs: RunAs | undefined, program: string, args: string[]): [string, string[]] {
  return runAs === undefined ? [program, args] : ["runuser", ["-u", runAs.user, "--", program, ...args]];
}

/** Runs to completion; stdio is not piped, since a server started by pg_ctl would inherit pipes. */
async function run(runAs: RunAs | undefined, program: string, args: string[]): Promise<void> {
  const [file, argv] = command(runAs, program, args);
  await new Promise<void>((resolve, reject) => {
    const child = spawn(file, argv, { stdio: "ignore" });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${program} ${args.join(" ")} failed (${signal ?? `exit ${code}`})`));
    });
  });
}

export class TestPostgresServer {
  readonly #installation: PostgresInstallation;
  readonly #runAs: RunAs | undefined;
  readonly #dir: string;
  #databaseCount = 0;
  #stopped = false;
  readonly #stopOnExit = (): void => {
    // The suite did not reach afterAll (a crash): leave no server behind.
    const [file, argv] = command(this.#runAs, join(this.#installation.binDir, "pg_ctl"), ["stop", "-D", this.#dataDir, "-m", "immediate"]);
    spawnSync(file, argv, { stdio: "ignore" });
  };

  private constructor(installation: PostgresInstallation, runAs: RunAs | undefined, dir: string) {
    this.#installation = installation;
    this.#runAs = runAs;
    this.#dir = dir;
  }

  get #dataDir(): string {
    return join(this.#dir, "data");
  }

  get socketDir(): string {
    return this.#dir;
  }

  static async start(installation: PostgresInstallation): Promise<TestPostgresServer> {
    const runAs = serverUser();
    const dir = await mkdtemp(join(tmpdir(), "okeanos-pg-"));
    const socketPath = join(dir, ".s.PGSQL.5432");
    if (socketPath.length > socketPathLengthMax) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`socket path ${socketPath} is longer than ${socketPathLengthMax} bytes: set TMPDIR to a shorter folder`);
    }
    if (runAs !== undefined) await chown(dir, runAs.uid, runAs.gid);
    const server = new TestPostgresServer(installation, runAs, dir);
    try {
      await server.#initAndStart();
    } catch (error) {
      const log = await readFile(join(dir, "server.log"), "utf8").catch(() => "(no server log)");
      await rm(dir, { recursive: true, force: true });
      throw new Error(`could not start PostgreSQL from ${installation.binDir}: ${String(error)}\n${log}`, { cause: error });
    }
    return server;
  }

  async #initAndStart(): Promise<void> {
    const bin = this.#installation.binDir;
    // C collation and UTF8: the same order and encoding on every machine.
    await run(this.#runAs, join(bin, "initdb"), ["-D", this.#dataDir, "-U", superuser, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"]);
    const serverOptions = [
      `-k '${this.#dir}'`,
      "-c listen_addresses=''",
      // A throwaway cluster: durability costs time and buys nothing.
      "-c fsync=off",
      "-c synchronous_commit=off",
      "-c full_page_writes=off",
    ].join(" ");
    process.on("exit", this.#stopOnExit);
    await run(this.#runAs, join(bin, "pg_ctl"), [
      "start",
      "-D",
      this.#dataDir,
      "-w",
      "-t",
      String(startTimeoutSeconds),
      "-l",
      join(this.#dir, "server.log"),
      "-o",
      serverOptions,
    ]);
  }

  /** The URL of a database on this server. */
  url(database: string): string {
    return `postgresql://${superuser}@/${encodeURIComponent(database)}?host=${encodeURIComponent(this.#dir)}`;
  }

  /**
   * Creates a new database and returns its name: empty, or a copy of `template` (which must
   * have no open connections). Copying by FILE_COPY (PostgreSQL 15+) takes ~0.25 s here against
   * ~0.8 s for the default WAL_LOG, which writes the whole template through the WAL.
   */
  async createDatabase(template = "template1"): Promise<string> {
    const name = `okeanos_test_${process.pid}_${++this.#databaseCount}`;
    const client = new pg.Client({ host: this.#dir, user: superuser, database: "postgres" });
    await client.connect();
    try {
      const version = await client.query<{ server_version_num: string }>("show server_version_num");
      const fileCopy = Number(version.rows[0]!.server_version_num) >= 150000 ? "strategy = file_copy" : "";
      await client.query(`create database "${name}" template "${template}" ${fileCopy}`);
    } finally {
      await client.end();
    }
    return name;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    process.off("exit", this.#stopOnExit);
    try {
      await run(this.#runAs, join(this.#installation.binDir, "pg_ctl"), ["stop", "-D", this.#dataDir, "-m", "fast", "-w"]);
    } finally {
      await rm(this.#dir, { recursive: true, force: true });
    }
  }
}
