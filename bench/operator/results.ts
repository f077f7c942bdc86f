// The operator bench's results: one row per metric, printed as tables with targets and PASS/MISS
// and written to bench/results/operator.csv.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../../test/support/local-cluster.js";
import { percentile } from "../measure.js";

export interface Row {
  section: string;
  metric: string;
  unit: string;
  values?: number[];
  value?: number;
  target: string;
  pass?: boolean;
  note?: string;
}
export const rows: Row[] = [];
export const errors: string[] = [];

function distribution(values: number[]) {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    max: values.length ? Math.max(...values) : NaN,
  };
}

const verdict = (pass: boolean | undefined) => (pass === undefined ? "" : pass ? "PASS" : "MISS");
const fmt = (value: number, unit: string) =>
  Number.isNaN(value)
    ? "-"
    : ["ms", "requests", "passes", "jobs"].includes(unit)
      ? value.toFixed(0)
      : value.toFixed(2);

export function printTables(): void {
  const dist = rows.filter((row) => row.values);
  const single = rows.filter((row) => !row.values);
  const width = Math.max(...rows.map((row) => `${row.metric} (${row.unit})`.length), 20);
  console.log("");
  console.log(
    `${"metric".padEnd(width)}  ${"n".padStart(3)}  ${"p50".padStart(7)}  ${"p95".padStart(7)}  ${"p99".padStart(7)}  ${"max".padStart(7)}  ${"target".padEnd(14)}  result`,
  );
  for (const row of dist) {
    const d = distribution(row.values!);
    console.log(
      [
        `${row.metric} (${row.unit})`.padEnd(width),
        String(d.n).padStart(3),
        fmt(d.p50, row.unit).padStart(7),
        fmt(d.p95, row.unit).padStart(7),
        fmt(d.p99, row.unit).padStart(7),
        fmt(d.max, row.unit).padStart(7),
        row.target.padEnd(14),
        verdict(row.pass),
      ].join("  "),
    );
  }
  if (single.length === 0) return;
  console.log("");
  console.log(`${"metric".padEnd(width)}  ${"value".padStart(9)}  ${"target".padEnd(14)}  result  note`);
  for (const row of single) {
    console.log(
      [
        `${row.metric} (${row.unit})`.padEnd(width),
        fmt(row.value ?? NaN, row.unit).padStart(9),
        row.target.padEnd(14),
        verdict(row.pass).padEnd(6),
        row.note ?? "",
      ].join("  "),
    );
  }
}

export function writeCsv(): string {
  const file = path.join(repoRoot, "bench/results/operator.csv");
  mkdirSync(path.dirname(file), { recursive: true });
  const quote = (text: string) => (/[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);
  const lines = rows.map((row) => {
    const d = row.values ? distribution(row.values) : undefined;
    const num = (value: number | undefined) =>
      value === undefined || Number.isNaN(value) ? "" : String(Math.round(value * 1000) / 1000);
    return [
      row.section,
      row.metric.trim(),
      row.unit,
      d ? String(d.n) : "",
      num(d?.p50),
      num(d?.p95),
      num(d?.p99),
      num(d?.max),
      num(row.value),
      row.target,
      verdict(row.pass),
      row.note ?? "",
    ]
      .map(quote)
      .join(",");
  });
  writeFileSync(
    file,
    ["section,metric,unit,n,p50,p95,p99,max,value,target,result,note", ...lines].join("\n") + "\n",
  );
  return file;
}
