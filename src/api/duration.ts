// Durations in specs and flags are written like Go's time.Duration ("500ms", "10s", "2m", "1h30m") so
// that a StreamJob reads like other Kubernetes objects; internally everything is milliseconds.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

// "ms" comes before "m" in the alternation so "500ms" is not read as 500 minutes followed by "s".
const WHOLE = /^(?:\d+(?:ms|s|m|h))+$/;
const COMPONENT = /(\d+)(ms|s|m|h)/g;

/** Parses "500ms", "10s", "2m", "1h", or compounds such as "1h30m", into milliseconds. */
export function parseDuration(text: string): number {
  if (!WHOLE.test(text)) {
    throw new Error(
      `invalid duration ${JSON.stringify(text)}: expected whole numbers with a unit (ms, s, m, h), e.g. "500ms", "10s", "2m", "1h30m"`,
    );
  }
  let total = 0;
  for (const [, amount, unit] of text.matchAll(COMPONENT)) {
    total += Number(amount) * (UNIT_MS[unit ?? ""] ?? Number.NaN);
  }
  if (!Number.isSafeInteger(total)) {
    throw new Error(`invalid duration ${JSON.stringify(text)}: too large`);
  }
  return total;
}
