/**
 * Option haggling (proto.md "Option haggling", "Option types"): one handler per option,
 * each turning an option into the replies to send and what happens next. No sockets here;
 * the session sends the replies in order and changes state.
 *
 *   EXPORT_NAME ─► size+flags, no reply header ─► transmission   (unknown export: close)
 *   GO / INFO   ─► INFO records, ACK ─► (GO) transmission         (unknown: ERR_UNKNOWN)
 *   LIST        ─► SERVER per export, ACK
 *   ABORT       ─► ACK, close
 *   STRUCTURED_REPLY ─► ACK (again or with data: ERR_INVALID)
 *   LIST/SET_META_CONTEXT ─► META_CONTEXT per context, ACK (before STRUCTURED_REPLY: ERR_INVALID)
 *   STARTTLS    ─► ACK, then the session runs the TLS handshake (tls.ts)
 *                  (TLS off: ERR_POLICY; with data, or TLS already up: ERR_INVALID)
 *   EXTENDED_HEADERS, PEEK_EXPORT, anything else ─► ERR_UNSUP
 *
 * With TLS required and not yet running, every option but STARTTLS and ABORT gets
 * ERR_TLS_REQD, and EXPORT_NAME (which cannot carry an error) closes (proto.md "FORCEDTLS").
 */
import type { Logger } from "./logger.ts";
import type { ExportInfo, ExportLease, ExportRegistry } from "./exports.ts";
import { optionErrorOf } from "./errors.ts";
import { TlsMode } from "./tls.ts";
import { listContexts, selectContexts, type MetaContext } from "./meta-context.ts";
import { decodeInfoRequest, decodeMetaContextRequest, isOptionDataError } from "./option-data.ts";
import {
  blockSizeMaximumBytes,
  blockSizeMinimumBytes,
  blockSizePreferredBytes,
  Info,
  Option,
  OptionReply,
} from "./protocol.ts";
import { transmissionFlagsFor } from "./transmission.ts";
import {
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeMetaContext,
  encodeOptionAck,
  encodeOptionError,
  encodeServerEntry,
  type OptionMessage,
} from "./wire.ts";

/** What the options so far have agreed on. */
export interface Negotiation {
  /** NBD_FLAG_C_NO_ZEROES: no 124 zero bytes after the EXPORT_NAME reply. */
  noZeroes: boolean;
  structured: boolean;
  /** The last SET_META_CONTEXT's selection, valid only for GO to the same export. */
  meta: { exportName: string; contexts: MetaContext[] } | undefined;
  /** TLS runs on this connection (STARTTLS was acknowledged and its handshake succeeded). */
  tls: boolean;
}

export type OptionOutcome =
  | { next: "continue" | "close"; replies: Buffer[] }
  /** Send the ACK, then run the TLS handshake before reading the next option. */
  | { next: "starttls"; replies: Buffer[] }
  | { next: "transmission"; replies: Buffer[]; lease: ExportLease; transmissionFlags: number; contexts: MetaContext[] };

