/**
 * `okeanos store init|stats`: create a store, and see what it holds.
 */
import { Option, type Command } from "commander";
import { Engine } from "../../engine/engine.ts";
import { hashAlgorithms, type HashAlgorithm } from "../../engine/blocker/content.ts";
import { blockSizeDefaultBytes } from "../../engine/mapper/headers.ts";
import { examples, openStore, report, sizeArgument, withEngine, type GlobalOptions } from "../context.ts";
import { fieldTable, table, type Report } from "../output.ts";
import { formatBytes } from "../units.ts";

export function registerStoreCommands(program: Command): void {
  const store = program.command("store").description("create a store and see what it holds");

  store
    .command("init")
    .description(
      "initialise an empty store at --store (block size and hash are fixed for its lifetime); " +
        "a rados:POOL store needs the pool to exist (ceph osd pool create POOL), and connects with --ceph-conf and --ceph-id",
    )
    .addOption(new Option("--block-size <size>", "block size: a power of two from 4K to 32M").default(blockSizeDefaultBytes, "4M").argParser(sizeArgument))
    .addOption(new Option("--hash <algorithm>", "content hash of blocks (sha256 for Pithos+ compatibility)").choices(hashAlgorithms).default("blake3"))
    .addHelpText(
      "after",
      examples(
        "okeanos store init",
        "okeanos --store file:/srv/okeanos store init --block-size 4M --hash sha256",
        "okeanos --store rados:okeanos --ceph-conf /etc/ceph/ceph.conf --ceph-id okeanos store init",
        "OKEANOS_STORE=rados:volumes/tenant1 CEPH_CONF=/etc/ceph/ceph.conf okeanos store init",
      ),
    )
    .action((options: { blockSize: number; hash: HashAlgorithm }, command: Command) =>
      report(command, (global) => initStore(global, options.blockSize, options.hash)),
    );

  store
    .command("stats")
    .description("objects and bytes stored, logical bytes described by maps, dedup ratio")
    .addHelpText("after", examples("okeanos store stats", "okeanos store stats --json | jq .dedupRatio"))
    .action((_options: unknown, command: Command) => report(command, statsOfStore));
}

async function initStore(global: GlobalOptions, blockSizeBytes: number, hashAlgorithm: HashAlgorithm): Promise<Report> {
  const objects = await openStore(global, { create: true });
  let engine: Engine;
  try {
    engine = await Engine.init(objects, { blockSizeBytes, hashAlgorithm });
  } catch (error) {
    await objects.close();
    throw error;
  }
  try {
    const header = engine.maps.header;
    return {
      text: `Initialised store ${objects.uri}\n${fieldTable([
        ["block size", formatBytes(header.blockSizeBytes)],
        ["hash", header.hashAlgorithm],
        ["store id", header.storeId],
      ])}`,
      json: { uri: objects.uri, ...header },
    };
  } finally {
    await engine.close();
  }
}

async function statsOfStore(global: GlobalOptions): Promise<Report> {
  const stats = await withEngine(global, (engine) => engine.stats());
  const summary = fieldTable([
    ["store", stats.uri],
    ["block size", formatBytes(stats.blockSizeBytes)],
    ["hash", stats.hashAlgorithm],
    ["volumes", stats.volumes],
    ["snapshots", stats.snapshots],
    ["images", stats.images],
    ["objects", stats.objects],
    ["bytes stored", bytesWithExact(stats.storedBytes)],
    ["logical bytes", bytesWithExact(stats.logicalBytes)],
    ["block bytes stored", bytesWithExact(stats.storedBlockBytes)],
    ["dedup ratio", stats.dedupRatio.toFixed(2)],
  ]);
  const kinds = Object.entries(stats.byKind).sort(([a], [b]) => (a < b ? -1 : 1));
  const byKind = table(
    ["KIND", "OBJECTS", "BYTES"],
    kinds.map(([kind, slot]) => [kind, slot.objects, formatBytes(slot.bytes)]),
  );
  return { text: kinds.length === 0 ? summary : `${summary}\n\n${byKind}`, json: stats };
}

function bytesWithExact(bytes: number): string {
  return bytes < 1024 ? formatBytes(bytes) : `${formatBytes(bytes)} (${bytes} bytes)`;
}
