// The data directory: its lock (one server at a time; a dead server's lock is taken over), the
// recorded shard count, and repair of a corrupt log, by repairLog and by the real CLI.
//
// The tests that run processes use the build in dist/ (`npm run build`; `npm test` builds first).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { recoverStore } from '../../src/store/recover.js'
import { ShardStore } from '../../src/store/shard-store.js'
import { DataDirError, LOCK_FILE, META_FILE, lockDataDir, readShardCount, recordShardCount, processStartTime, repairLog, segmentName, shardDir } from '../../src/wal/index.js'
import { appendAll, assertStore, layout, messages, openWriter, payloadOf, readBack, resumeState, setFormatVersion, writeLog, type RecordLoc, type SegLoc } from './helpers.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
// Only PATH: no loader flags of the test runner, no configuration from the environment.
const CHILD_ENV = { PATH: process.env.PATH ?? '' }

function needBuild(t: Test): boolean {
  if (existsSync(join(ROOT, 'dist', 'repair.js'))) return true
  t.fail('dist/repair.js is missing: run `npm run build` first')
  return false
}

/** A child process that stays alive until the test ends. */
function liveProcess(t: Test): ChildProcess {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', env: CHILD_ENV })
  t.teardown(() => {
    child.kill()
  })
  return child
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore', env: CHILD_ENV })
  const pid = child.pid as number
  await new Promise((resolve) => child.on('exit', resolve))
  return pid
}

const lockContent = (dir: string) => JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as { pid: number; started: string; pidStart?: string }

// ---------------------------------------------------------------------------------------------
// The lock

t.test('lockDataDir: refuses a directory locked by a live process, naming its pid', async (t) => {
  const dir = t.testdir()
  const holder = liveProcess(t)
  const lockPath = join(dir, LOCK_FILE)
  writeFileSync(lockPath, JSON.stringify({ pid: holder.pid, started: '2026-01-01T00:00:00.000Z' }) + '\n')
  const before = readFileSync(lockPath)
  t.throws(() => lockDataDir(dir, () => t.fail('not stale')), new DataDirError(`data directory ${dir} is in use by process ${holder.pid} (lock file ${lockPath}); stop that server first`))
  t.throws(() => lockDataDir(dir), DataDirError)
  t.same(readFileSync(lockPath), before, 'the lock is left alone')
})

t.test('lockDataDir: a lock whose pid now belongs to another process (pid reuse) is stale; its own holder is not', async (t) => {
  const dir = t.testdir()
  const holder = liveProcess(t)
  const lockPath = join(dir, LOCK_FILE)
  const start = processStartTime(holder.pid as number)
  t.match(start, /^\d+$/, 'the start time of a live process can be read')
  // The holder itself, started when the lock says: in use.
  writeFileSync(lockPath, JSON.stringify({ pid: holder.pid, started: '2026-01-01T00:00:00.000Z', pidStart: start }) + '\n')
  t.throws(() => lockDataDir(dir, () => t.fail('not stale')), DataDirError)
  // The same pid with another start time: the lock's holder died and the pid went to another.
  writeFileSync(lockPath, JSON.stringify({ pid: holder.pid, started: '2026-01-01T00:00:00.000Z', pidStart: String(Number(start) + 1) }) + '\n')
  const stale: number[] = []
  const lock = lockDataDir(dir, (p) => stale.push(p))
  t.same(stale, [holder.pid], 'taken over, and onStale told')
  t.match(lockContent(dir), { pid: process.pid, pidStart: processStartTime('self') }, 'the new lock records our own start time')
  lock.release()
})

