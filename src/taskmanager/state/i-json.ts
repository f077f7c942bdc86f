// State values in part format v2 are I-JSON (RFC 7493), tightened so that no value can read back
// differently in another language (docs/protocol.md, "State parts"): every number a finite IEEE
// double, read as one by every reader; strings and member names well-formed Unicode (no lone
// surrogates); no duplicate member names. The writer refuses what it cannot write faithfully; the reader refuses
// what the format forbids. Both answer with the offending place as a JSON path, e.g. `$.counts[2]`.

/**
 * Why `value` cannot be written as I-JSON that reads back the same, or undefined when it can. Job
 * code is JavaScript and may put anything into state: undefined, functions, BigInts, class instances
 * (a Date's toJSON) would be dropped or changed by JSON.stringify, so only plain data passes.
 */
export function unwritableValue(value: unknown, path = "$"): string | undefined {
  switch (typeof value) {
    case "string":
      return value.isWellFormed() ? undefined : `${path}: string holds a lone surrogate`;
    case "number":
      return numberProblem(value, path);
    case "boolean":
      return undefined;
    case "object": {
      if (value === null) return undefined;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          // A hole would be written as null.
          if (!(i in value)) return `${path}[${i}]: array hole`;
          const problem = unwritableValue(value[i], `${path}[${i}]`);
          if (problem !== undefined) return problem;
        }
        return undefined;
      }
      const prototype: unknown = Object.getPrototypeOf(value);
      if (prototype !== Object.prototype && prototype !== null) {
        return `${path}: ${(value as object).constructor?.name ?? "object"} is not plain JSON data`;
      }
      for (const name of Object.keys(value)) {
        if (!name.isWellFormed()) return `${path}: member name holds a lone surrogate`;
        const problem = unwritableValue((value as Record<string, unknown>)[name], memberPath(path, name));
        if (problem !== undefined) return problem;
      }
      return undefined;
    }
    default:
      return `${path}: ${typeof value} is not JSON`;
  }
}

/** Why a value parsed from a part is not allowed there (JSON.parse already made numbers doubles). */
export function forbiddenValue(value: unknown, path = "$"): string | undefined {
  switch (typeof value) {
    case "string":
      return value.isWellFormed() ? undefined : `${path}: string holds a lone surrogate`;
    case "number":
      return numberProblem(value, path);
    case "object": {
      if (value === null) return undefined;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const problem = forbiddenValue(value[i], `${path}[${i}]`);
          if (problem !== undefined) return problem;
        }
        return undefined;
      }
      for (const [name, member] of Object.entries(value)) {
        if (!name.isWellFormed()) return `${path}: member name holds a lone surrogate`;
        const problem = forbiddenValue(member, memberPath(path, name));
        if (problem !== undefined) return problem;
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

// Any finite double is written as the shortest literal that reads back as the same double, and every
// reader parses numbers as doubles, so large ones (2^60, 1e300) travel exactly; only non-finite ones,
// which JSON.stringify would turn into null, cannot be written.
function numberProblem(value: number, path: string): string | undefined {
  return Number.isFinite(value) ? undefined : `${path}: ${value} is not a finite number`;
}

function memberPath(path: string, name: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(name) ? `${path}.${name}` : `${path}[${JSON.stringify(name)}]`;
}

/**
 * The first member name that occurs twice in one object of `json` (valid JSON text), or undefined.
 * JSON.parse keeps the last of duplicates silently, while other parsers keep the first or refuse.
 */
export function duplicateMemberName(json: string): string | undefined {
  if (!json.includes("{")) return undefined;
  // One entry per open object (its names so far) or array (null).
  const open: Array<Set<string> | null> = [];
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x7b /* { */) open.push(new Set());
    else if (c === 0x5b /* [ */) open.push(null);
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) open.pop();
    else if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; json.charCodeAt(i) !== 0x22; i++) {
        if (json.charCodeAt(i) === 0x5c /* \ */) {
          escaped = true;
          i++;
        }
      }
      const names = open.at(-1);
      if (names == null || !isFollowedByColon(json, i + 1)) continue;
      const raw = json.slice(start, i + 1);
      const name = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
      if (names.has(name)) return name;
      names.add(name);
    }
  }
  return undefined;
}

function isFollowedByColon(json: string, from: number): boolean {
  for (let i = from; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x3a /* : */) return true;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
  }
  return false;
}
