// `npm run repair` (node dist/repair.js [--data-dir DIR]): cuts every shard's corrupt log at its
// last good record, keeping what is cut off as *.broken files. Run it only with the server
// stopped; it takes the data directory's lock. Healthy logs and torn tails are left alone (a
// normal start cuts a torn tail by itself).

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, parseConfig } from './config.js'
import { messageRecordChecker } from './store/index.js'
import { DataDirError, META_FILE, WalLaterFormatError, lockDataDir, repairLog, shardDir } from './wal/index.js'

function main(): number {
  let dataDir: string
  try {
    const { config, help } = parseConfig()
    if (help) {
      process.stdout.write('usage: node dist/repair.js [--data-dir DIR]   (DATA_DIR, default ./data)\n')
      return 0
    }
    dataDir = config.dataDir
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pullchat repair: ${err.message}\n`)
      return 2
    }
    throw err
  }
  let shards: number
  try {
    shards = Number(JSON.parse(readFileSync(join(dataDir, META_FILE), 'utf8')).shards)
  } catch (err) {
    process.stderr.write(`pullchat repair: ${dataDir} is not a pullchat data directory (${(err as Error).message})\n`)
    return 1
  }
  let lock
  try {
    lock = lockDataDir(dataDir)
  } catch (err) {
    if (err instanceof DataDirError) {
      process.stderr.write(`pullchat repair: ${err.message}\n`)
      return 1
    }
    throw err
  }
  try {
    let repaired = 0
    for (let i = 0; i < shards; i++) {
      for (const a of repairLog(shardDir(dataDir, i), i, messageRecordChecker())) {
        repaired++
        const where = a.action === 'truncated' ? ` at offset ${a.offset}` : ''
        process.stdout.write(`shard ${i}: ${a.action} ${a.file}${where} (${a.reason}); the original is kept as ${a.brokenCopy}\n`)
      }
    }
    process.stdout.write(repaired === 0 ? `no corruption found in ${shards} shard logs under ${dataDir}\n` : `repaired; start the server to recover what remains\n`)
    return 0
  } catch (err) {
    if (!(err instanceof WalLaterFormatError)) throw err
    process.stderr.write(`pullchat repair: ${err.message}\n`)
    return 1
  } finally {
    lock.release()
  }
}

process.exitCode = main()