t.test('lockDataDir: a second process cannot take a lock this one holds', async (t) => {
  if (!needBuild(t)) return
  const dir = t.testdir()
  const lock = lockDataDir(dir)
  t.equal(lockContent(dir).pid, process.pid, 'LOCK names this process')
  const script = `import { lockDataDir } from './dist/wal/index.js'
try { lockDataDir(process.argv[1]); console.log('locked') } catch (e) { console.log(e.name + ': ' + e.message); process.exitCode = 3 }`
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, dir], { cwd: ROOT, encoding: 'utf8', env: CHILD_ENV })
  t.equal(child.status, 3, child.stderr)
  t.equal(child.stdout, `DataDirError: data directory ${dir} is in use by process ${process.pid} (lock file ${join(dir, LOCK_FILE)}); stop that server first\n`)
  lock.release()
  t.notOk(existsSync(join(dir, LOCK_FILE)), 'release() removes the lock file')
  const again = spawnSync(process.execPath, ['--input-type=module', '-e', script, dir], { cwd: ROOT, encoding: 'utf8', env: CHILD_ENV })
  t.equal(again.stdout, 'locked\n', 'and then another process can take it')
})

t.test('lockDataDir: a stale lock (its process has exited) is taken over, and onStale told', async (t) => {
  const dir = t.testdir()
  const pid = await deadPid()
  writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid, started: '2026-01-01T00:00:00.000Z' }) + '\n')
  const stale: number[] = []
  const lock = lockDataDir(dir, (p) => stale.push(p))
  t.same(stale, [pid], 'onStale called once with the dead pid')
  t.equal(lockContent(dir).pid, process.pid, 'the lock is ours now')
  lock.release()
  t.notOk(existsSync(join(dir, LOCK_FILE)), 'release() removes the file')
  const next = lockDataDir(dir)
  lock.release()
  t.ok(existsSync(join(dir, LOCK_FILE)), "a second release() leaves alone the lock taken since")
  next.release()
  t.notOk(existsSync(join(dir, LOCK_FILE)))
})

t.test('lockDataDir: a lock naming our own pid (a container restart) or unreadable is stale', async (t) => {
  const dir = t.testdir()
  const lockPath = join(dir, LOCK_FILE)
  for (const [content, want] of [
    [JSON.stringify({ pid: process.pid }), process.pid],
    ['{"pi', NaN],
    ['', NaN],
  ] as const) {
    writeFileSync(lockPath, content)
    const stale: number[] = []
    const lock = lockDataDir(dir, (p) => stale.push(p))
    t.same(stale, [want], `${JSON.stringify(content)}: stale`)
    t.equal(lockContent(dir).pid, process.pid)
    lock.release()
  }
})

t.test('lockDataDir: creates the directory, and no onStale for a free one', async (t) => {
  const dir = join(t.testdir(), 'a', 'b')
  const lock = lockDataDir(dir, () => t.fail('not stale'))
  t.ok(existsSync(join(dir, LOCK_FILE)))
  t.match(lockContent(dir), { pid: process.pid, started: /^\d{4}-\d\d-\d\dT/ })
  lock.release()
})

// ---------------------------------------------------------------------------------------------
// The shard count

t.test('recordShardCount records a new directory\'s count durably; readShardCount reads it back, null before', async (t) => {
  const dir = t.testdir()
  const metaPath = join(dir, META_FILE)
  t.equal(readShardCount(dir), null, 'a new directory has no count')
  recordShardCount(dir, 4)
  t.equal(readFileSync(metaPath, 'utf8'), '{"format":1,"shards":4}\n', 'recorded')
  t.same(readdirSync(dir), [META_FILE], 'no temporary file left')
  t.equal(readShardCount(dir), 4)
})

t.test('readShardCount: refuses an unknown format, a bad count or an unreadable file', async (t) => {
  const dir = t.testdir()
  const metaPath = join(dir, META_FILE)
  writeFileSync(metaPath, '{"format":2,"shards":4}\n')
  t.throws(() => readShardCount(dir), new DataDirError(`${metaPath}: unsupported data format 2`))
  writeFileSync(metaPath, '{"format":1,"shards":0}\n')
  t.throws(() => readShardCount(dir), new DataDirError(`${metaPath}: bad shard count 0`))
  writeFileSync(metaPath, '{"format":1,')
  t.throws(() => readShardCount(dir), { name: 'DataDirError', message: new RegExp(`^cannot read ${metaPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `) })
})

