/**
 * A separate process issuing commissions, for the multi-process tests: another API node on
 * PostgreSQL, or the CLI beside `okeanos serve` on one SQLite file.
 *
 *   node db/testing/issue-child.ts URL USER_UUID RESOURCE COUNT KEY_PREFIX
 *
 * Issues COUNT commissions of 1 and prints `{"issued":n,"refused":m}`.
 */
import { openDatabase } from "../connect.ts";
import { isDbError } from "../errors.ts";
import { issueCommission } from "../queries/commissions.ts";

const [url, userUuid, resource, countText, keyPrefix] = process.argv.slice(2);
if (!url || !userUuid || !resource || !countText || !keyPrefix) {
  console.error("usage: issue-child.ts URL USER_UUID RESOURCE COUNT KEY_PREFIX");
  process.exit(2);
}
const db = await openDatabase(url);
let issued = 0;
let refused = 0;
try {
  for (let i = 0; i < Number(countText); i++) {
    try {
      await issueCommission(db, { clientKey: `${keyPrefix}:${i}`, provisions: [{ userUuid, resource, quantity: 1 }] });
      issued++;
    } catch (error) {
      if (!isDbError(error, "EQUOTA_EXCEEDED")) throw error;
      refused++;
    }
  }
} finally {
  await db.close();
}
console.log(JSON.stringify({ issued, refused }));
