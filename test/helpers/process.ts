// Runs the real server as a child process (`node dist/cluster.js`), as users run it.

import { spawn, type ChildProcess } from 'node:child_process'
import type { Test } from 'tap'

export interface Child {
  readonly proc: ChildProcess
  readonly port: number
  /** Everything the server printed so far (stdout and stderr). */
  readonly output: () => string
}

export async function spawnServer(t: Test, args: string[], opts: { dataDir?: string; env?: Record<string, string> } = {}): Promise<Child> {
  const dataDir = opts.dataDir ?? t.testdir()
  const proc = spawn(process.execPath, ['dist/cluster.js', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  })
  let out = ''
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  proc.stderr?.on('data', (c: Buffer) => (out += c.toString()))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    const line = out.split('\n').find((l) => l.includes('"msg":"listening"'))
    if (line !== undefined) return { proc, port: JSON.parse(line).port as number, output: () => out }
    if (proc.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 20))
  }
  proc.kill('SIGKILL')
  throw new Error(`server did not start:\n${out}`)
}

/** Resolves with the exit code (or signal name) once the child has exited. */
export function exited(proc: ChildProcess): Promise<number | string> {
  if (proc.exitCode !== null) return Promise.resolve(proc.exitCode)
  if (proc.signalCode !== null) return Promise.resolve(proc.signalCode)
  return new Promise((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)))
}
