// The page: a js-libp2p node in the browser that dials a missive node (or any libp2p peer that
// serves the same protocols) once per transport named in the URL query, and reports what it saw.
//
//   index.html?ws=/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3…&webtransport=/ip4/…/webtransport/certhash/…/p2p/12D3…
//
// For each transport it pings the peer (three times), asks it for identify, echoes 10 B, 1 KiB and 100 KiB on
// /echo/1.0.0 and makes one JSON request-response call. The results go to `window.results` (and
// into the <pre id="results">) once every case has ended; `window.results.done` is then true.

import { createLibp2p } from 'libp2p'
import { webSockets } from '@libp2p/websockets'
import { webTransport } from '@libp2p/webtransport'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { ping } from '@libp2p/ping'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'

/** The echo protocol the missive node serves with `stream::Control::accept`. */
export const ECHO_PROTOCOL = '/echo/1.0.0'
/** The JSON request-response protocol (rust-libp2p's `request_response::json` framing). */
export const JSON_PROTOCOL = '/missive/browser-json/1.0.0'
/** The echo sizes, in bytes. */
export const ECHO_SIZES = [10, 1024, 100 * 1024]
/** The text sent in the JSON request. */
export const JSON_TEXT = 'hello from the browser'
/** Deadline of each step (dial, ping, identify, one echo, one request). */
const STEP_TIMEOUT_MS = 10_000
/** Pings per transport. */
const PINGS = 3
/** The transports the page knows, in the order it runs them. */
const TRANSPORTS = ['ws', 'webtransport']

/**
 * The bytes of an echo of `size` bytes: a pattern the missive test computes the same way
 * (`byte i = (i * 31 + size * 7 + (i >> 8)) mod 256`), so it can check the echo without
 * trusting the page.
 */
export function echoPattern (size) {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) {
    bytes[i] = (i * 31 + size * 7 + (i >> 8)) & 0xff
  }
  return bytes
}

async function sha256Hex (bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
  return Array.from(digest, b => b.toString(16).padStart(2, '0')).join('')
}

function errorText (error) {
  if (error == null) return 'unknown error'
  const name = error.name != null && error.name !== 'Error' ? `${error.name}: ` : ''
  return `${name}${error.message ?? String(error)}`
}

function deadline () {
  return AbortSignal.timeout(STEP_TIMEOUT_MS)
}

/** Concatenates what a stream yields (Uint8Array or Uint8ArrayList chunks). */
async function readAll (stream, limit) {
  const chunks = []
  let length = 0
  for await (const chunk of stream) {
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    length += bytes.length
    if (length > limit) throw new Error(`the peer sent more than ${limit} bytes`)
    chunks.push(bytes)
  }
  const all = new Uint8Array(length)
  let offset = 0
  for (const bytes of chunks) {
    all.set(bytes, offset)
    offset += bytes.length
  }
  return all
}

/** Writes `bytes` in slices, waiting for the stream to drain when its buffer is full. */
async function writeAll (stream, bytes, signal) {
  const SLICE = 16 * 1024
  for (let offset = 0; offset < bytes.length; offset += SLICE) {
    if (!stream.send(bytes.subarray(offset, offset + SLICE))) {
      await stream.onDrain({ signal })
    }
  }
}

/** Sends `bytes`, closes the write side, reads to the end: one echo round trip. */
async function echoOnce (node, target, size) {
  const sent = echoPattern(size)
  const signal = deadline()
  const started = performance.now()
  const stream = await node.dialProtocol(target, ECHO_PROTOCOL, { signal })
  // Read while writing: the peer echoes as it reads, and 100 KiB is more than a stream buffers.
  const reading = readAll(stream, size + 1)
  await writeAll(stream, sent, signal)
  await stream.close({ signal })
  const received = await reading
  const ms = performance.now() - started
  let firstDifference = -1
  for (let i = 0; i < Math.max(sent.length, received.length); i++) {
    if (sent[i] !== received[i]) { firstDifference = i; break }
  }
  return {
    size,
    receivedLength: received.length,
    sentSha256: await sha256Hex(sent),
    receivedSha256: await sha256Hex(received),
    equal: firstDifference === -1,
    firstDifference,
    ms
  }
}

/** One request on its own stream, written whole, write side closed, response read to the end. */
async function jsonRequest (node, target) {
  const signal = deadline()
  const request = { text: JSON_TEXT }
  const stream = await node.dialProtocol(target, JSON_PROTOCOL, { signal })
  const reading = readAll(stream, 1024 * 1024)
  await writeAll(stream, new TextEncoder().encode(JSON.stringify(request)), signal)
  await stream.close({ signal })
  const body = new TextDecoder().decode(await reading)
  return { request, response: JSON.parse(body) }
}

