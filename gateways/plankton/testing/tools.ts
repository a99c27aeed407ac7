/**
 * The external clients the image service's interop tests drive, with the Debian packages that
 * provide them. Same contract as engine/nbd/testing/require-tool.ts requireTools (whose
 * package table does not know these): all present → true; one missing → a loud skip, or a
 * failure under CI=true.
 */
import { findTool } from "../../../engine/nbd/testing/require-tool.ts";

const packageOf: Readonly<Record<string, string>> = {
  openstack: "python3-openstackclient",
  glance: "python3-glanceclient",
  "qemu-img": "qemu-utils",
  "qemu-io": "qemu-utils",
};

export function requireImageClients(...names: string[]): boolean {
  const missing = names.filter((name) => findTool(name) === undefined);
  if (missing.length === 0) return true;
  const packages = [...new Set(missing.map((name) => packageOf[name] ?? name))].join(" ");
  const message = `image clients missing: ${missing.join(", ")} (apt-get install ${packages})`;
  if (process.env["CI"] === "true") throw new Error(`${message}; CI=true, so this fails instead of skipping`);
  process.stderr.write(`\n${"!".repeat(78)}\n!! SKIPPING image client tests: ${message}\n${"!".repeat(78)}\n\n`);
  return false;
}
