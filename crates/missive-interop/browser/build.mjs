// Bundles the page into dist/ (index.html + page.js): everything the browser loads is local.
import { build } from 'esbuild'
import { copyFile, mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, 'dist')
await mkdir(dist, { recursive: true })
await build({
  entryPoints: [join(here, 'src', 'page.js')],
  outfile: join(dist, 'page.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: false,
  sourcemap: true,
  logLevel: 'warning'
})
await copyFile(join(here, 'index.html'), join(dist, 'index.html'))
console.log(`built ${dist}`)