/** Runs every step against one address; a failing step is recorded and the others still run. */
async function runTransport (node, name, address) {
  const result = { transport: name, address, ok: false, errors: [] }
  const step = async (label, run) => {
    try {
      result[label] = await run()
    } catch (error) {
      result.errors.push(`${label}: ${errorText(error)}`)
    }
  }
  const target = multiaddr(address)
  let connection
  await step('dial', async () => {
    const started = performance.now()
    connection = await node.dial(target, { signal: deadline() })
    return {
      ms: performance.now() - started,
      remotePeer: connection.remotePeer.toString(),
      remoteAddr: connection.remoteAddr.toString(),
      multiplexer: connection.multiplexer ?? null,
      encryption: connection.encryption ?? null
    }
  })
  if (connection == null) return result

  await step('ping', async () => {
    // The ping service times in whole milliseconds (0 is possible on loopback); the page also
    // times each call, stream opening included, with the finer performance clock. The best of
    // a few pings is what a person wants to see.
    const samples = []
    for (let i = 0; i < PINGS; i++) {
      const started = performance.now()
      const rttMs = await node.services.ping.ping(target, { signal: deadline() })
      samples.push({ rttMs, measuredMs: performance.now() - started })
    }
    return {
      rttMs: Math.min(...samples.map(s => s.rttMs)),
      measuredMs: Math.min(...samples.map(s => s.measuredMs)),
      samples
    }
  })
  await step('identify', async () => {
    const info = await node.services.identify.identify(connection, { signal: deadline() })
    return {
      peerId: info.peerId.toString(),
      agentVersion: info.agentVersion ?? null,
      protocolVersion: info.protocolVersion ?? null,
      protocols: info.protocols,
      listenAddrs: info.listenAddrs.map(a => a.toString()),
      observedAddr: info.observedAddr?.toString() ?? null
    }
  })
  result.echo = []
  for (const size of ECHO_SIZES) {
    try {
      const echo = await echoOnce(node, target, size)
      result.echo.push(echo)
      if (!echo.equal) {
        result.errors.push(`echo ${size} B: ${echo.receivedLength} B back, first difference at byte ${echo.firstDifference}`)
      }
    } catch (error) {
      result.errors.push(`echo ${size} B: ${errorText(error)}`)
    }
  }
  await step('json', () => jsonRequest(node, target))
  const expected = { upper: JSON_TEXT.toUpperCase(), length: [...JSON_TEXT].length }
  if (result.json != null && JSON.stringify(result.json.response) !== JSON.stringify(expected)) {
    result.errors.push(`json: expected ${JSON.stringify(expected)}, got ${JSON.stringify(result.json.response)}`)
  }
  try {
    await connection.close({ signal: deadline() })
  } catch (error) {
    result.errors.push(`close: ${errorText(error)}`)
  }
  result.ok = result.errors.length === 0
  return result
}

function show (results) {
  document.getElementById('results').textContent = JSON.stringify(results, null, 2)
  const summary = document.getElementById('summary')
  summary.replaceChildren()
  for (const name of TRANSPORTS) {
    const r = results.transports[name]
    if (r == null) continue
    const row = document.createElement('tr')
    const cells = [
      name,
      r.dial?.remotePeer ?? '—',
      r.ping != null ? `${r.ping.measuredMs.toFixed(2)} ms (libp2p ping: ${r.ping.rttMs} ms)` : '—',
      r.identify?.agentVersion ?? '—',
      r.echo != null ? r.echo.filter(e => e.equal).map(e => `${e.size} B`).join(', ') || '—' : '—',
      r.json != null ? JSON.stringify(r.json.response) : '—',
      r.ok ? 'ok' : r.errors.join('; ')
    ]
    for (const text of cells) {
      const cell = document.createElement('td')
      cell.textContent = text
      row.append(cell)
    }
    row.className = r.ok ? 'ok' : 'failed'
    summary.append(row)
  }
  document.getElementById('status').textContent = results.done
    ? (results.ok ? 'all checks passed' : 'some checks failed')
    : 'running…'
}

async function main () {
  const query = new URLSearchParams(window.location.search)
  const results = { done: false, ok: false, userAgent: navigator.userAgent, transports: {}, errors: [] }
  window.results = results
  const wanted = TRANSPORTS.filter(name => query.get(name) != null)
  if (wanted.length === 0) {
    results.errors.push('no address: give ?ws=<multiaddr> and/or ?webtransport=<multiaddr>')
  }
  let node
  try {
    node = await createLibp2p({
      addresses: { listen: [] },
      transports: [webSockets(), webTransport()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      // The browser's default gater refuses plain ws and private (loopback) addresses.
      connectionGater: { denyDialMultiaddr: () => false },
      services: {
        // A ping stream counts against js-libp2p's outbound limit (default 1) until the node's
        // close of it arrives; the page pings back to back, so it allows one more in flight.
        ping: ping({ maxOutboundStreams: 2 }),
        identify: identify({ runOnConnectionOpen: false })
      }
    })
    results.browserPeer = node.peerId.toString()
  } catch (error) {
    results.errors.push(`start: ${errorText(error)}`)
  }
  if (node != null) {
    for (const name of wanted) {
      results.transports[name] = { transport: name, ok: false, errors: ['running'] }
      show(results)
      results.transports[name] = await runTransport(node, name, query.get(name))
      show(results)
    }
    await node.stop().catch(error => results.errors.push(`stop: ${errorText(error)}`))
  }
  results.ok = results.errors.length === 0 && wanted.every(name => results.transports[name].ok)
  results.done = true
  show(results)
}

main().catch(error => {
  window.results = { done: true, ok: false, transports: {}, errors: [`page: ${errorText(error)}`] }
  show(window.results)
})
