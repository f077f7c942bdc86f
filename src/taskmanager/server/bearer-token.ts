// The job's bearer token, checked the same way on the HTTP API and the exchange's upgrade.
import { createHash, timingSafeEqual } from "node:crypto";

/** A checker for `Authorization` header values; comparing digests keeps it constant-time. */
export function bearerTokenCheck(token: string): (authorization: string | undefined) => boolean {
  const expected = digest(token);
  return (authorization) => {
    const match = /^Bearer (\S+)$/i.exec(authorization ?? "");
    return match?.[1] !== undefined && timingSafeEqual(digest(match[1]), expected);
  };
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
