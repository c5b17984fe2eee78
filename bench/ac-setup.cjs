// Request generators for autocannon worker threads (they need a file, not a function). A scenario
// of many distinct requests is generated on the fly here instead of shipping a 10k-entry request
// list to each worker, whose copying staggers the workers' start and skews req/s.
// BENCH_GEN picks the generator; BENCH_GEN_N is the number of distinct chats.
'use strict'
const TEXT = 'hello world, a typical short chat message'
const n = Number(process.env.BENCH_GEN_N || 10000)
let i = Math.floor(Math.random() * n)

module.exports = function setupRequest(req) {
  i = (i + 7919) % n
  if (process.env.BENCH_GEN === 'send-many') {
    req.body = JSON.stringify({ chat: `s${i}:t${i}`, text: TEXT, sender: `s${i}` })
  } else if (process.env.BENCH_GEN === 'pull-many') {
    req.path = `/api/pull?chat=u${i}:u${i + 1}&limit=10`
  }
  return req
}
