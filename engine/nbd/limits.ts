/**
 * Every limit of the NBD server in one place, each with where its value comes from
 * (TigerBeetle's constants.zig habit). Wire-format limits (request length, option length,
 * string length) are in protocol.ts; these are the server's own resource bounds.
 *
 * Worst-case memory of one connection in transmission:
 *   inFlightBytesMax (requests accepted, replies not yet handed to the kernel)
 *   + requestLengthMaxBytes (a WRITE payload already being received when we stop reading
 *     still lands in its buffer)
 *   + the socket's read buffer and the unparsed rest of one read copied out of it
 *     (each ≤ socketReadBufferBytes, 256 KiB)
 * ≈ 96 MiB; with connectionsMax connections the server is bounded by their product, and in
 * practice by the few that stream 32 MiB requests at once. In the kernel, each connection
 * also holds replies handed over but not yet read by the client: up to unixSendBufferBytes
 * (4 MiB) on a unix socket, net.ipv4.tcp_wmem's autotuned maximum on TCP.
 */
import assert from "node:assert/strict";
import { optionLengthMaxBytes, optionHeaderBytes, requestHeaderBytes, requestLengthMaxBytes } from "./protocol.ts";

/**
 * Requests one connection may have in flight (parsed, reply not yet written out). qemu keeps
 * at most 16 in flight per connection, fio's nbd engine iodepth 32 in the benchmark; 64
 * leaves room for both and bounds the reply slots we preallocate per connection.
 */
export const inFlightMax = 64;

/**
 * Bytes one connection may hold in accepted requests (WRITE payloads, READ results) before
 * we stop reading its socket: two maximum-size requests, so a client streaming 32 MiB
 * requests keeps one being served while the next arrives.
 */
export const inFlightBytesMax = 2 * requestLengthMaxBytes;

/**
 * Chunks in one structured READ reply. A READ is answered with OFFSET_DATA and OFFSET_HOLE
 * chunks following the map; past this many we send the whole range as one data chunk. 16
 * chunks of 20–32 header bytes fit the 512-byte header area of a reply slot.
 */
export const readChunksMax = 16;

/**
 * Extents in one BLOCK_STATUS chunk. proto.md lets the server describe less than asked
 * (clients loop); 1024 extents are an 8 KiB payload and at least 4 MiB of volume at the
 * smallest block size, enough for qemu-img map and nbdcopy to make progress in large steps.
 * (qemu-nbd's NBD_MAX_BLOCK_STATUS_EXTENTS is larger because it serves 512-byte granularity.)
 */
export const blockStatusExtentsMax = 1024;

/**
 * Blocks examined for one BLOCK_STATUS reply. A request may name up to 4 GiB; the map is
 * scanned in windows, and we stop after this many blocks (4 GiB of 64 KiB blocks, 256 MiB of
 * 4 KiB blocks) so one request cannot hold the event loop for long.
 */
export const blockStatusScanBlocksMax = 65_536;
/** Blocks handed to Volume.blockStatus at once while scanning (it allocates per block). */
export const blockStatusWindowBlocks = 4096;

/** Meta contexts one connection may select: base:allocation plus a few dirty bitmaps. */
export const metaContextsMax = 8;

/** Queries in one LIST/SET_META_CONTEXT (each ≤ 4096 bytes; the option is ≤ 64 KiB anyway). */
export const metaContextQueriesMax = 256;

/**
 * Snapshots listed for a `qemu:dirty-bitmap:` query: each costs one header read; more than
 * this and the client can still SET a bitmap by name.
 */
export const dirtyBitmapListMax = 256;

/** Names answered to NBD_OPT_LIST (one NBD_REP_SERVER each). */
export const exportListMax = 4096;

/**
 * A client that has not reached transmission after this long is disconnected (qemu-nbd uses
 * 10 s). 30 s leaves room for a loaded machine; an honest handshake takes milliseconds.
 */
export const handshakeTimeoutMs = 30_000;

/** Options one connection may send before it must choose an export (guards option loops). */
export const optionsPerConnectionMax = 1024;

/**
 * Connections served at once. Each costs up to ~96 MiB in the worst case (see above) and one
 * shared volume per export; 128 is far more than the VMs of one hypervisor.
 */
export const connectionsMax = 128;

/**
 * Graceful shutdown waits this long for in-flight requests and replies, then destroys the
 * remaining sockets. A 32 MiB write to a slow disk plus a flush takes well under this.
 */
export const shutdownTimeoutMs = 10_000;

/**
 * Idle request buffers the server keeps for reuse (all connections). Fresh large
 * allocations cost 1–2 ms per MiB on the machines we run on (../shared/notes/nbd.md), so WRITE
 * payload buffers are pooled; 64 MiB keeps a 32-deep queue of 1 MiB writes warm.
 */
export const bufferPoolIdleBytesMax = 64 * 1024 * 1024;
/** Smallest pooled buffer: one page; smaller writes share the 4 KiB class. */
export const bufferPoolClassMinBytes = 4096;

/**
 * Each connection's socket reads into one buffer of this size, reused for every read
 * (socket-input.ts). 256 KiB holds what a unix socket's default send buffer (~208 KiB) can
 * deliver at once, so a 1 MiB WRITE arrives in about 4 reads rather than Node's 16 of 64 KiB;
 * 128 connections hold 32 MiB of them.
 */
export const socketReadBufferBytes = 256 * 1024;

/** TCP keepalive probe delay: notices a peer that vanished without a FIN while idle. */
export const keepAliveDelayMs = 60_000;

/** The parser buffers at most one option (header + payload) plus the chunk that completed it. */
export const handshakeBufferedBytesMax = optionHeaderBytes + optionLengthMaxBytes;
/** In transmission the parser keeps at most a partial request header between chunks. */
export const requestBufferedBytesMax = requestHeaderBytes - 1;

// The limits must fit together.
assert.ok(inFlightBytesMax >= requestLengthMaxBytes, "one maximum-size request must fit in flight");
assert.ok(blockStatusWindowBlocks <= blockStatusScanBlocksMax);
assert.ok(readChunksMax >= 2, "a data chunk and a hole chunk at least");

/**
 * The kernel send buffer each unix-socket connection asks for (socket-buffer.ts; needs the NBD
 * addon): four 1 MiB READ replies, half a QD 8 burst, so one goes out in one write instead of
 * about five against the ~208 KiB default. 2 MiB measured about as fast as the default, 8 MiB
 * no faster than 4 (bench/RESULTS.md, nbd run 12). Kernel memory, taken only while the client
 * is slower to read than the server to reply.
 */
export const unixSendBufferBytes = 4 * 1024 * 1024;
