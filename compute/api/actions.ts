/**
 * POST /servers/{id}/action and /servers/{id}/remote-consoles (Nova's servers.py,
 * server_actions-*, remote_consoles.py, console_output.py; openstack-clients.md 3.3–3.6).
 *
 *   {"os-start": null}, {"os-stop": null}          202, no body
 *   {"reboot": {"type": "SOFT"|"HARD"}}            202
 *   {"resize": {"flavorRef": "2"}}                 202 (resizes confirm themselves here)
 *   {"createImage": {"name", "metadata"?}}         202, Location …/image/v2/images/<id>;
 *                                                  {"image_id"} from 2.45 (3.6)
 *   {"os-getVNCConsole": {"type": "novnc"}}        200 {"console": {type, url}} (before 2.6)
 *   {"os-getConsoleOutput": {"length": N}}         200 {"output": "…"}
 *   remote-consoles {"remote_console": {…}}        200, from 2.6 (the SDK's path at 2.8)
 *
 * A body is one action: more keys are Nova's "Malformed message body". An action Nova has
 * and we do not is 501; a name Nova does not know is its 400 "There is no such action".
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ComputeError } from "../errors.ts";
import type { ServerAction } from "../model.ts";
import { callerOf, microversionOf, param, type RouteContext } from "./context.ts";
import { badRequest, routeNotFound } from "./faults.ts";
import { invalidField, isJsonObject, quote, nameLengthMax, readMetadata, readReference, readString, rejectUnknownKeys, type JsonObject } from "./input.ts";

/** From this microversion createImage answers its image id in the body (Nova 2.45). */
export const createImageBodyMicroversion = 45;
/** From this microversion remote consoles have their own resource (Nova 2.6). */
export const remoteConsolesMicroversion = 6;
/** The mks protocol exists from 2.8 (we refuse it, but as "unavailable", not as unknown). */
const mksMicroversion = 8;

/** Nova actions this cloud does not perform; asking is 501, not "no such action". */
const unimplementedActions = new Set([
  "rebuild", "changePassword", "pause", "unpause", "suspend", "resume", "lock", "unlock",
  "shelve", "shelveOffload", "unshelve", "rescue", "unrescue", "migrate", "os-migrateLive",
  "evacuate", "createBackup", "forceDelete", "restore", "os-resetState", "resetNetwork",
  "injectNetworkInfo", "addSecurityGroup", "removeSecurityGroup", "addFloatingIp",
  "removeFloatingIp", "addFixedIp", "removeFixedIp", "os-resetPassword", "trigger_crash_dump",
  "os-getSPICEConsole", "os-getRDPConsole", "os-getSerialConsole", "os-getMKSConsole",
]);

// Console output goes to terminals: Nova drops control characters but tab, newline and CR.
// eslint-disable-next-line no-control-regex -- control characters are what it removes
const consoleControlCharacters = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g;

function actionObject(name: string, value: unknown): JsonObject {
  if (!isJsonObject(value)) throw invalidField(name, value, `${quote(value)} is not of type 'object'`);
  return value;
}

function parseReboot(value: unknown): ServerAction {
  const reboot = actionObject("reboot", value);
  rejectUnknownKeys(reboot, new Set(["type"]));
  const type = readString(reboot, "type", "reboot.type", { required: true });
  const upper = type.toUpperCase();
  if (upper !== "SOFT" && upper !== "HARD") throw invalidField("reboot.type", type, "It must be one of SOFT, HARD");
  return { kind: "reboot", hard: upper === "HARD" };
}

function parseResize(value: unknown): ServerAction {
  const resize = actionObject("resize", value);
  rejectUnknownKeys(resize, new Set(["flavorRef", "OS-DCF:diskConfig"]));
  return { kind: "resize", flavorRef: readReference(resize, "flavorRef", "resize.flavorRef") };
}

function parseCreateImage(value: unknown): ServerAction {
  const createImage = actionObject("createImage", value);
  rejectUnknownKeys(createImage, new Set(["name", "metadata"]));
  const action: ServerAction = { kind: "createImage", name: readString(createImage, "name", "createImage.name", { required: true, minLength: 1, maxLength: nameLengthMax, name: true }) };
  if (createImage["metadata"] !== undefined) action.metadata = readMetadata(createImage["metadata"], "createImage.metadata");
  return action;
}

