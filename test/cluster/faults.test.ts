// Storage faults in the real server, injected below Node with LD_PRELOAD (fixtures/wal-faults.c):
// a full disk (ENOSPC on writes to *.wal) and a failing fdatasync (EIO), switched on and off by
// flag files while the server runs.

import { spawnSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { exited, spawnServer } from '../helpers/process.js'
import { getJson, postJson } from '../helpers/server.js'

const cc = spawnSync('cc', ['--version']).status === 0

t.test('storage faults', { skip: cc ? false : 'no C compiler (cc) to build the LD_PRELOAD fault shim' }, async (t) => {
  const dir = t.testdir()
  const lib = join(dir, 'libwalfault.so')
  const build = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', lib, join(import.meta.dirname, 'fixtures/wal-faults.c'), '-ldl'], { encoding: 'utf8' })
  t.equal(build.status, 0, `fault shim builds ${build.stderr}`)
  const enospc = join(dir, 'enospc.flag')
  const eio = join(dir, 'eio.flag')
  const dataDir = join(dir, 'data')
  const env = { LD_PRELOAD: lib, FAULT_ENOSPC_FLAG: enospc, FAULT_EIO_FLAG: eio }
  const send = (port: number, text: string) => postJson(port, '/api/send', { chat: 'alice:bob', text, sender: 'alice' })
  const texts = async (port: number) => (await getJson(port, '/api/pull', { chat: 'alice:bob', limit: 100 })).json.messages.map((m: { text: string }) => m.text)

  t.test('a full disk: 503 and nothing stored; pulls work; sends resume when space frees', async (t) => {
    const { proc, port } = await spawnServer(t, [], { dataDir, env })
    t.equal((await send(port, 'before')).status, 200)
    writeFileSync(enospc, '')
    for (const text of ['full-1', 'full-2']) {
      const r = await send(port, text)
      t.equal(r.status, 503)
      t.same(r.json, {
        statusCode: 503,
        code: 'IM_ERR_WAL_NO_SPACE',
        error: 'Service Unavailable',
        message: 'no space left on the log device; the message was not stored (ENOSPC)',
      })
    }
    t.same(await texts(port), ['before'], 'pulls work, and show nothing of the refused sends')
    rmSync(enospc)
    t.equal((await send(port, 'after')).status, 200, 'sends resume')
    t.same(await texts(port), ['before', 'after'])
    proc.kill('SIGTERM')
    t.equal(await exited(proc), 0)
    const again = await spawnServer(t, [], { dataDir })
    t.same(await texts(again.port), ['before', 'after'], 'after a restart: exactly the acknowledged sends')
    again.proc.kill('SIGTERM')
    t.equal(await exited(again.proc), 0)
  })

  t.test('a failed fdatasync: nothing acknowledged, exit 74, recovery keeps what was acknowledged', async (t) => {
    const { proc, port, output } = await spawnServer(t, [], { dataDir, env })
    t.equal((await send(port, 'durable')).status, 200)
    writeFileSync(eio, '')
    const r = await send(port, 'never acknowledged').catch((err: Error) => ({ status: 0, json: { error: err.message } }))
    t.not(r.status, 200, `the send whose sync failed is not acknowledged (${r.status})`)
    t.equal(await exited(proc), 74, 'exit code 74')
    rmSync(eio)
    t.match(output(), '"msg":"log sync failed; exiting')
    const again = await spawnServer(t, [], { dataDir })
    const after = await texts(again.port)
    t.same(after.slice(0, 3), ['before', 'after', 'durable'], 'every acknowledged send survived')
    t.ok(after.length <= 4, 'the unacknowledged one may or may not have reached the disk, never twice')
    again.proc.kill('SIGTERM')
    t.equal(await exited(again.proc), 0)
  })
})
