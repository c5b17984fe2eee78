// pullchat under k6, written the way the assignment's k6 scripts were: each virtual user owns
// one direct chat, sends a message (POST with a JSON string body), pulls forward from the
// send_time it got back (GET with a JSON body, which only http.request can send), and pulls the
// newest message with query parameters and reverse=true.
//
//   k6 run examples/k6/pullchat.js                                # against http://localhost:8080
//   k6 run -e BASE_URL=http://10.0.0.5:8080 examples/k6/pullchat.js
//
// k6 sends a string body as it is, with only the headers given in params (plus its User-Agent).

import http from 'k6/http'
import { check, sleep } from 'k6'

export const options = {
  vus: 10,
  duration: '10s',
  thresholds: {
    checks: ['rate==1.0'],
    http_req_failed: ['rate==0'],
  },
}

const BASE_URL = __ENV.BASE_URL || 'http://localhost:8080'
const params = { headers: { 'Content-Type': 'application/json' } }

// Per virtual user: module state is not shared between VUs.
const me = `vu${__VU}-${Date.now()}`
const peer = 'amy'
// Written "me:peer"; the server answers with the canonical id, members sorted.
const chat = `${me}:${peer}`
const canonical = [me, peer].sort().join(':')
let sent = 0

export default function () {
  const text = `message ${++sent} from ${me}`
  const sendRes = http.post(`${BASE_URL}/api/send`, JSON.stringify({ chat: chat, text: text, sender: me }), params)
  check(sendRes, {
    'send: status 200': (r) => r.status === 200,
    'send: canonical chat': (r) => r.json().chat === canonical,
    'send: send_time is an integer in microseconds': (r) => Number.isInteger(r.json().send_time) && r.json().send_time > 1e15,
  })
  const sendTime = sendRes.json().send_time

  // GET with a JSON body, as the assignment's own client does.
  const pullRes = http.request('GET', `${BASE_URL}/api/pull`, JSON.stringify({ chat: chat, cursor: sendTime, limit: 10, reverse: false }), params)
  check(pullRes, {
    'pull: status 200': (r) => r.status === 200,
    'pull: the message just sent, and nothing after it': (r) => {
      const page = r.json()
      return page.messages.length === 1 && page.messages[0].text === text && page.messages[0].send_time === sendTime && page.messages[0].chat === canonical
    },
    'pull: has_more is false': (r) => r.json().has_more === false,
    'pull: next_cursor is one past the last send_time': (r) => r.json().next_cursor === sendTime + 1,
  })

  const newest = http.get(`${BASE_URL}/api/pull?chat=${encodeURIComponent(chat)}&reverse=true&limit=1`)
  check(newest, {
    'reverse: status 200': (r) => r.status === 200,
    'reverse: newest first': (r) => r.json().messages[0].send_time === sendTime,
    'reverse: has_more once there is an older message': (r) => r.json().has_more === (sent > 1),
    'reverse: next_cursor is one before the page': (r) => r.json().next_cursor === sendTime - 1,
  })

  sleep(0.1)
}
