// SyncThread: a log's fdatasyncs on a thread of its own. Answers in order, errors as fdatasync's
// own, stop() serves what it took and refuses the rest, a thread that dies fails what it held, and
// an idle thread does not keep a process alive. (The writer's tests run every sync through one.)

import { spawnSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { SyncThread } from '../../src/wal/sync-thread.js'

const sync = (thread: SyncThread, fd: number): Promise<NodeJS.ErrnoException | null> => new Promise((resolve) => thread.fdatasync(fd, resolve))

function tempFile(t: Tap.Test): number {
  const dir = mkdtempSync(join(tmpdir(), 'pullchat-sync-thread-'))
  const fd = openSync(join(dir, 'f'), 'w+')
  t.teardown(() => {
    closeSync(fd)
    rmSync(dir, { recursive: true, force: true })
  })
  return fd
}

t.test('syncs are answered, in the order asked', async (t) => {
  const fd = tempFile(t)
  const thread = new SyncThread()
  t.teardown(() => thread.stop())
  const order: number[] = []
  const all = Array.from({ length: 20 }, (_, i) => {
    writeSync(fd, Buffer.from(`record ${i}\n`))
    return new Promise<NodeJS.ErrnoException | null>((resolve) =>
      thread.fdatasync(fd, (err) => {
        order.push(i)
        resolve(err)
      }),
    )
  })
  const errs = await Promise.all(all)
  t.same(errs, Array(20).fill(null), 'every sync succeeded')
  t.same(order, Array.from({ length: 20 }, (_, i) => i), 'in order')
})

t.test('a sync is answered with how long the fdatasync call took on the thread, within the wait for it', async (t) => {
  const fd = tempFile(t)
  const thread = new SyncThread()
  t.teardown(() => thread.stop())
  await thread.ready()
  for (let i = 0; i < 5; i++) {
    writeSync(fd, Buffer.alloc(4096, i))
    const t0 = performance.now()
    const [err, callMs] = await new Promise<[NodeJS.ErrnoException | null, number | undefined]>((resolve) => thread.fdatasync(fd, (e, ms) => resolve([e, ms])))
    const waitedMs = performance.now() - t0
    t.equal(err, null)
    t.type(callMs, 'number')
    t.ok((callMs as number) > 0 && (callMs as number) <= waitedMs, `the call took ${callMs} ms of the ${waitedMs} ms waited`)
  }
  const [err, callMs] = await new Promise<[NodeJS.ErrnoException | null, number | undefined]>((resolve) => thread.fdatasync(2 ** 30, (e, ms) => resolve([e, ms])))
  t.equal(err?.code, 'EBADF', 'a failed call')
  t.equal(callMs, undefined, 'is answered without a time')
})

t.test('a failed fdatasync is answered with its errno error', async (t) => {
  const thread = new SyncThread()
  t.teardown(() => thread.stop())
  const err = await sync(thread, 2 ** 30) // no such fd
  t.equal(err?.code, 'EBADF')
  t.equal(err?.syscall, 'fdatasync')
  t.type(err?.errno, 'number')
  // The thread goes on serving after a failure.
  t.equal(await sync(thread, tempFile(t)), null)
})

t.test('stop() serves the syncs it took, refuses later ones, and the thread ends', async (t) => {
  const fd = tempFile(t)
  const thread = new SyncThread()
  const taken = [sync(thread, fd), sync(thread, fd), sync(thread, fd)]
  thread.stop()
  thread.stop()
  const late = await sync(thread, fd)
  t.equal(late?.code, 'ECANCELED', 'a sync asked after stop() is refused')
  t.same(await Promise.all(taken), [null, null, null], 'those taken before were served')
})

t.test('a thread that ends without answering fails the syncs it held (as EIO)', async (t) => {
  const fd = tempFile(t)
  const thread = new SyncThread(new URL('./fixtures/sync-thread-dies.ts', import.meta.url))
  const [a, b] = await Promise.all([sync(thread, fd), sync(thread, fd)])
  t.equal(a?.code, 'EIO')
  t.match(a?.message ?? '', /sync thread exited \(code 3\)/)
  t.equal(b?.code, 'EIO', 'the one queued behind it too')
  t.equal((await sync(thread, fd))?.code, 'ECANCELED', 'and nothing is asked of it after')
})

t.test('ready() resolves once the thread waits for requests, and rejects if it cannot start', async (t) => {
  const thread = new SyncThread()
  t.teardown(() => thread.stop())
  await thread.ready()
  await thread.ready() // and again at once
  t.equal(await sync(thread, tempFile(t)), null)
  const broken = new SyncThread(new URL('./fixtures/no-such-thread.js', import.meta.url))
  await t.rejects(broken.ready(), { message: /Cannot find module .*no-such-thread\.js/ }, 'a thread whose body cannot load')
  t.equal((await sync(broken, tempFile(t)))?.code, 'ECANCELED', 'and it takes no sync')
})

t.test('an idle sync thread does not keep the process alive', async (t) => {
  // The built module, in a process of its own: it must exit once its sync is answered, without stop().
  const dir = mkdtempSync(join(tmpdir(), 'pullchat-sync-thread-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'f')
  closeSync(openSync(file, 'w'))
  const script = join(dir, 'idle.mjs')
  writeFileSync(
    script,
    `import { openSync } from 'node:fs'
    import { SyncThread } from ${JSON.stringify(new URL('../../dist/wal/sync-thread.js', import.meta.url).href)}
    const thread = new SyncThread()
    thread.start()
    thread.fdatasync(openSync(${JSON.stringify(file)}, 'r+'), (err) => console.log('synced', err))
    `,
  )
  const run = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20_000 })
  t.equal(run.signal, null, 'it exited by itself (not killed at the timeout)')
  t.equal(run.status, 0, run.stderr)
  t.equal(run.stdout.trim(), 'synced null', 'after its sync was answered')
})
