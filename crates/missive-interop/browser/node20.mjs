// js-libp2p 3 calls Promise.withResolvers, which browsers and Node.js 22 have and Node.js 20 has
// not. Only the reference peer runs js-libp2p in Node.js; the page runs it in Chromium.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((yes, no) => { resolve = yes; reject = no })
    return { promise, resolve, reject }
  }
}
