import { MinioObjectStore, storageConfigFromSecret } from "../../../src/storage/minio-object-store.js";

const secret = { endpoint: "http://127.0.0.1:9000", accessKey: "operator", secretKey: "s3cr3t-value" };

test("the Secret's keys become the storage configuration, region defaulting to us-east-1", () => {
  expect(storageConfigFromSecret(secret)).toEqual({ ...secret, region: "us-east-1" });
  expect(
    storageConfigFromSecret({ ...secret, endpoint: "https://s3.amazonaws.com", region: "eu-west-1" }),
  ).toEqual({ ...secret, endpoint: "https://s3.amazonaws.com", region: "eu-west-1" });
});

test.each([
  [{ accessKey: "a", secretKey: "b" }, 'missing key "endpoint"'],
  [{ endpoint: secret.endpoint, secretKey: "b" }, 'missing key "accessKey"'],
  [{ endpoint: secret.endpoint, accessKey: "a" }, 'missing key "secretKey"'],
  [{}, 'missing key "endpoint"; missing key "accessKey"; missing key "secretKey"'],
  [{ ...secret, accessKey: "" }, 'key "accessKey" is empty'],
  [{ ...secret, region: "" }, 'key "region" is empty'],
  [{ ...secret, endpoint: "127.0.0.1:9000" }, 'key "endpoint" must be an http:// or https:// URL'],
  [{ ...secret, endpoint: "ftp://minio:21" }, 'key "endpoint" must be an http:// or https:// URL'],
  [{ ...secret, endpoint: "http://minio:9000/bucket" }, 'key "endpoint" must be scheme://host[:port] only'],
  [{ ...secret, endpoint: "http://user:pw@minio:9000" }, 'key "endpoint" must be scheme://host[:port] only'],
])("%j is refused: %s", (data, message) => {
  expect(() => storageConfigFromSecret(data)).toThrow(`Secret streamjob-storage is invalid: ${message}`);
});

test("an error about the Secret never repeats a credential", () => {
  const leaky = { ...secret, endpoint: `http://${secret.secretKey}@minio:9000/${secret.accessKey}` };
  expect(() => storageConfigFromSecret(leaky)).toThrow(/invalid/);
  try {
    storageConfigFromSecret(leaky);
  } catch (err) {
    expect((err as Error).message).not.toContain(secret.secretKey);
    expect((err as Error).message).not.toContain(secret.accessKey);
  }
});

test("the store talks to the endpoint's host and port, over TLS for https", () => {
  const plain = new MinioObjectStore({ ...storageConfigFromSecret(secret), bucket: "b1" });
  expect(plain.endpoint).toBe("http://127.0.0.1:9000");
  expect(plain.bucket).toBe("b1");
  expect(plain.partSizeBytes).toBe(8 * 1024 * 1024);
  const tls = new MinioObjectStore({
    ...storageConfigFromSecret({ ...secret, endpoint: "https://s3.amazonaws.com" }),
    bucket: "b2",
  });
  expect(tls.endpoint).toBe("https://s3.amazonaws.com");
});

test("a part size below S3's 5 MiB minimum is refused", () => {
  const config = { ...storageConfigFromSecret(secret), bucket: "b" };
  expect(() => new MinioObjectStore({ ...config, partSizeBytes: 5 * 1024 * 1024 - 1 })).toThrow(
    /partSizeBytes must be an integer of at least 5242880/,
  );
  expect(new MinioObjectStore({ ...config, partSizeBytes: 5 * 1024 * 1024 }).partSizeBytes).toBe(5242880);
});
