/**
 * `okeanos user create|list|show|modify|delete`: identity's users, against the metadata
 * database directly (no server needed; safe beside a running `okeanos serve`).
 */
import { Option, type Command } from "commander";
import { createUser, DbError, deleteUser, getUser, getUserByName, listUsers, updateUser, type MetadataDatabase, type User, type UserPatch } from "../../db/index.ts";
import { hashPassword } from "../../identity/index.ts";
import { examples, report } from "../context.ts";
import { fieldTable, table, UsageError, type Report } from "../output.ts";
import { databaseOption, databaseUrl, withDatabase } from "./database.ts";

interface PasswordOptions {
  password?: string;
  passwordStdin?: boolean;
}

async function readPassword(options: PasswordOptions): Promise<string | undefined> {
  if (options.password !== undefined && options.passwordStdin === true) throw new UsageError("give --password or --password-stdin, not both");
  if (options.password !== undefined) return options.password;
  if (options.passwordStdin !== true) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
  if (text === "") throw new UsageError("empty password on stdin");
  return text;
}

function userJson(user: User): unknown {
  const { passwordHash, ...rest } = user;
  return { ...rest, hasPassword: passwordHash !== null, createdAt: new Date(user.createdAt).toISOString(), updatedAt: new Date(user.updatedAt).toISOString() };
}

function userFields(user: User): string {
  return fieldTable([
    ["uuid", user.uuid],
    ["name", user.name],
    ["email", user.email ?? "-"],
    ["state", user.state],
    ["password", user.passwordHash === null ? "none" : "set"],
    ["created", new Date(user.createdAt).toISOString()],
  ]);
}

/** A user by uuid or name. */
export async function findUser(db: MetadataDatabase, ref: string): Promise<User> {
  const user = /^[0-9a-f]{8}-[0-9a-f-]{27}$/.test(ref) ? await getUser(db, ref) : await getUserByName(db, ref);
  if (user === undefined) throw new DbError("ENOT_FOUND", `no user ${ref}`, { user: ref });
  return user;
}

const stateOption = () => new Option("--state <state>", "active or disabled").choices(["active", "disabled"]);

export function registerUserCommands(program: Command): void {
  const user = program.command("user").description("identity users (against the database directly)").addOption(databaseOption());

  user
    .command("create <name>")
    .description("create a user")
    .option("--email <address>", "e-mail address")
    .option("--password <password>", "password (visible in ps; prefer --password-stdin)")
    .option("--password-stdin", "read the password from stdin")
    .addOption(stateOption())
    .addHelpText("after", examples("echo 's3cret' | okeanos user create alice --email alice@example.org --password-stdin"))
    .action((name: string, options: PasswordOptions & { email?: string; state?: "active" | "disabled" }, command: Command) =>
      report(command, async () => {
        const password = await readPassword(options);
        const passwordHash = password === undefined ? null : await hashPassword(password);
        const created = await withDatabase(databaseUrl(command), (db) =>
          createUser(db, { name, email: options.email ?? null, passwordHash, ...(options.state !== undefined && { state: options.state }) }),
        );
        return { text: `Created user ${created.name}\n${userFields(created)}`, json: userJson(created) };
      }),
    );

  user
    .command("list")
    .description("list users, by name")
    .addOption(stateOption())
    .action((options: { state?: "active" | "disabled" }, command: Command) =>
      report(command, async (): Promise<Report> => {
        const users = await withDatabase(databaseUrl(command), (db) => listUsers(db, options.state === undefined ? {} : { state: options.state }));
        return {
          text: users.length === 0 ? "No users." : table(["NAME", "UUID", "STATE", "EMAIL"], users.map((u) => [u.name, u.uuid, u.state, u.email ?? "-"])),
          json: users.map(userJson),
        };
      }),
    );

  user
    .command("show <user>")
    .description("show one user (by name or uuid)")
    .action((ref: string, _options: unknown, command: Command) =>
      report(command, async () => {
        const found = await withDatabase(databaseUrl(command), (db) => findUser(db, ref));
        return { text: userFields(found), json: userJson(found) };
      }),
    );

  user
    .command("modify <user>")
    .description("change a user's name, e-mail, state or password")
    .option("--name <name>", "new name")
    .option("--email <address>", "new e-mail address")
    .option("--password <password>", "new password")
    .option("--password-stdin", "read the new password from stdin")
    .addOption(stateOption())
    .addHelpText("after", examples("okeanos user modify alice --state disabled", "echo 'n3w' | okeanos user modify alice --password-stdin"))
    .action((ref: string, options: PasswordOptions & { name?: string; email?: string; state?: "active" | "disabled" }, command: Command) =>
      report(command, async () => {
        const password = await readPassword(options);
        const patch: UserPatch = {};
        if (options.name !== undefined) patch.name = options.name;
        if (options.email !== undefined) patch.email = options.email;
        if (options.state !== undefined) patch.state = options.state;
        if (password !== undefined) patch.passwordHash = await hashPassword(password);
        if (Object.keys(patch).length === 0) throw new UsageError("nothing to change: give --name, --email, --state or a password");
        const updated = await withDatabase(databaseUrl(command), async (db) => updateUser(db, (await findUser(db, ref)).uuid, patch));
        return { text: `Modified user ${updated.name}\n${userFields(updated)}`, json: userJson(updated) };
      }),
    );

  user
    .command("delete <user>")
    .description("delete a user with their tokens and quota holdings")
    .action((ref: string, _options: unknown, command: Command) =>
      report(command, async () => {
        const deleted = await withDatabase(databaseUrl(command), async (db) => {
          const found = await findUser(db, ref);
          await deleteUser(db, found.uuid);
          return found;
        });
        return { text: `Deleted user ${deleted.name} (${deleted.uuid})`, json: { deleted: deleted.uuid } };
      }),
    );
}