/** `length` lines of console output: an integer or a numeric string; null or -1 for all. */
function parseConsoleLength(value: unknown): number | undefined {
  const options = actionObject("os-getConsoleOutput", value);
  rejectUnknownKeys(options, new Set(["length"]));
  const length = options["length"];
  if (length === undefined || length === null) return undefined;
  const number = typeof length === "string" && /^-?\d+$/.test(length) ? Number(length) : length;
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < -1) {
    throw invalidField("os-getConsoleOutput.length", length, "It must be a non-negative integer, or -1 for everything");
  }
  return number === -1 ? undefined : number;
}

function checkVncType(type: string): void {
  if (type !== "novnc") throw badRequest(`Unavailable console type ${type}.`);
}

async function consoleUrl(context: RouteContext, request: FastifyRequest): Promise<string> {
  const location = await context.compute.vncConsole(callerOf(request), param(request, "id"));
  return `${context.urls(request).compute}${location.path}`;
}

export function actionRoutes(app: FastifyInstance, context: RouteContext): void {
  const { compute } = context;

  app.post("/servers/:id/action", async (request, reply) => {
    const body = request.body;
    if (!isJsonObject(body)) throw badRequest("Malformed message body: a JSON object naming one action is required");
    const names = Object.keys(body);
    if (names.length !== 1) throw badRequest("Malformed message body: too many body keys");
    const name = names[0]!;
    const value = body[name];
    const caller = callerOf(request);
    const id = param(request, "id");
    const queue = async (action: ServerAction) => {
      await compute.serverAction(caller, id, action);
      return reply.code(202).send();
    };
    switch (name) {
      case "os-start":
        return queue({ kind: "start" });
      case "os-stop":
        return queue({ kind: "stop" });
      case "reboot":
        return queue(parseReboot(value));
      case "resize":
        return queue(parseResize(value));
      case "confirmResize":
      case "revertResize":
        // Nova's answer when no resize awaits confirmation; ours never wait.
        throw badRequest("Instance has not been resized: resizes here are confirmed when they finish.");
      case "createImage": {
        const { imageId } = await compute.serverAction(caller, id, parseCreateImage(value));
        if (imageId === undefined) throw new Error("compute API: createImage answered no image id");
        reply.code(202).header("location", `${context.urls(request).image}/v2/images/${encodeURIComponent(imageId)}`);
        return microversionOf(request) >= createImageBodyMicroversion ? reply.send({ image_id: imageId }) : reply.send();
      }
      case "os-getVNCConsole": {
        const options = actionObject(name, value);
        rejectUnknownKeys(options, new Set(["type"]));
        const type = readString(options, "type", `${name}.type`, { required: true });
        checkVncType(type);
        return { console: { type, url: await consoleUrl(context, request) } };
      }
      case "os-getConsoleOutput": {
        const output = await compute.consoleLog(caller, id, parseConsoleLength(value));
        return { output: output.replace(consoleControlCharacters, "") };
      }
      default:
        if (unimplementedActions.has(name)) throw new ComputeError("ENOT_IMPLEMENTED", `The ${name} action is not implemented by this cloud.`);
        throw badRequest(`There is no such action: ${name.slice(0, 80)}`);
    }
  });

  app.post("/servers/:id/remote-consoles", async (request) => {
    const microversion = microversionOf(request);
    if (microversion < remoteConsolesMicroversion) throw routeNotFound();
    if (!isJsonObject(request.body)) throw badRequest("Malformed request body: a JSON object is required.");
    const remote = actionObject("remote_console", request.body["remote_console"]);
    rejectUnknownKeys(remote, new Set(["protocol", "type"]));
    const protocol = readString(remote, "protocol", "remote_console.protocol", { required: true });
    const type = readString(remote, "type", "remote_console.type", { required: true });
    const protocols = microversion >= mksMicroversion ? ["vnc", "spice", "rdp", "serial", "mks"] : ["vnc", "spice", "rdp", "serial"];
    if (!protocols.includes(protocol)) throw invalidField("remote_console.protocol", protocol, `It must be one of ${protocols.join(", ")}`);
    if (protocol !== "vnc") throw badRequest(`Unavailable console type ${type}.`);
    checkVncType(type);
    return { remote_console: { protocol, type, url: await consoleUrl(context, request) } };
  });
}
