// Load generator of bench/relay.py: the same workload against the Home Pocket relay and against
// the y-websocket server (driven with real Yjs updates, since that server parses and applies them).
//
//   node load.mjs <config.json>
//
// config: {mode: "homepocket" | "yws", urls: [ws base URLs, sockets spread over them],
//          books: [[{token?, book_id?}, ...], ...] (one inner list per book, one entry per socket),
//          steps: [offered deliveries/s, ...], step_seconds, payload_bytes, max_p99_ms}
// Each step offers a send rate per socket so that (sockets x rate x (book size - 1)) deliveries/s
// are due; it measures deliveries to the *other* devices (y-websocket also echoes each update to
// its sender: that copy is not counted), one-way latency (sender's clock = receiver's clock: one
// machine), and loss (deliveries due but missing 5 s after the step's last send). It stops after
// the first step with loss or a closed socket, or the second step in a row with p99 over max_p99_ms. One JSON line per step on
// stdout, progress on stderr.
import fs from 'node:fs'
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as syncProtocol from 'y-protocols/sync'

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const now = () => performance.timeOrigin + performance.now()
const log = (...a) => process.stderr.write(a.join(' ') + '\n')

const sockets = []
let closedUnexpectedly = 0
let received = 0
let latencies = new Float64Array(1 << 22)
let latencyCount = 0
let stepStart = Infinity

function record (sentAt) {
  if (sentAt < stepStart) return // a straggler of an earlier step
  received++
  if (latencyCount < latencies.length) latencies[latencyCount++] = now() - sentAt
}

function openHomepocket (url, member, index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/ws/relay/${member.book_id}`, ['homepocket.v1'], {
      headers: { Authorization: `Bearer ${member.token}` }, perMessageDeflate: false
    })
    ws.on('message', (data) => {
      const frame = JSON.parse(data)
      if (frame.type === 'crdt_operation') record(frame.timestamp)
    })
    ws.on('open', () => resolve({ ws, send: () => ws.send(JSON.stringify({ type: 'crdt_operation', payload: payload, timestamp: now() })) }))
    ws.on('close', (code) => { if (!ws.expectedClose) { closedUnexpectedly++; log('closed', index, code) } })
    ws.on('error', reject)
  })
}

function openYws (url, room, index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/${room}`, { perMessageDeflate: false })
    ws.binaryType = 'nodebuffer'
    const doc = new Y.Doc()
    const map = doc.getMap('m')
    const marker = `~from:${index}|`
    // Its own key per device: concurrent sets of one key would make all but one lose, and the
    // server's doc would garbage-collect the losers' content before relaying it.
    const key = `v${index}`
    let pending = null
    doc.on('update', (update) => { pending = update })
    ws.on('message', (data) => {
      // [messageSync=0][messageYjsUpdate=2][update]: find the sender's marker and send time in the
      // update's bytes (the string is stored verbatim) instead of applying it.
      if (data[0] !== 0 || data[1] !== 2) return
      const text = data.toString('latin1')
      const at = text.indexOf('~ts:')
      if (at < 0) return
      const end = text.indexOf('|', at)
      if (text.startsWith(marker, end + 1)) return // the echo to the sender
      record(parseFloat(text.slice(at + 4, end)))
    })
    const send = () => {
      doc.transact(() => map.set(key, `~ts:${now()}|${marker}${padding}`))
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, 0)
      syncProtocol.writeUpdate(encoder, pending)
      ws.send(encoding.toUint8Array(encoder))
    }
    ws.on('open', () => resolve({ ws, send }))
    ws.on('close', (code) => { if (!ws.expectedClose) { closedUnexpectedly++; log('closed', index, code) } })
    ws.on('error', reject)
  })
}

const payload = Buffer.alloc(config.payload_bytes, 7).toString('base64')
const padding = 'x'.repeat(config.payload_bytes)

async function openAll () {
  const jobs = []
  let index = 0
  config.books.forEach((book, bookIndex) => {
    for (const member of book) {
      const url = config.urls[index % config.urls.length]
      const i = index++
      jobs.push(() => config.mode === 'homepocket' ? openHomepocket(url, member, i) : openYws(url, `book-${bookIndex}`, i))
    }
  })
  for (let start = 0; start < jobs.length; start += 50) {
    const opened = await Promise.all(jobs.slice(start, start + 50).map((job) => job()))
    sockets.push(...opened)
  }
}

function percentile (sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : null
}

async function runStep (offered) {
  const size = config.books[0].length
  const perSocket = offered / (sockets.length * (size - 1)) // sends per socket per second
  received = 0
  latencyCount = 0
  stepStart = now()
  let sent = 0
  const tick = 5 // ms
  const end = stepStart + config.step_seconds * 1000
  let due = 0
  let cursor = 0
  let last = stepStart
  while (now() < end) {
    const t = now()
    due += perSocket * sockets.length * (t - last) / 1000
    last = t
    while (due >= 1) {
      sockets[cursor].send()
      cursor = (cursor + 1) % sockets.length
      sent++
      due--
    }
    await new Promise((resolve) => setTimeout(resolve, tick))
  }
  const sendSeconds = (now() - stepStart) / 1000
  const expected = sent * (size - 1)
  const drainUntil = now() + 5000
  while (received < expected && now() < drainUntil) await new Promise((resolve) => setTimeout(resolve, 20))
  const sorted = Array.from(latencies.subarray(0, latencyCount)).sort((a, b) => a - b)
  return {
    offered,
    sent,
    expected,
    received,
    lost: expected - received,
    deliveries_per_s: Math.round(received / sendSeconds),
    p50_ms: percentile(sorted, 0.5),
    p99_ms: percentile(sorted, 0.99),
    max_ms: sorted.length ? sorted[sorted.length - 1] : null,
    closed: closedUnexpectedly
  }
}

await openAll()
log(`opened ${sockets.length} sockets (${config.mode})`)
if (config.hold_seconds) { // idle sockets: the caller measures the server's memory meanwhile
  process.stdout.write(JSON.stringify({ opened: sockets.length }) + '\n')
  await new Promise((resolve) => setTimeout(resolve, config.hold_seconds * 1000))
  process.stdout.write(JSON.stringify({ still_open: sockets.length - closedUnexpectedly }) + '\n')
}
await new Promise((resolve) => setTimeout(resolve, 1500)) // presence and sync step 1 settle
let slowSteps = 0
for (const offered of config.steps) {
  const result = await runStep(offered)
  process.stdout.write(JSON.stringify(result) + '\n')
  log(`  offered ${offered}/s: delivered ${result.deliveries_per_s}/s, lost ${result.lost}, p50 ${result.p50_ms?.toFixed(2)} ms, p99 ${result.p99_ms?.toFixed(2)} ms`)
  // Loss or a closed socket ends the run; p99 over the bound must happen twice in a row (one
  // garbage-collection pause of the server or of this generator is not a saturation).
  slowSteps = result.p99_ms > config.max_p99_ms ? slowSteps + 1 : 0
  if (result.lost > 0 || result.closed > 0 || slowSteps >= 2) break
  await new Promise((resolve) => setTimeout(resolve, 1000))
}
for (const s of sockets) { s.ws.expectedClose = true; s.ws.close() }
process.exit(0)
