// The local cluster's PKI: one CA, the apiserver's serving certificate, client certificates for
// the admin and kube-controller-manager identities, and the ServiceAccount token signing key.
// ECDSA P-256 keys from WebCrypto: generating them takes milliseconds.
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { webcrypto } from "node:crypto";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

// WebCrypto from node:crypto; the library is typed against the DOM Crypto it matches.
x509.cryptoProvider.set(webcrypto as never);

const keyAlgorithm = { name: "ECDSA", namedCurve: "P-256" } as const;
const signingAlgorithm = { name: "ECDSA", hash: "SHA-256" } as const;

export interface PkiPaths {
  caCert: string;
  caKey: string;
  apiserverCert: string;
  apiserverKey: string;
  adminCert: string;
  adminKey: string;
  controllerManagerCert: string;
  controllerManagerKey: string;
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(keyAlgorithm, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

const validity = () => ({
  notBefore: new Date(Date.now() - 60_000),
  notAfter: new Date(Date.now() + 365 * 24 * 3600_000),
});

interface Issuer {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

async function issue(
  ca: Issuer,
  subject: string,
  usage: "server" | "client",
  altNames: { dns?: string[]; ip?: string[] } = {},
): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeys();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension([
      usage === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
    ]),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  const names = [
    ...(altNames.dns ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(altNames.ip ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm,
    extensions,
    ...validity(),
  });
  return { certPem: cert.toString("pem"), keyPem: await privateKeyPem(keys.privateKey) };
}

/**
 * Issues a certificate signed by the CA in `caCertFile`/`caKeyFile` (what `createPki` wrote), e.g.
 * a kubelet's client (CN=system:node:<name>, O=system:nodes) and serving certificates.
 */
export async function issueFromCa(
  caCertFile: string,
  caKeyFile: string,
  subject: string,
  usage: "server" | "client",
  altNames: { dns?: string[]; ip?: string[] } = {},
): Promise<{ certPem: string; keyPem: string }> {
  const cert = new x509.X509Certificate(readFileSync(caCertFile, "utf8"));
  const privateKey = await webcrypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decodeFirst(readFileSync(caKeyFile, "utf8")),
    keyAlgorithm,
    true,
    ["sign"],
  );
  const publicKey = await cert.publicKey.export(keyAlgorithm, ["verify"]);
  return issue({ cert, keys: { privateKey, publicKey } }, subject, usage, altNames);
}

/** Writes a fresh PKI into `dir` (keys 0600) and returns the file paths. */
export async function createPki(dir: string, apiserverIps: string[] = []): Promise<PkiPaths> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = (name: string) => path.join(dir, name);
  const write = (name: string, content: string) => writeFileSync(file(name), content, { mode: 0o600 });

  const caKeys = await generateKeys();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=streamjob-devcluster-ca",
    keys: caKeys,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
    ...validity(),
  });
  const ca = { cert: caCert, keys: caKeys };
  write("ca.crt", caCert.toString("pem"));
  write("ca.key", await privateKeyPem(caKeys.privateKey));

  const apiserver = await issue(ca, "CN=kube-apiserver", "server", {
    dns: [
      "localhost",
      "kubernetes",
      "kubernetes.default",
      "kubernetes.default.svc",
      "kubernetes.default.svc.cluster.local",
    ],
    ip: ["127.0.0.1", "10.0.0.1", ...apiserverIps],
  });
  write("apiserver.crt", apiserver.certPem);
  write("apiserver.key", apiserver.keyPem);

  // system:masters is the superuser group: the admin kubeconfig, like kind's or kubeadm's.
  const admin = await issue(ca, "CN=devcluster-admin, O=system:masters", "client");
  write("admin.crt", admin.certPem);
  write("admin.key", admin.keyPem);

  // The bootstrap RBAC policy binds this user name to the controller manager's ClusterRole.
  const kcm = await issue(ca, "CN=system:kube-controller-manager", "client");
  write("kube-controller-manager.crt", kcm.certPem);
  write("kube-controller-manager.key", kcm.keyPem);

  const saKeys = await generateKeys();
  write("sa.key", await privateKeyPem(saKeys.privateKey));
  // The apiserver verifies tokens with the public half; it does not read PKCS#8 private keys there.
  const spki = await webcrypto.subtle.exportKey("spki", saKeys.publicKey);
  write("sa.pub", x509.PemConverter.encode(spki, "PUBLIC KEY"));

  return {
    caCert: file("ca.crt"),
    caKey: file("ca.key"),
    apiserverCert: file("apiserver.crt"),
    apiserverKey: file("apiserver.key"),
    adminCert: file("admin.crt"),
    adminKey: file("admin.key"),
    controllerManagerCert: file("kube-controller-manager.crt"),
    controllerManagerKey: file("kube-controller-manager.key"),
    serviceAccountKey: file("sa.key"),
    serviceAccountPublicKey: file("sa.pub"),
  };
}
