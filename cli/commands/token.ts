/** `okeanos token issue|revoke`: API tokens, against the metadata database directly. */
import { Option, type Command } from "commander";
import { issueToken, revokeToken, revokeUserTokens, tokenTtlMsDefault } from "../../db/index.ts";
import { durationArgument, examples, report } from "../context.ts";
import { fieldTable, UsageError } from "../output.ts";
import { formatDuration } from "../units.ts";
import { databaseOption, databaseUrl, withDatabase } from "./database.ts";
import { findUser } from "./user.ts";

export function registerTokenCommands(program: Command): void {
  const token = program.command("token").description("identity API tokens (against the database directly)").addOption(databaseOption());

  token
    .command("issue <user>")
    .description("issue an API token for a user (printed once; only its hash is stored)")
    .addOption(new Option("--ttl <duration>", "lifetime").default(tokenTtlMsDefault, formatDuration(tokenTtlMsDefault)).argParser(durationArgument))
    .addHelpText("after", examples("okeanos token issue alice --ttl 30d", "export OS_TOKEN=$(okeanos --json token issue alice | jq -r .token)"))
    .action((ref: string, options: { ttl: number }, command: Command) =>
      report(command, async () => {
        const { user, issued } = await withDatabase(databaseUrl(command), async (db) => {
          const found = await findUser(db, ref);
          return { user: found, issued: await issueToken(db, found.uuid, { ttlMs: options.ttl }) };
        });
        const expires = new Date(issued.record.expiresAt).toISOString();
        return {
          text: fieldTable([["token", issued.token], ["user", `${user.name} (${user.uuid})`], ["expires", expires]]),
          json: { token: issued.token, user: user.uuid, expiresAt: expires },
        };
      }),
    );

  token
    .command("revoke [token]")
    .description("revoke one token, or every live token of a user with --user")
    .option("--user <user>", "revoke all of this user's tokens")
    .addHelpText("after", examples("okeanos token revoke gAAAA…", "okeanos token revoke --user alice"))
    .action((secret: string | undefined, options: { user?: string }, command: Command) =>
      report(command, async () => {
        if ((secret === undefined) === (options.user === undefined)) throw new UsageError("give a token or --user, not both");
        if (options.user !== undefined) {
          const count = await withDatabase(databaseUrl(command), async (db) => revokeUserTokens(db, (await findUser(db, options.user!)).uuid));
          return { text: `Revoked ${count} token${count === 1 ? "" : "s"}`, json: { revoked: count } };
        }
        const revoked = await withDatabase(databaseUrl(command), (db) => revokeToken(db, secret!));
        if (!revoked) throw new UsageError("no such live token");
        return { text: "Revoked", json: { revoked: 1 } };
      }),
    );
}
