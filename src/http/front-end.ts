// One thread's HTTP front end: a uWS App on the shared port (Linux SO_REUSEPORT spreads
// connections between the threads that listen on it), answering through a Backend that routes
// each chat to its shard. The thread that runs it (src/worker.ts) decides where shards live.
//
// uWS rules kept here: every listen socket and connection is closed before the thread ends (a
// thread that ends with open sockets makes libuv abort the whole process).

import uWS from 'uWebSockets.js'
import type { Config } from '../config.js'
import type { Logger } from '../log.js'
import type { HttpMetrics } from '../metrics/index.js'
import { ROUTES, type Backend, type HandlerContext } from './handlers.js'
import { createAdapter } from './uws-adapter.js'

export interface FrontEnd {
  /** Starts listening; resolves with the bound port, rejects when the port cannot be bound. */
  listen(host: string, port: number): Promise<number>
  /**
   * Stops listening, answers new requests with 503, waits up to `timeoutMs` for those in flight,
   * then closes every connection. Resolves with how many were left unanswered.
   */
  stop(timeoutMs: number): Promise<number>
  /** Closes the listen socket and every connection at once (a crashing thread). */
  closeNow(): void
}

export function createFrontEnd(
  config: Config,
  backend: Backend,
  metrics: HttpMetrics,
  scrape: HandlerContext['scrape'],
  log: Logger,
): FrontEnd {
  const adapter = createAdapter(ROUTES, { config, backend, counters: metrics, scrape }, log, metrics.request)
  let listenSocket: uWS.us_listen_socket | null = null
  // Present in the native build but missing from its type declarations.
  const closeApp = (): void => (adapter.app as unknown as { close(): void }).close()
  const closeListen = (): void => {
    if (listenSocket === null) return
    uWS.us_listen_socket_close(listenSocket)
    listenSocket = null
  }
  return {
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        adapter.app.listen(host, port, (socket) => {
          if (socket === false) {
            reject(new Error(`cannot listen on ${host}:${port}`))
            return
          }
          listenSocket = socket
          resolve(uWS.us_socket_local_port(socket))
        })
      }),
    stop: (timeoutMs) =>
      new Promise((resolve) => {
        closeListen()
        adapter.drain()
        const deadline = Date.now() + timeoutMs
        const poll = (): void => {
          const left = adapter.inflight()
          if (left === 0 || Date.now() >= deadline) {
            if (left > 0) log.warn('shutdown timeout with requests in flight', { inflight: left })
            // Drop idle keep-alive connections too; let the loop turn once so the closes complete.
            closeApp()
            setImmediate(() => resolve(left))
            return
          }
          setTimeout(poll, 5)
        }
        poll()
      }),
    closeNow: () => {
      closeListen()
      closeApp()
    },
  }
}
