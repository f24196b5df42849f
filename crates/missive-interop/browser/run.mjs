// Runs the page in headless Chromium against the addresses given and prints its results as one
// JSON line on stdout.
//
//   node run.mjs --ws /ip4/127.0.0.1/tcp/4001/ws/p2p/12D3… [--webtransport /ip4/…/p2p/12D3…]
//                [--timeout-ms 40000] [--screenshot page.png] [--dist dist]
//
// It serves dist/ on 127.0.0.1 (an ephemeral port) with node's http module, so nothing is fetched
// from anywhere else. Exit status: 0 when the page finished (its own `ok` says whether every check
// passed), 2 on a usage error or a missing browser or bundle, 3 when the page did not finish
// before the deadline, 4 when the page threw an uncaught error. On anything but a clean pass the
// page's console goes to stderr. MISSIVE_PAGE_DEBUG='libp2p:*' adds js-libp2p's log to it.

import { createServer } from 'node:http'
import { readFile, stat } from 'node:fs/promises'
import { dirname, extname, join, normalize, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = dirname(fileURLToPath(import.meta.url))
const CHROMIUM = process.env.MISSIVE_CHROMIUM ?? '/usr/bin/chromium'
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json'
}

function usage (message) {
  console.error(`run.mjs: ${message}`)
  console.error('usage: node run.mjs [--ws ADDR] [--webtransport ADDR] [--timeout-ms N] [--screenshot FILE] [--dist DIR]')
  process.exit(2)
}

function parseArgs (argv) {
  const options = { timeoutMs: 40_000, dist: join(here, 'dist'), addresses: {} }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = argv[i + 1]
    if (value == null) usage(`${flag} needs a value`)
    i++
    switch (flag) {
      case '--ws': options.addresses.ws = value; break
      case '--webtransport': options.addresses.webtransport = value; break
      case '--timeout-ms': options.timeoutMs = Number(value); break
      case '--screenshot': options.screenshot = value; break
      case '--dist': options.dist = resolve(value); break
      default: usage(`unknown argument ${flag}`)
    }
  }
  if (Object.keys(options.addresses).length === 0) usage('give --ws and/or --webtransport')
  if (!(options.timeoutMs > 0)) usage('--timeout-ms must be a positive number')
  return options
}

/** Serves the files of `root` (nothing outside it) on 127.0.0.1; resolves to the server. */
function serve (root) {
  const server = createServer(async (request, response) => {
    try {
      const path = decodeURIComponent(new URL(request.url, 'http://127.0.0.1').pathname)
      const file = normalize(join(root, path === '/' ? 'index.html' : path))
      if (request.method !== 'GET' || !file.startsWith(root + sep)) {
        response.writeHead(404).end()
        return
      }
      const body = await readFile(file)
      response.writeHead(200, {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
        'cache-control': 'no-store'
      })
      response.end(body)
    } catch {
      response.writeHead(404).end()
    }
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

async function main () {
  const options = parseArgs(process.argv.slice(2))
  try {
    await stat(join(options.dist, 'page.js'))
  } catch {
    usage(`no bundle in ${options.dist}: run \`npm ci && npm run build\` in ${here}`)
  }
  try {
    await stat(CHROMIUM)
  } catch {
    usage(`no Chromium at ${CHROMIUM}: install it (Debian: \`apt-get install -y chromium\`) or set MISSIVE_CHROMIUM`)
  }

  const server = await serve(options.dist)
  const { port } = server.address()
  const query = new URLSearchParams(options.addresses)
  const url = `http://127.0.0.1:${port}/index.html?${query}`

  const started = performance.now()
  const timings = {}
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root needs --no-sandbox; the background-networking flags keep Chromium from reaching out.
    // QUIC stays enabled: WebTransport runs on it.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync'
    ],
    timeout: 20_000
  })
  timings.launchMs = Math.round(performance.now() - started)
  const consoleLines = []
  const pageErrors = []
  let status = 0
  let results = null
  try {
    const page = await browser.newPage()
    // js-libp2p logs through `debug`, which reads localStorage.debug when the page loads:
    // MISSIVE_PAGE_DEBUG='libp2p:*' puts its log into the console printed on failure.
    if (process.env.MISSIVE_PAGE_DEBUG != null) {
      await page.addInitScript(pattern => { window.localStorage.debug = pattern }, process.env.MISSIVE_PAGE_DEBUG)
    }
    page.on('console', message => consoleLines.push(`[${message.type()}] ${message.text()}`))
    page.on('pageerror', error => pageErrors.push(String(error?.stack ?? error)))
    page.on('requestfailed', request => consoleLines.push(`[request failed] ${request.url()} ${request.failure()?.errorText ?? ''}`))
    await page.goto(url, { timeout: 10_000 })
    try {
      await page.waitForFunction(() => window.results?.done === true, null, { timeout: options.timeoutMs, polling: 100 })
    } catch {
      status = 3
    }
    timings.pageMs = Math.round(performance.now() - started - timings.launchMs)
    results = await page.evaluate(() => window.results ?? null)
    if (options.screenshot != null) await page.screenshot({ path: options.screenshot, fullPage: true })
  } finally {
    await browser.close()
    server.close()
  }
  if (status === 0 && pageErrors.length > 0) status = 4

  timings.totalMs = Math.round(performance.now() - started)
  const line = { url, finished: status === 0, status, timings, results, pageErrors }
  process.stdout.write(JSON.stringify(line) + '\n')
  if (status !== 0 || results?.ok !== true) {
    if (status === 3) console.error(`run.mjs: the page did not finish within ${options.timeoutMs} ms`)
    for (const error of pageErrors) console.error(`run.mjs: page error: ${error}`)
    console.error('run.mjs: the page\'s console:')
    for (const text of consoleLines) console.error(`  ${text}`)
  }
  process.exit(status)
}

main().catch(error => {
  console.error(`run.mjs: ${error?.stack ?? error}`)
  process.exit(2)
})