// ---------------------------------------------------------------------------------------------
// Repair

const PER_SEGMENT = 3

/** A log of 3 segments of PER_SEGMENT records each (one record per round, records of one size). */
async function threeSegments(dir: string, shard = 0): Promise<{ msgs: ReturnType<typeof messages>; segs: SegLoc[] }> {
  const msgs = messages(0, 3 * PER_SEGMENT, () => 50)
  const recordBytes = 8 + payloadOf(msgs[0] as (typeof msgs)[number]).length
  await writeLog(dir, msgs, { shard, batchBytesMax: 1, segmentBytes: 32 + PER_SEGMENT * recordBytes })
  const segs = layout(dir)
  if (segs.length !== 3 || segs.some((s) => s.records.length !== PER_SEGMENT)) throw new Error('fixture: expected 3 segments of 3 records')
  return { msgs, segs }
}

function flipBit(path: string, offset: number): void {
  const buf = readFileSync(path)
  buf[offset] = (buf[offset] as number) ^ 0x10
  writeFileSync(path, buf)
}

/** Every file in `dir` with its bytes. */
function snapshot(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((name) => [name, readFileSync(join(dir, name))]))
}

/** Flips a bit mid-file in segment 2 of 3 (in its second record); returns what repair should see. */
function damageSegment2(segs: readonly SegLoc[]) {
  const [seg1, seg2, seg3] = segs as [SegLoc, SegLoc, SegLoc]
  const bad = seg2.records[1] as RecordLoc
  flipBit(seg2.path, bad.offset + 20)
  return { seg1, seg2, seg3, bad, next: seg2.records[2] as RecordLoc, kept: PER_SEGMENT + 1 }
}

t.test('repairLog: a bit flipped mid-file in segment 2 of 3: cut there, the rest kept as .broken, recovery then succeeds', async (t) => {
  const dir = t.testdir()
  const { msgs, segs } = await threeSegments(dir)
  const { seg1, seg2, seg3, bad, next, kept } = damageSegment2(segs)
  t.throws(() => recoverStore(dir, 0, new ShardStore()), { name: 'WalCorruptError', file: seg2.path, offset: bad.offset }, 'recovery refuses first')
  const before = snapshot(dir)

  const actions = repairLog(dir, 0)
  t.same(actions, [
    { file: seg2.path, action: 'truncated', offset: bad.offset, brokenCopy: `${seg2.path}.broken`, reason: `checksum mismatch, followed by a valid record at offset ${next.offset}` },
    { file: seg3.path, action: 'moved', brokenCopy: `${seg3.path}.broken`, reason: 'follows the cut' },
  ])
  t.same(readdirSync(dir).sort(), [seg1.name, seg2.name, `${seg2.name}.broken`, `${seg3.name}.broken`])
  t.same(readFileSync(seg1.path), before.get(seg1.name), 'segment 1 untouched')
  t.same(readFileSync(seg2.path), (before.get(seg2.name) as Buffer).subarray(0, bad.offset), 'segment 2 truncated at the reported offset')
  t.same(readFileSync(`${seg2.path}.broken`), before.get(seg2.name), 'segment 2.broken holds its original bytes')
  t.same(readFileSync(`${seg3.path}.broken`), before.get(seg3.name), 'segment 3 renamed .broken, bytes intact')

  const store = new ShardStore()
  const { log } = recoverStore(dir, 0, store)
  t.equal(log.torn, null, 'clean')
  t.equal(log.records, kept, 'exactly the records before the damage')
  assertStore(store, msgs.slice(0, kept))
  t.same(readBack(dir).msgs, msgs.slice(0, kept), 'in order')

  // The log goes on from there; the .broken files stay out of the way.
  const more = messages(100, 2, () => 50)
  const writer = openWriter(dir, resumeState(log))
  await appendAll(writer, more)
  await writer.close()
  t.same(readBack(dir).msgs, [...msgs.slice(0, kept), ...more])
  t.same(repairLog(dir, 0), [], 'a second repair finds nothing')
})

