/**
 * /os-keypairs (openstack-clients.md 3.4; Nova's keypairs.py). The SDK speaks 2.10.
 *
 *   POST   {"keypair": {"name", "public_key"?, "type"? (2.2), "user_id"? (2.10)}}
 *          200 before 2.2, 201 from it; without public_key the service makes the key and
 *          the answer carries private_key (OSC writes it out: it must be there)
 *   GET    {"keypairs": [{"keypair": {…}}]}  (Nova's nested form)
 *   GET    /{name}, DELETE /{name} (202 before 2.2, 204 from it)
 *
 * `user_id` (2.10, body or query) names whose keys: your own, or anyone's for an admin
 * (Nova's policy "admin_api or user_id:%(user_id)s").
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ComputeError } from "../errors.ts";
import type { ComputeCaller } from "../model.ts";
import { callerOf, microversionOf, param, type RouteContext } from "./context.ts";
import { badRequest } from "./faults.ts";
import { bodyMember, invalidField, queryValue, readString, rejectUnknownKeys } from "./input.ts";
import { keypairShow, keypairView } from "./views.ts";

/**
 * Keypair names: Nova before 2.92 allows letters, digits, space, '_' and '-'
 * (parameter_types keypair_name_20); we also take '.' ("id.work", allowed from 2.92), and
 * refuse leading or trailing spaces, which only make names hard to type.
 */
export const keypairNamePattern = /^(?! )[a-zA-Z0-9. _-]{1,255}(?<! )$/;
/**
 * A public key line: RSA-16384 is about 2.8 KiB in OpenSSH's form, certificates a few KiB
 * more; 16 KiB leaves room and keeps a pasted file of garbage out.
 */
export const publicKeyLengthMax = 16 * 1024;

const keypairsUserMicroversion = 10;
const keypairsTypeMicroversion = 2;

/** The caller to act as: `user_id` is the caller's own, or an admin's pick. */
function actingCaller(caller: ComputeCaller, userId: string | undefined, microversion: number, rule: string): ComputeCaller {
  if (userId === undefined || microversion < keypairsUserMicroversion || userId === caller.userUuid) return caller;
  if (!caller.isAdmin) throw new ComputeError("EFORBIDDEN", `Policy doesn't allow os_compute_api:os-keypairs:${rule} to be performed.`);
  return { userUuid: userId, isAdmin: true };
}

function queryUser(request: FastifyRequest, rule: string): ComputeCaller {
  return actingCaller(callerOf(request), queryValue(request.query, "user_id"), microversionOf(request), rule);
}

export function keypairRoutes(app: FastifyInstance, context: RouteContext): void {
  const { compute } = context;

  app.post("/os-keypairs", async (request, reply) => {
    const microversion = microversionOf(request);
    const keypair = bodyMember(request.body, "keypair");
    const allowed = new Set(["name", "public_key"]);
    if (microversion >= keypairsTypeMicroversion) allowed.add("type");
    if (microversion >= keypairsUserMicroversion) allowed.add("user_id");
    rejectUnknownKeys(keypair, allowed);
    const name = readString(keypair, "name", "keypair.name", { required: true });
    if (!keypairNamePattern.test(name)) throw invalidField("keypair.name", name, "Keypair names may contain letters, digits, '.', '_', '-' and inner spaces, 1 to 255 of them");
    // The key file arrives verbatim, trailing newline and all (3.4): the service trims it.
    const publicKey = readString(keypair, "public_key", "keypair.public_key", { minLength: 1, maxLength: publicKeyLengthMax });
    const type = readString(keypair, "type", "keypair.type");
    if (type !== undefined && type !== "ssh") throw badRequest(`Keypair type ${type.slice(0, 80)} is not supported: only ssh keys are.`);
    const userId = readString(keypair, "user_id", "keypair.user_id", { minLength: 1, maxLength: 255 });
    const caller = actingCaller(callerOf(request), userId, microversion, "create");
    const created = await compute.createKeypair(caller, name, publicKey);
    return reply.code(microversion >= keypairsTypeMicroversion ? 201 : 200).send({ keypair: keypairView(created, microversion, "create") });
  });

  app.get("/os-keypairs", async (request) => {
    const keypairs = await compute.listKeypairs(queryUser(request, "index"));
    return { keypairs: keypairs.map((keypair) => ({ keypair: keypairView(keypair, microversionOf(request), "list") })) };
  });

  app.get("/os-keypairs/:name", async (request) => {
    const keypair = await compute.getKeypair(queryUser(request, "show"), param(request, "name"));
    return { keypair: keypairShow(keypair, microversionOf(request)) };
  });

  app.delete("/os-keypairs/:name", async (request, reply) => {
    await compute.deleteKeypair(queryUser(request, "delete"), param(request, "name"));
    return reply.code(microversionOf(request) >= keypairsTypeMicroversion ? 204 : 202).send();
  });
}
