/**
 * A throwaway X.509 PKI for TLS tests, made with `openssl` (ECDSA P-256: fast to generate):
 *
 *   ca ──signs──► server (CN=localhost, SAN localhost/127.0.0.1, serverAuth)
 *      └─signs──► client (CN=okeanos-test-client, clientAuth)
 *   rogue-ca ──signs──► rogue client (a well-formed certificate our CA never signed)
 *
 * Laid out the way the peers want it: `serverDir` is qemu's server layout (ca-cert.pem,
 * server-cert.pem, server-key.pem, as `okeanos nbd serve --tls-dir` reads it); `clientDir` and
 * `rogueDir` are libnbd's and qemu's client layout (ca-cert.pem, client-cert.pem,
 * client-key.pem), `rogueDir` trusting our CA but holding the rogue client certificate.
 * Leaf key usage is left out, as gnutls (libnbd, qemu) accepts; the CA's is critical.
 */
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runToolOk } from "./require-tool.ts";

export interface TestPki {
  serverDir: string;
  clientDir: string;
  rogueDir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  rogueCert: string;
  rogueKey: string;
}

const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
/** Long enough for any test run, short enough that a leaked key is worthless. */
const validDays = "2";

export async function makeTestPki(dir: string): Promise<TestPki> {
  const work = join(dir, "work");
  const serverDir = join(dir, "server");
  const clientDir = join(dir, "client");
  const rogueDir = join(dir, "rogue");
  for (const path of [work, serverDir, clientDir, rogueDir]) await mkdir(path, { recursive: true });
  const at = (name: string) => join(work, name);
  const ca = async (name: string, cn: string) => {
    await runToolOk("openssl", [
      "req", "-x509", ...newKey, "-keyout", at(`${name}-key.pem`), "-out", at(`${name}-cert.pem`), "-days", validDays, "-subj", `/CN=${cn}`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
  };
  const leaf = async (name: string, cn: string, issuer: string, extensions: string) => {
    await runToolOk("openssl", ["req", ...newKey, "-keyout", at(`${name}-key.pem`), "-out", at(`${name}.csr`), "-subj", `/CN=${cn}`]);
    await writeFile(at(`${name}.ext`), extensions);
    await runToolOk("openssl", [
      "x509", "-req", "-in", at(`${name}.csr`), "-CA", at(`${issuer}-cert.pem`), "-CAkey", at(`${issuer}-key.pem`), "-CAcreateserial",
      "-out", at(`${name}-cert.pem`), "-days", validDays, "-extfile", at(`${name}.ext`),
    ]);
  };
  await ca("ca", "okeanos-test-ca");
  await ca("rogue-ca", "okeanos-rogue-ca");
  await leaf("server", "localhost", "ca", "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await leaf("client", "okeanos-test-client", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  await leaf("rogue", "okeanos-rogue-client", "rogue-ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  const layout: Array<[string, string]> = [
    [at("ca-cert.pem"), join(serverDir, "ca-cert.pem")],
    [at("server-cert.pem"), join(serverDir, "server-cert.pem")],
    [at("server-key.pem"), join(serverDir, "server-key.pem")],
    [at("ca-cert.pem"), join(clientDir, "ca-cert.pem")],
    [at("client-cert.pem"), join(clientDir, "client-cert.pem")],
    [at("client-key.pem"), join(clientDir, "client-key.pem")],
    [at("ca-cert.pem"), join(rogueDir, "ca-cert.pem")],
    [at("rogue-cert.pem"), join(rogueDir, "client-cert.pem")],
    [at("rogue-key.pem"), join(rogueDir, "client-key.pem")],
  ];
  for (const [from, to] of layout) await copyFile(from, to);
  return {
    serverDir,
    clientDir,
    rogueDir,
    caCert: at("ca-cert.pem"),
    serverCert: at("server-cert.pem"),
    serverKey: at("server-key.pem"),
    clientCert: at("client-cert.pem"),
    clientKey: at("client-key.pem"),
    rogueCert: at("rogue-cert.pem"),
    rogueKey: at("rogue-key.pem"),
  };
}
