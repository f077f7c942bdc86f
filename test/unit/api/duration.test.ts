import { parseDuration } from "../../../src/api/duration.js";

describe("parseDuration", () => {
  it.each([
    ["0s", 0],
    ["500ms", 500],
    ["10s", 10_000],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["1m30s500ms", 90_500],
    ["90s", 90_000],
  ])("reads %p as %p ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "10", "10d", "-1s", "1.5s", " 10s", "10s ", "ms", "10S", "1h 30m", "s10", "1e3ms"])(
    "rejects %p with a message naming the input and the expected form",
    (text) => {
      expect(() => parseDuration(text)).toThrow(
        `invalid duration ${JSON.stringify(text)}: expected whole numbers`,
      );
    },
  );

  it("rejects durations beyond what a millisecond count can hold exactly", () => {
    expect(() => parseDuration("9999999999999h")).toThrow("too large");
  });
});