export interface OptionContext {
  registry: ExportRegistry;
  logger: Logger;
  tlsMode: TlsMode;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export async function handleOption(message: OptionMessage, negotiation: Negotiation, context: OptionContext): Promise<OptionOutcome> {
  try {
    return await dispatch(message, negotiation, context);
  } catch (failure) {
    // The engine failed under us (listing, diffing): the option gets an error, the
    // handshake goes on. EXPORT_NAME cannot carry an error: it closes in exportName().
    context.logger.warn({ option: message.option, err: String(failure) }, "option failed");
    return error(message.option, optionErrorOf(failure), failure instanceof Error ? failure.message : String(failure));
  }
}

async function dispatch(message: OptionMessage, negotiation: Negotiation, context: OptionContext): Promise<OptionOutcome> {
  const { option, data } = message;
  if (context.tlsMode === TlsMode.REQUIRE && !negotiation.tls && option !== Option.STARTTLS && option !== Option.ABORT) {
    // proto.md "FORCEDTLS": ERR_TLS_REQD for every other option, INFO and unknown ones
    // included; EXPORT_NAME cannot be answered with an error, so the server MUST disconnect.
    if (option === Option.EXPORT_NAME) {
      context.logger.warn({ option }, "EXPORT_NAME before STARTTLS with TLS required: closing");
      return { next: "close", replies: [] };
    }
    return error(option, OptionReply.ERR_TLS_REQD, "this server requires TLS: send STARTTLS first");
  }
  switch (option) {
    case Option.EXPORT_NAME:
      return exportName(data, negotiation, context);
    case Option.GO:
    case Option.INFO:
      return infoOrGo(option, data, negotiation, context);
    case Option.LIST:
      if (data.length !== 0) return error(option, OptionReply.ERR_INVALID, "LIST takes no data");
      return reply([...(await context.registry.names()).map((name) => encodeServerEntry(option, name)), encodeOptionAck(option)]);
    case Option.ABORT:
      // proto.md: the server SHOULD reply with ACK, then close.
      return { next: "close", replies: [encodeOptionAck(option)] };
    case Option.STRUCTURED_REPLY:
      if (data.length !== 0) return error(option, OptionReply.ERR_INVALID, "STRUCTURED_REPLY takes no data");
      if (negotiation.structured) return error(option, OptionReply.ERR_INVALID, "structured replies are already negotiated");
      negotiation.structured = true;
      return reply([encodeOptionAck(option)]);
    case Option.LIST_META_CONTEXT:
    case Option.SET_META_CONTEXT:
      return metaContext(option, data, negotiation, context);
    case Option.STARTTLS:
      // proto.md "NOTLS mode": ERR_POLICY; "NBD_OPT_STARTTLS": data → ERR_INVALID; TLS
      // already negotiated → ERR_INVALID. Otherwise ACK, and the session upgrades.
      if (context.tlsMode === TlsMode.OFF) return error(option, OptionReply.ERR_POLICY, "TLS is not configured on this server");
      if (data.length !== 0) return error(option, OptionReply.ERR_INVALID, "STARTTLS takes no data");
      if (negotiation.tls) return error(option, OptionReply.ERR_INVALID, "TLS is already running on this connection");
      return { next: "starttls", replies: [encodeOptionAck(option)] };
    case Option.EXTENDED_HEADERS:
      return error(option, OptionReply.ERR_UNSUP, "extended headers are not supported");
    default:
      return error(option, OptionReply.ERR_UNSUP, `option ${option} is not supported`);
  }
}

function reply(replies: Buffer[]): OptionOutcome {
  return { next: "continue", replies };
}

function error(option: number, errorType: number, text: string): OptionOutcome {
  return reply([encodeOptionError(option, errorType, text)]);
}

/** Contexts from SET_META_CONTEXT carry over to the export they were selected for, only. */
function contextsFor(negotiation: Negotiation, exportName: string): MetaContext[] {
  return negotiation.meta !== undefined && negotiation.meta.exportName === exportName ? negotiation.meta.contexts : [];
}

/** The old way in: no reply header, and no way to send an error, so failure closes. */
async function exportName(data: Buffer, negotiation: Negotiation, context: OptionContext): Promise<OptionOutcome> {
  let name: string;
  try {
    name = utf8.decode(data);
  } catch {
    return { next: "close", replies: [] };
  }
  let lease: ExportLease;
  try {
    lease = await context.registry.acquire(name);
  } catch (failure) {
    context.logger.warn({ export: name, err: String(failure) }, "EXPORT_NAME refused: closing");
    return { next: "close", replies: [] };
  }
  const transmissionFlags = transmissionFlagsFor(lease.volume.readOnly, negotiation.structured);
  return {
    next: "transmission",
    replies: [encodeExportNameReply(lease.volume.sizeBytes, transmissionFlags, negotiation.noZeroes)],
    lease,
    transmissionFlags,
    contexts: contextsFor(negotiation, lease.name),
  };
}

async function infoOrGo(option: number, data: Buffer, negotiation: Negotiation, context: OptionContext): Promise<OptionOutcome> {
  const request = decodeInfoRequest(data, option === Option.GO ? "GO" : "INFO");
  if (isOptionDataError(request)) return error(option, request.error, request.message);
  const info = await describe(context, request.exportName);
  if (isOptionDataError(info)) return error(option, info.error, info.message);
  let lease: ExportLease | undefined;
  let sizeBytes = info.sizeBytes;
  let readOnly = info.readOnly;
  if (option === Option.GO) {
    try {
      lease = await context.registry.acquire(info.name);
    } catch (failure) {
      context.logger.warn({ export: info.name, err: String(failure) }, "GO refused");
      return error(option, optionErrorOf(failure), `cannot open ${info.name}: ${failure instanceof Error ? failure.message : String(failure)}`);
    }
    sizeBytes = lease.volume.sizeBytes;
    readOnly = lease.volume.readOnly;
  }
  const transmissionFlags = transmissionFlagsFor(readOnly, negotiation.structured);
  // proto.md: NBD_INFO_EXPORT always (with the real size, for INFO too); BLOCK_SIZE always
  // (we accept any alignment, so it is advice, never a requirement); the rest when asked.
  const replies = [encodeInfoExport(option, sizeBytes, transmissionFlags)];
  if (request.infoTypes.includes(Info.NAME)) replies.push(encodeInfoName(option, info.name));
  if (request.infoTypes.includes(Info.DESCRIPTION)) replies.push(encodeInfoDescription(option, info.description));
  replies.push(encodeInfoBlockSize(option, blockSizeMinimumBytes, blockSizePreferredBytes, blockSizeMaximumBytes));
  replies.push(encodeOptionAck(option));
  if (lease === undefined) return reply(replies);
  return { next: "transmission", replies, lease, transmissionFlags, contexts: contextsFor(negotiation, info.name) };
}

async function metaContext(option: number, data: Buffer, negotiation: Negotiation, context: OptionContext): Promise<OptionOutcome> {
  const set = option === Option.SET_META_CONTEXT;
  // qemu: a SET replaces the previous selection, and a failed one leaves none.
  if (set) negotiation.meta = undefined;
  if (!negotiation.structured) return error(option, OptionReply.ERR_INVALID, "meta contexts need structured replies first");
  const request = decodeMetaContextRequest(data, set ? "SET_META_CONTEXT" : "LIST_META_CONTEXT");
  if (isOptionDataError(request)) return error(option, request.error, request.message);
  const info = await describe(context, request.exportName);
  if (isOptionDataError(info)) return error(option, info.error, info.message);
  if (!set) {
    // proto.md: context ids in LIST replies are meaningless; we send 0.
    const names = await listContexts(context.registry, info, request.queries);
    return reply([...names.map((name) => encodeMetaContext(option, 0, name)), encodeOptionAck(option)]);
  }
  const contexts = await selectContexts(context.registry, info, request.queries);
  negotiation.meta = { exportName: info.name, contexts };
  return reply([...contexts.map((selected) => encodeMetaContext(option, selected.id, selected.name)), encodeOptionAck(option)]);
}

async function describe(context: OptionContext, requested: string): Promise<ExportInfo | { error: number; message: string }> {
  try {
    const info = await context.registry.describe(requested);
    return info ?? { error: OptionReply.ERR_UNKNOWN, message: `export ${JSON.stringify(requested)} not found` };
  } catch (failure) {
    context.logger.warn({ export: requested, err: String(failure) }, "cannot describe export");
    return { error: optionErrorOf(failure), message: failure instanceof Error ? failure.message : String(failure) };
  }
}