t.test('repairLog: a healthy log, and a torn tail (left to recovery), are left alone', async (t) => {
  const dir = t.testdir()
  const { segs } = await threeSegments(dir)
  const healthy = snapshot(dir)
  t.same(repairLog(dir, 0), [], 'healthy: nothing to do')
  t.same(snapshot(dir), healthy, 'no file changed')

  const seg3 = segs[2] as SegLoc
  writeFileSync(seg3.path, readFileSync(seg3.path).subarray(0, seg3.size - 3))
  const torn = snapshot(dir)
  t.same(repairLog(dir, 0), [], 'torn tail: nothing to do')
  t.same(snapshot(dir), torn, 'no file changed')
  t.equal(recoverStore(dir, 0, new ShardStore()).log.torn?.offset, (seg3.records.at(-1) as RecordLoc).offset, 'recovery cuts it')
})

t.test('repairLog: a last segment whose header was never written (empty, or a header of zeros) is left to recovery', async (t) => {
  for (const bytes of [0, 32]) {
    const dir = t.testdir()
    const { segs } = await threeSegments(dir)
    const last = segs[2] as SegLoc
    const empty = join(dir, segmentName(last.firstLsn + last.records.length))
    writeFileSync(empty, Buffer.alloc(bytes))
    const before = snapshot(dir)
    t.same(repairLog(dir, 0), [], `${bytes} bytes: nothing to do`)
    t.same(snapshot(dir), before, `${bytes} bytes: no file changed, nothing moved aside`)
    const { log, records } = recoverStore(dir, 0, new ShardStore())
    t.equal(records, segs.reduce((n, s) => n + s.records.length, 0), `${bytes} bytes: recovery keeps every record`)
    t.equal(log.torn?.file, empty, `${bytes} bytes: recovery reports the segment, and its host starts it anew`)
  }
})

t.test('repairLog: damage to the last record of a sealed segment (torn-looking, but not at the end) is cut too', async (t) => {
  const dir = t.testdir()
  const { msgs, segs } = await threeSegments(dir)
  const [, seg2, seg3] = segs as [SegLoc, SegLoc, SegLoc]
  const last = seg2.records.at(-1) as RecordLoc
  flipBit(seg2.path, last.end - 1)
  t.same(repairLog(dir, 0), [
    { file: seg2.path, action: 'truncated', offset: last.offset, brokenCopy: `${seg2.path}.broken`, reason: 'checksum mismatch in a sealed segment' },
    { file: seg3.path, action: 'moved', brokenCopy: `${seg3.path}.broken`, reason: 'follows the cut' },
  ])
  t.same(readBack(dir).msgs, msgs.slice(0, 2 * PER_SEGMENT - 1))
})

t.test('repairLog: a bad header in segment 2 moves it and segment 3 aside', async (t) => {
  const dir = t.testdir()
  const { msgs, segs } = await threeSegments(dir)
  const [, seg2, seg3] = segs as [SegLoc, SegLoc, SegLoc]
  flipBit(seg2.path, 2)
  t.same(repairLog(dir, 0), [
    { file: seg2.path, action: 'moved', brokenCopy: `${seg2.path}.broken`, reason: 'bad magic' },
    { file: seg3.path, action: 'moved', brokenCopy: `${seg3.path}.broken`, reason: 'follows the cut' },
  ])
  t.same(readBack(dir).msgs, msgs.slice(0, PER_SEGMENT))
})

// ---------------------------------------------------------------------------------------------
// The CLI

function repairCli(dataDir: string) {
  const res = spawnSync(process.execPath, ['dist/repair.js', '--data-dir', dataDir], { cwd: ROOT, encoding: 'utf8', env: CHILD_ENV })
  return { status: res.status, stdout: res.stdout, stderr: res.stderr }
}

