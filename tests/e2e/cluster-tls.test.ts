// Peers inside mutual TLS: members with CA-signed certificates meet, a plain client is refused.
import { afterAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { temporaryDirectory } from "../support/binary.ts";
import { engineHandle, eventually, stopAllEngines } from "../support/engines.ts";

const root = temporaryDirectory("mars-e2e-tls-");
const hasOpenssl = Bun.spawnSync(["which", "openssl"]).exitCode === 0;

afterAll(async () => {
  await stopAllEngines();
});

function openssl(...args: string[]): void {
  const result = Bun.spawnSync(["openssl", ...args], { cwd: root, stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`openssl ${args[0]}: ${result.stderr}`);
}

/** A throw-away CA and one certificate per host, valid for 127.0.0.1. */
function makeCertificates(hosts: string[]): void {
  const curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl("req", "-x509", ...curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
    "-subj", "/CN=mars-test-ca");
  for (const host of hosts) {
    openssl("req", ...curve, "-keyout", `${host}.key`, "-out", `${host}.csr`,
      "-subj", `/CN=${host}`);
    writeFileSync(join(root, `${host}.ext`),
      "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
    openssl("x509", "-req", "-in", `${host}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key",
      "-CAcreateserial", "-out", `${host}.crt`, "-days", "2", "-extfile", `${host}.ext`);
  }
}

const tlsOf = (host: string) => ["--tls-cert", join(root, `${host}.crt`),
  "--tls-key", join(root, `${host}.key`), "--tls-ca", join(root, "ca.crt")];

test.skipIf(!hasOpenssl)("members meet over mutual TLS; plain TCP gets nothing", async () => {
  makeCertificates(["alpha", "beta"]);
  const alpha = engineHandle("alpha", root);
  const beta = engineHandle("beta", root);
  const created = await alpha.mars("create-cluster", "--host", "alpha",
    "--listen", `127.0.0.1:${alpha.port}`, ...tlsOf("alpha"));
  expect(created.exitCode).toBe(0);
  await alpha.start();
  const secretFile = join(alpha.home, "cluster-secret");
  const plain = await beta.mars("join-cluster", `127.0.0.1:${alpha.port}`,
    "--secret-file", secretFile, "--host", "beta", "--listen", `127.0.0.1:${beta.port}`);
  expect(plain.exitCode).toBe(1);
  await eventually(async () => alpha.log().includes("TLS handshake failed"), 5_000);
  const joined = await beta.mars("join-cluster", `127.0.0.1:${alpha.port}`,
    "--secret-file", secretFile, "--host", "beta", "--listen", `127.0.0.1:${beta.port}`,
    ...tlsOf("beta"));
  expect(joined.stderr).toBe("");
  expect(joined.exitCode).toBe(0);
  await beta.start();
  for (const engine of [alpha, beta]) {
    const alive = await engine.mars("wait-cluster", "--timeout", "10");
    expect(alive.stdout).toContain("all 1 peers alive");
  }
  expect(beta.log()).toContain("peer-tls");
}, 30_000);
