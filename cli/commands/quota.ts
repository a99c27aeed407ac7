/**
 * `okeanos quota set|show|list`: identity's quota limits and usage, against the metadata
 * database directly. The standard resources (db/queries/quotas.ts standardResources) are
 * registered on first use, as `okeanos serve` registers them at start.
 */
import { InvalidArgumentError, type Command } from "commander";
import { ensureResources, getQuotas, listResources, setLimit, standardResources, type MetadataDatabase, type Quota } from "../../db/index.ts";
import { examples, report } from "../context.ts";
import { table } from "../output.ts";
import { formatBytes, parseSize } from "../units.ts";
import { databaseOption, databaseUrl, withDatabase } from "./database.ts";
import { findUser } from "./user.ts";

/** `default` (back to the resource's default), a count, or a size (`10G`) for byte resources. */
function limitArgument(text: string): number | null {
  if (text === "default") return null;
  try {
    return parseSize(text);
  } catch {
    throw new InvalidArgumentError(`a limit is a number, a size such as 10G, or "default"`);
  }
}

async function withResources<T>(command: Command, action: (db: MetadataDatabase) => Promise<T>): Promise<T> {
  return withDatabase(databaseUrl(command), async (db) => {
    await ensureResources(db, standardResources);
    return action(db);
  });
}

function amount(quota: Pick<Quota, "unit">, value: number): string {
  return quota.unit === "bytes" && value > 0 ? `${value} (${formatBytes(value)})` : String(value);
}

export function registerQuotaCommands(program: Command): void {
  const quota = program.command("quota").description("quota limits and usage (against the database directly)").addOption(databaseOption());

  quota
    .command("set <user> <resource> <limit>")
    .description("set a user's limit on a resource (a count, a size such as 10G, or `default`)")
    .addHelpText("after", examples("okeanos quota set alice compute.vm 4", "okeanos quota set alice volume.disk 100G", "okeanos quota set alice compute.vm default"))
    .action((ref: string, resource: string, limitText: string, _options: unknown, command: Command) =>
      report(command, async () => {
        const limit = limitArgument(limitText);
        const quotaNow = await withResources(command, async (db) => {
          const user = await findUser(db, ref);
          await setLimit(db, user.uuid, resource, limit);
          return { user, quota: (await getQuotas(db, user.uuid, resource))[0]! };
        });
        const shown = amount(quotaNow.quota, quotaNow.quota.limit);
        return {
          text: `${quotaNow.user.name}: ${resource} limit ${shown}${quotaNow.quota.limitIsDefault ? " (the default)" : ""}`,
          json: { user: quotaNow.user.uuid, ...quotaNow.quota },
        };
      }),
    );

  quota
    .command("show <user>")
    .description("a user's limit, usage and pending reservations per resource")
    .action((ref: string, _options: unknown, command: Command) =>
      report(command, async () => {
        const { user, quotas } = await withResources(command, async (db) => {
          const found = await findUser(db, ref);
          return { user: found, quotas: await getQuotas(db, found.uuid) };
        });
        return {
          text: table(
            ["RESOURCE", "LIMIT", "USAGE", "PENDING+", "PENDING-"],
            quotas.map((q) => [q.resource, `${amount(q, q.limit)}${q.limitIsDefault ? " (default)" : ""}`, amount(q, q.usage), amount(q, q.pendingIncrease), amount(q, q.pendingDecrease)]),
          ),
          json: { user: user.uuid, name: user.name, quotas },
        };
      }),
    );

  quota
    .command("list")
    .description("the quota resources, with their units and default limits")
    .action((_options: unknown, command: Command) =>
      report(command, async () => {
        const resources = await withResources(command, (db) => listResources(db));
        return {
          text: table(["RESOURCE", "UNIT", "DEFAULT", "DESCRIPTION"], resources.map((r) => [r.name, r.unit, r.defaultLimit, r.description])),
          json: resources,
        };
      }),
    );
}