t.test('node dist/repair.js: repairs the corrupt shard, leaves the healthy one, says what it did', async (t) => {
  if (!needBuild(t)) return
  const dataDir = t.testdir()
  recordShardCount(dataDir, 2)
  mkdirSync(shardDir(dataDir, 0))
  mkdirSync(shardDir(dataDir, 1))
  await writeLog(shardDir(dataDir, 0), messages(0, 5))
  const healthy = snapshot(shardDir(dataDir, 0))
  const { msgs, segs } = await threeSegments(shardDir(dataDir, 1), 1)
  const { seg2, seg3, bad, next, kept } = damageSegment2(segs)
  t.throws(() => recoverStore(shardDir(dataDir, 1), 1, new ShardStore()), { name: 'WalCorruptError' }, 'shard 1 refuses to recover')

  const first = repairCli(dataDir)
  t.equal(first.status, 0, `exit code 0 (stderr: ${first.stderr})`)
  t.equal(first.stderr, '')
  t.same(first.stdout.split('\n'), [
    `shard 1: truncated ${seg2.path} at offset ${bad.offset} (checksum mismatch, followed by a valid record at offset ${next.offset}); the original is kept as ${seg2.path}.broken`,
    `shard 1: moved ${seg3.path} (follows the cut); the original is kept as ${seg3.path}.broken`,
    'repaired; start the server to recover what remains',
    '',
  ])
  t.notOk(existsSync(join(dataDir, LOCK_FILE)), 'the lock is released')
  t.same(snapshot(shardDir(dataDir, 0)), healthy, 'shard 0 untouched')
  const store = new ShardStore()
  t.equal(recoverStore(shardDir(dataDir, 1), 1, store).log.torn, null, 'shard 1 recovers cleanly')
  assertStore(store, msgs.slice(0, kept))

  const second = repairCli(dataDir)
  t.same(second, { status: 0, stdout: `no corruption found in 2 shard logs under ${dataDir}\n`, stderr: '' }, 'a second run finds nothing')
})

t.test('repairLog: a segment a later release wrote is no damage: nothing is cut, even with damage in an earlier segment', async (t) => {
  const dir = t.testdir()
  const { segs } = await threeSegments(dir)
  damageSegment2(segs)
  setFormatVersion((segs[2] as SegLoc).path, 3)
  const before = snapshot(dir)
  t.throws(() => repairLog(dir, 0), { name: 'WalLaterFormatError', message: /written by a later pullchat.*nothing was changed/ })
  t.same(snapshot(dir), before, 'no file changed')
})

t.test('node dist/repair.js: a later release\'s log is left as it is, and said so', async (t) => {
  if (!needBuild(t)) return
  const dataDir = t.testdir()
  recordShardCount(dataDir, 1)
  mkdirSync(shardDir(dataDir, 0))
  await writeLog(shardDir(dataDir, 0), messages(0, 5))
  setFormatVersion(join(shardDir(dataDir, 0), segmentName(1)), 3)
  const before = snapshot(shardDir(dataDir, 0))
  const res = repairCli(dataDir)
  t.equal(res.status, 1, 'exit code 1')
  t.match(res.stderr, /format version 3, written by a later pullchat .*nothing was changed/)
  t.same(snapshot(shardDir(dataDir, 0)), before, 'no file changed')
})

t.test('node dist/repair.js: refuses a directory in use, and one that is not a data directory', async (t) => {
  if (!needBuild(t)) return
  const dataDir = t.testdir()
  recordShardCount(dataDir, 1)
  const holder = liveProcess(t)
  writeFileSync(join(dataDir, LOCK_FILE), JSON.stringify({ pid: holder.pid }))
  t.same(repairCli(dataDir), {
    status: 1,
    stdout: '',
    stderr: `pullchat repair: data directory ${dataDir} is in use by process ${holder.pid} (lock file ${join(dataDir, LOCK_FILE)}); stop that server first\n`,
  })
  const empty = join(dataDir, 'empty')
  mkdirSync(empty)
  const res = repairCli(empty)
  t.equal(res.status, 1)
  t.match(res.stderr, new RegExp(`^pullchat repair: ${empty.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a pullchat data directory \\(`))
})
