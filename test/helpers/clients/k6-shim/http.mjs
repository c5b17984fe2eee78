// A synchronous stand-in for k6's 'k6/http' with k6's request rules (js/modules/k6/http/
// request.go): a string body is sent as it is, with no Content-Type unless params.headers has
// one; an object body is form-encoded with Content-Type application/x-www-form-urlencoded;
// params.headers are set last and win; every request carries k6's User-Agent.
import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads'
import { state } from './state.mjs'

export const K6_USER_AGENT = 'k6/0.54.0 (https://k6.io/)'

const wire = new Worker(new URL('./wire.mjs', import.meta.url))
wire.unref()

function send(method, url, body, params) {
  const headers = { 'User-Agent': K6_USER_AGENT }
  let bytes = null
  if (body !== undefined && body !== null) {
    if (typeof body === 'string') bytes = body
    else if (body instanceof ArrayBuffer) bytes = Buffer.from(body)
    else if (typeof body === 'object') {
      bytes = new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)])).toString()
      headers['Content-Type'] = 'application/x-www-form-urlencoded'
    } else throw new Error(`unknown request body type ${typeof body}`)
  }
  for (const [k, v] of Object.entries(params?.headers ?? {})) {
    // Go canonicalises header names: content-type -> Content-Type.
    const canonical = k.toLowerCase().replace(/(^|-)([a-z])/g, (_, dash, c) => dash + c.toUpperCase())
    headers[canonical] = String(v)
  }
  const { port1, port2 } = new MessageChannel()
  const flag = new Int32Array(new SharedArrayBuffer(4))
  wire.postMessage({ port: port2, flag, vu: state.vu, method, url: String(url), headers, body: bytes }, [port2])
  if (Atomics.wait(flag, 0, 0, 30_000) === 'timed-out') throw new Error(`${method} ${url}: no response in 30 s`)
  const { message } = receiveMessageOnPort(port1)
  port1.close()
  state.requests.push({ vu: state.vu, raw: message.raw, status: message.ok ? message.res.status : 0 })
  if (!message.ok) return { status: 0, body: null, headers: {}, error: message.error, json: () => undefined }
  const res = message.res
  return {
    status: res.status,
    body: res.body,
    headers: res.headers,
    error: '',
    request: { method, url: String(url), body: bytes ?? '' },
    json(selector) {
      const v = JSON.parse(res.body)
      if (selector === undefined) return v
      return String(selector)
        .split('.')
        .reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), v)
    },
  }
}

export const request = (method, url, body, params) => send(String(method).toUpperCase(), url, body, params)
export const get = (url, params) => send('GET', url, null, params)
export const head = (url, params) => send('HEAD', url, null, params)
export const post = (url, body, params) => send('POST', url, body, params)
export const put = (url, body, params) => send('PUT', url, body, params)
export const patch = (url, body, params) => send('PATCH', url, body, params)
export const del = (url, body, params) => send('DELETE', url, body, params)
export const options = (url, body, params) => send('OPTIONS', url, body, params)

export default { request, get, head, post, put, patch, del, options }
