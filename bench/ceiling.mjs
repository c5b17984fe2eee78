// @ts-check
// The ceiling: a bare uWebSockets.js server from the project's own dependency, one thread, doing
// the least an HTTP server must for this API: GET answers a fixed 10-message pull page; POST reads
// the body (copying chunks, as pullchat must), parses it as JSON and answers a fixed send reply.
// bench/run.mjs measures it beside pullchat under the same load.
//
//   node bench/ceiling.mjs [port]    prints {"listening":port}

import uWS from 'uWebSockets.js'

const port = Number(process.argv[2] ?? 0)
const messages = Array.from({ length: 10 }, (_, i) => ({ chat: 'a:b', text: `hello world, message number ${i}`, sender: 'a', send_time: 1795577316479813 + i }))
const PULL = JSON.stringify({ messages, has_more: true, next_cursor: 1795577316479823 })
const SEND = '{"chat":"a:b","send_time":1795577316479813}'

const app = uWS.App()
app.get('/*', (res) => {
  res.writeHeader('Content-Type', 'application/json').end(PULL)
})
app.post('/*', (res) => {
  let aborted = false
  res.onAborted(() => (aborted = true))
  /** @type {Buffer[]} */
  const chunks = []
  res.onData((chunk, isLast) => {
    chunks.push(Buffer.from(new Uint8Array(chunk)))
    if (!isLast || aborted) return
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    res.cork(() => {
      res.writeStatus(typeof body.chat === 'string' ? '200 OK' : '400 Bad Request').writeHeader('Content-Type', 'application/json').end(SEND)
    })
  })
})
app.listen('127.0.0.1', port, (socket) => {
  if (!socket) {
    console.error(`cannot listen on ${port}`)
    process.exit(1)
  }
  console.log(JSON.stringify({ listening: uWS.us_socket_local_port(socket) }))
})
process.on('SIGTERM', () => process.exit(0))
