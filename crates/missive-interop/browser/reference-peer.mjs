// A js-libp2p node in Node.js that serves what the page expects of a missive node: ping,
// identify, /echo/1.0.0 and the JSON request-response protocol, on a plain ws listener on
// 127.0.0.1. It tells a fault of the page from a fault of the node: when the page passes against
// this peer and fails against missive, the difference is missive's.
//
//   node reference-peer.mjs [--lifetime-s 120]
//
// It prints `{"peerId": …, "addresses": [...]}` as one line and stops after the lifetime, when its
// standard input closes, or on SIGINT/SIGTERM.

import './node20.mjs'
import { createLibp2p } from 'libp2p'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { ping } from '@libp2p/ping'
import { identify } from '@libp2p/identify'

const ECHO_PROTOCOL = '/echo/1.0.0'
const JSON_PROTOCOL = '/missive/browser-json/1.0.0'
const MAX_REQUEST = 1024 * 1024

let lifetimeS = 120
const args = process.argv.slice(2)
for (let i = 0; i < args.length; i += 2) {
  if (args[i] === '--lifetime-s' && Number(args[i + 1]) > 0) lifetimeS = Number(args[i + 1])
  else {
    console.error('usage: node reference-peer.mjs [--lifetime-s N]')
    process.exit(2)
  }
}

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
  transports: [webSockets()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { ping: ping(), identify: identify() }
})

await node.handle(ECHO_PROTOCOL, async stream => {
  try {
    for await (const chunk of stream) {
      if (!stream.send(chunk)) await stream.onDrain()
    }
    await stream.close()
  } catch (error) {
    stream.abort(error)
  }
})

// rust-libp2p's json codec: the request is the whole stream up to the sender's close, the
// response is written whole and the stream closed.
await node.handle(JSON_PROTOCOL, async stream => {
  try {
    const chunks = []
    let length = 0
    for await (const chunk of stream) {
      const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      length += bytes.length
      if (length > MAX_REQUEST) throw new Error('request too large')
      chunks.push(bytes)
    }
    const request = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    const text = String(request.text)
    const response = { upper: text.toUpperCase(), length: [...text].length }
    stream.send(new TextEncoder().encode(JSON.stringify(response)))
    await stream.close()
  } catch (error) {
    stream.abort(error)
  }
})

console.log(JSON.stringify({
  peerId: node.peerId.toString(),
  addresses: node.getMultiaddrs().map(a => a.toString())
}))

let stopping = false
async function stop () {
  if (stopping) return
  stopping = true
  await node.stop()
  process.exit(0)
}
setTimeout(stop, lifetimeS * 1000).unref()
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
