/**
 * The two HTTP servers of the object-store benchmark, each run as its own child process so
 * the load generator's CPU never shares the server's event loop:
 *
 *   node bench/pithos/server.ts okeanos DIR [sha256]   the real server (identity + object
 *        store, gateways/pithos/testing/server.ts) over a file store and a SQLite database
 *        in DIR; creates user `bench` and container `c`, logs in
 *   node bench/pithos/server.ts ceiling DIR            plain node:http on loopback, no
 *        storage: PUT reads the body and discards it (201); GET /large?bytes=N&salt=S
 *        serves N bytes of the pattern from memory; any other GET serves 4 KiB from memory
 *   node bench/pithos/server.ts file DIR               plain node:http, one file per object
 *        under DIR/files: PUT streams the body into it and fsyncs it, GET streams it back
 *
 * All listen on 127.0.0.1 at a free port and then write DIR/ready.json
 * ({ baseUrl, token?, storageUrl? }). SIGTERM closes them cleanly (so that
 * `node --cpu-prof` writes its profile).
 */
import { createReadStream, createWriteStream } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { mkdir, rename, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { migrateToLatest, openDatabase } from "../../db/index.ts";
import { servePithos } from "../../gateways/pithos/testing/server.ts";
import { preparePattern, writePattern } from "./pattern.ts";
import { benchContainer, benchUser, smallObjectBytes, type ReadyInfo } from "./targets.ts";

async function announce(dir: string, info: ReadyInfo): Promise<void> {
  const temporary = join(dir, "ready.json.tmp");
  await writeFile(temporary, JSON.stringify(info));
  await rename(temporary, join(dir, "ready.json"));
}

function onTerminate(close: () => Promise<void>): void {
  process.once("SIGTERM", () => {
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
}

async function serveOkeanos(dir: string, hashAlgorithm: "blake3" | "sha256"): Promise<void> {
  const db = await openDatabase(`sqlite:${join(dir, "metadata.sqlite")}`);
  await migrateToLatest(db);
  // servePithos puts its file store under os.tmpdir(): the parent points TMPDIR at DIR.
  const served = await servePithos(db, { hashAlgorithm });
  await served.addUser(benchUser.name, benchUser.password);
  const { token, storageUrl } = await served.login(benchUser.name, benchUser.password);
  const response = await fetch(`${storageUrl}/${benchContainer}`, { method: "PUT", headers: { "x-auth-token": token } });
  if (response.status !== 201 && response.status !== 202) throw new Error(`creating container ${benchContainer}: ${response.status}`);
  onTerminate(async () => {
    await served.close();
    await db.close();
  });
  await announce(dir, { baseUrl: served.baseUrl, token, storageUrl, pid: process.pid });
}

/** The ceiling: bytes in and out of node:http, nothing stored. */
function ceilingHandler(): (request: IncomingMessage, response: ServerResponse) => void {
  const small = Buffer.alloc(smallObjectBytes, 0x5a);
  preparePattern();
  return (request, response) => {
    if (request.method === "PUT") {
      // Read every byte and drop it: the cost of receiving, nothing else.
      request.on("data", () => undefined);
      request.once("end", () => response.writeHead(201, { "content-length": "0" }).end());
      return;
    }
    const url = new URL(request.url ?? "/", "http://ceiling");
    if (url.pathname === "/large") {
      const totalBytes = Number(url.searchParams.get("bytes"));
      const salt = Number(url.searchParams.get("salt"));
      response.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(totalBytes) });
      writePattern(response, totalBytes, salt).then(
        () => response.end(),
        () => response.destroy(),
      );
      return;
    }
    response.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(small.length) }).end(small);
  };
}

/**
 * The plain file server: one file per object in DIR/files, the PUT body streamed into it
 * and fsync'ed before the 201 (createWriteStream's `flush`), GET streamed from it. What the
 * disk costs, with none of okeanos's work (blocks, hashes, maps, metadata).
 */
async function fileHandler(dir: string): Promise<(request: IncomingMessage, response: ServerResponse) => void> {
  const filesDir = join(dir, "files");
  await mkdir(filesDir, { recursive: true });
  const fail = (response: ServerResponse, status: number): void => void response.writeHead(status, { "content-length": "0" }).end();
  return (request, response) => {
    const name = basename(decodeURIComponent(new URL(request.url ?? "/", "http://file").pathname));
    const path = join(filesDir, name);
    if (request.method === "PUT") {
      pipeline(request, createWriteStream(path, { flush: true })).then(
        () => response.writeHead(201, { "content-length": "0" }).end(),
        () => fail(response, 500),
      );
      return;
    }
    stat(path).then(
      ({ size }) => {
        response.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(size) });
        pipeline(createReadStream(path), response).catch(() => response.destroy());
      },
      () => fail(response, 404),
    );
  };
}

async function servePlain(dir: string, kind: "ceiling" | "file"): Promise<void> {
  const server = createServer(kind === "ceiling" ? ceilingHandler() : await fileHandler(dir));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  onTerminate(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  await announce(dir, { baseUrl: `http://127.0.0.1:${port}`, pid: process.pid });
}

async function main(argv: readonly string[]): Promise<void> {
  const [kind, dir, hash] = argv;
  if (dir === undefined || (kind !== "okeanos" && kind !== "ceiling" && kind !== "file")) throw new Error("usage: node bench/pithos/server.ts okeanos|ceiling|file DIR [sha256]");
  if (kind === "okeanos") await serveOkeanos(dir, hash === "sha256" ? "sha256" : "blake3");
  else await servePlain(dir, kind);
}

await main(process.argv.slice(2));
