// HTTP/1.1 over one raw keep-alive socket: requests are written byte for byte as given (no header
// is added), so a test can send exactly what a load tool puts on the wire.

import net from 'node:net'

export interface RawResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

export class RawConnection {
  private readonly socket: net.Socket
  private buffer = Buffer.alloc(0)
  private waiting: { resolve: (r: RawResponse) => void; reject: (e: Error) => void } | null = null
  private closed = false

  private constructor(socket: net.Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk])
      this.parse()
    })
    const end = (err?: Error): void => {
      this.closed = true
      const w = this.waiting
      this.waiting = null
      w?.reject(err ?? new Error('connection closed before a whole response'))
    }
    socket.on('error', end)
    socket.on('close', () => end())
  }

  static open(port: number, host = '127.0.0.1'): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host, () => {
        socket.off('error', reject)
        resolve(new RawConnection(socket))
      })
      socket.once('error', reject)
    })
  }

  /** Writes `head` (lines without the final blank line) and `body`; resolves with the response. */
  send(head: readonly string[], body: string | Buffer = ''): Promise<RawResponse> {
    if (this.closed) return Promise.reject(new Error('connection is closed'))
    if (this.waiting !== null) return Promise.reject(new Error('one request at a time'))
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject }
      this.socket.write(Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n', 'latin1'), Buffer.from(body)]))
    })
  }

  close(): void {
    this.socket.destroy()
  }

  private parse(): void {
    if (this.waiting === null) return
    const end = this.buffer.indexOf('\r\n\r\n')
    if (end === -1) return
    const lines = this.buffer.subarray(0, end).toString('latin1').split('\r\n')
    const status = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] ?? '')
    if (status === null) {
      this.waiting.reject(new Error(`bad status line ${JSON.stringify(lines[0])}`))
      this.waiting = null
      return
    }
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const length = Number(headers['content-length'] ?? '0')
    if (this.buffer.length < end + 4 + length) return
    const body = this.buffer.subarray(end + 4, end + 4 + length).toString('utf8')
    this.buffer = this.buffer.subarray(end + 4 + length)
    const w = this.waiting
    this.waiting = null
    w.resolve({ status: Number(status[1]), headers, body })
  }
}
