// `--name value` arguments of the built-in jobs, validated like every other boundary.
import { z } from "zod";
import { formatZodError } from "../../../api/protocol.js";
import { ConfigurationError } from "../../config/environment.js";

/** Parses `--name value` pairs against `shape`; an unknown name or a bad value names the argument. */
export function parseJobArgs<Shape extends z.ZodRawShape>(
  job: string,
  args: readonly string[],
  shape: Shape,
) {
  const given: Record<string, string> = {};
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i] ?? "";
    const value = args[i + 1];
    if (!name.startsWith("--") || value === undefined) {
      throw new ConfigurationError(
        `${job}: expected arguments as "--name value" pairs, got ${JSON.stringify(args)}`,
      );
    }
    given[name.slice(2)] = value;
  }
  const result = z.strictObject(shape).safeParse(given);
  if (!result.success) throw new ConfigurationError(`${job} arguments: ${formatZodError(result.error)}`);
  return result.data;
}
