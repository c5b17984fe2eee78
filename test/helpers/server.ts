// Starts the real server (the built dist/, as `npm start` runs it) in-process on a random
// loopback port, and makes raw HTTP requests to it, GET-with-body included.

import http from 'node:http'
import type { Test } from 'tap'
import type { Config } from '../../src/config.js'

export interface Server {
  readonly port: number
  readonly base: string
  readonly cluster: {
    shardWorker(i: number): import('node:worker_threads').Worker | null
    shardRestarted(i: number, n: number): Promise<void>
    stop(): Promise<void>
  }
}

export async function startServer(t: Test, overrides: Partial<Config> = {}): Promise<Server> {
  const { parseConfig } = (await import('../../dist/config.js')) as typeof import('../../src/config.js')
  const { startCluster } = (await import('../../dist/cluster.js')) as typeof import('../../src/cluster.js')
  // t.testdir() empties the test's directory: only make one when none is given (restarts reuse it).
  const dataDir = overrides.dataDir ?? t.testdir()
  const { config } = parseConfig([], {}, { port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent', ...overrides })
  const cluster = await startCluster(config)
  t.teardown(() => cluster.stop())
  return { port: cluster.port, base: `http://127.0.0.1:${cluster.port}`, cluster }
}

export interface Res {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly text: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly json: any
}

export interface Req {
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly body?: string | Buffer
  /** Send the body with Transfer-Encoding: chunked instead of Content-Length. */
  readonly chunked?: boolean
  readonly agent?: http.Agent
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })

export function request(port: number, path: string, req: Req = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...req.headers }
    if (req.body !== undefined && !req.chunked) headers['content-length'] = Buffer.byteLength(req.body)
    const r = http.request({ host: '127.0.0.1', port, path, method: req.method ?? 'GET', headers, agent: req.agent ?? agent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
      res.on('error', reject)
    })
    r.on('error', reject)
    if (req.body !== undefined) {
      if (req.chunked) {
        const b = Buffer.from(req.body)
        const half = Math.floor(b.length / 2)
        r.write(b.subarray(0, half))
        r.write(b.subarray(half))
      } else r.write(req.body)
    }
    r.end()
  })
}

/** POST a JSON body. */
export const postJson = (port: number, path: string, body: unknown): Promise<Res> =>
  request(port, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

/** GET with a JSON body, as the assignment's own clients do. */
export const getJson = (port: number, path: string, body: unknown): Promise<Res> =>
  request(port, path, { method: 'GET', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

export const errorOf = (statusCode: number, code: string, error: string, message: string | RegExp) => ({ statusCode, code, error, message })
