// HTTP/1.1 over a raw socket, written byte for byte the way k6 (Go's net/http) writes a request:
// Host, User-Agent, Content-Length (only when there is a body), the script's own headers, then
// the transport's Accept-Encoding: gzip. Nothing else: no Accept, no Connection, no Content-Type
// unless the script set one (or passed an object body, which k6 form-encodes).
//
// Runs in a worker thread so that the k6 shim can block on Atomics.wait while a request is on the
// wire: k6's http calls are synchronous, and the scripts rely on it.

import net from 'node:net'
import { parentPort } from 'node:worker_threads'

// One keep-alive connection per virtual user, as k6 keeps them.
const connections = new Map()

function connection(vu, host, port) {
  const key = `${vu}|${host}|${port}`
  let c = connections.get(key)
  if (c !== undefined && !c.closed) return c
  const socket = net.connect(port, host)
  c = { socket, buffer: Buffer.alloc(0), pending: null, closed: false }
  const conn = c
  socket.on('data', (chunk) => {
    conn.buffer = Buffer.concat([conn.buffer, chunk])
    tryParse(conn)
  })
  const onEnd = (err) => {
    conn.closed = true
    connections.delete(key)
    if (conn.pending !== null) {
      const p = conn.pending
      conn.pending = null
      p.reject(err ?? new Error('connection closed before a full response'))
    }
  }
  socket.on('error', onEnd)
  socket.on('close', () => onEnd(null))
  connections.set(key, c)
  return c
}

function tryParse(c) {
  if (c.pending === null) return
  const end = c.buffer.indexOf('\r\n\r\n')
  if (end === -1) return
  const head = c.buffer.subarray(0, end).toString('latin1').split('\r\n')
  const [, status] = /^HTTP\/1\.1 (\d{3})/.exec(head[0]) ?? []
  const headers = {}
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const length = Number(headers['content-length'] ?? 0)
  if (c.buffer.length < end + 4 + length) return
  const body = c.buffer.subarray(end + 4, end + 4 + length).toString('utf8')
  c.buffer = c.buffer.subarray(end + 4 + length)
  const p = c.pending
  c.pending = null
  p.resolve({ status: Number(status), headers, body })
}

parentPort.on('message', ({ port, flag, vu, method, url, headers, body }) => {
  const u = new URL(url)
  const lines = [`${method} ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`]
  const bytes = body === null ? null : Buffer.from(body)
  const own = { ...headers }
  const ua = own['User-Agent']
  delete own['User-Agent']
  lines.push(`User-Agent: ${ua}`)
  if (bytes !== null && bytes.length > 0) lines.push(`Content-Length: ${bytes.length}`)
  for (const k of Object.keys(own).sort()) lines.push(`${k}: ${own[k]}`)
  lines.push('Accept-Encoding: gzip')
  const raw = Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), bytes ?? Buffer.alloc(0)])
  const c = connection(vu, u.hostname, Number(u.port || 80))
  new Promise((resolve, reject) => {
    c.pending = { resolve, reject }
    c.socket.write(raw)
  })
    .then(
      (res) => port.postMessage({ ok: true, res, raw: raw.toString('utf8') }),
      (err) => port.postMessage({ ok: false, error: String(err?.message ?? err), raw: raw.toString('utf8') }),
    )
    .finally(() => {
      Atomics.store(flag, 0, 1)
      Atomics.notify(flag, 0)
    })
})
