// npm run images: builds both images and prints their names and sizes.
import { buildImages, formatMegabytes } from "./build.js";

try {
  const result = await buildImages();
  console.log(`images (bases: ${result.baseSource}), in ${Math.round(result.elapsedMs / 1000)} s:`);
  for (const image of result.images) console.log(`  ${image.name}  ${formatMegabytes(image.bytes)}`);
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
}
