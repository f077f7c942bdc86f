// Bundles the operator and the TaskManager, each with the production dependencies it imports, into
// one ES module per image (images/Dockerfile): tree-shaken, no node_modules to ship.
//   npx tsx scripts/bundle.ts <out-dir>   ->  <out-dir>/operator.mjs, <out-dir>/taskmanager.mjs
import { build } from "esbuild";
import path from "node:path";

const outdir = path.resolve(process.argv[2] ?? "dist/bundle");

await build({
  entryPoints: { operator: "src/operator/main.ts", taskmanager: "src/taskmanager/main.ts" },
  outdir,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // Licences of the bundled packages, next to each bundle.
  legalComments: "external",
  // The Kafka client's compression codecs load a .wasm file next to their own module, which a
  // bundle does not have; the package's "bundled" entry inlines it.
  // tr46 (under the Kubernetes client) requires "punycode", which a bundler for Node resolves to
  // Node's deprecated built-in (a warning at every start); the npm package of that name is meant.
  alias: { "@platformatic/wasm-utils": "@platformatic/wasm-utils/bundled", punycode: "punycode/" },
  // Bundled CommonJS packages call require() for Node's built-ins, which an ES module lacks.
  banner: {
    js: "import { createRequire as __bundleCreateRequire } from 'node:module'; const require = __bundleCreateRequire(import.meta.url);",
  },
  logLevel: "warning",
});
console.log(`bundled operator.mjs and taskmanager.mjs into ${outdir}`);
