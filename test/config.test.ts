import t from 'tap'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { ConfigError, DEFAULTS, autoShards, autoThreads, helpText, parseConfig, settleCounts } from '../src/config.js'

t.test('defaults when nothing is given', async (t) => {
  const { config, help } = parseConfig([], {})
  t.same(config, DEFAULTS)
  t.equal(config.shards, 0, 'auto: settled against the data directory at start (settleCounts)')
  t.equal(config.threads, 0, 'auto: settled with the shards')
  t.equal(help, false)
  t.ok(Object.isFrozen(config))
})

t.test('env vars, then flags, later wins', async (t) => {
  const { config } = parseConfig(['--port', '9000', '--shards=4'], { PORT: '7000', THREADS: '3', LOG_LEVEL: 'WARN' })
  t.equal(config.port, 9000)
  t.equal(config.shards, 4)
  t.equal(config.threads, 3)
  t.equal(config.logLevel, 'warn')
  t.equal(parseConfig(['--store-prefault-bytes', '1048576'], {}).config.storePrefaultBytes, 1 << 20)
  t.equal(parseConfig([], { STORE_PREFAULT_BYTES: '0' }).config.storePrefaultBytes, 0)
})

t.test('bad values name the option', async (t) => {
  t.throws(() => parseConfig(['--port', 'x'], {}), new ConfigError('--port must be an integer, got "x"'))
  t.throws(() => parseConfig([], { SHARDS: '257' }), new ConfigError('SHARDS must be between 0 and 256, got 257'))
  t.throws(() => parseConfig(['--nope'], {}), new ConfigError('unknown option --nope (see --help)'))
  t.throws(() => parseConfig(['--port'], {}), new ConfigError('--port needs a value'))
  t.throws(() => parseConfig(['stray'], {}), new ConfigError('unexpected argument "stray" (see --help)'))
  t.throws(() => parseConfig([], { LOG_LEVEL: 'loud' }), /LOG_LEVEL must be one of/)
  t.throws(() => parseConfig([], { STORE_PREFAULT_BYTES: '9999999999999' }), /STORE_PREFAULT_BYTES must be between 0 and 1099511627776/)
  t.throws(() => parseConfig([], { PULL_LIMIT_DEFAULT: '50', PULL_LIMIT_MAX: '20' }), /must not exceed/)
})

t.test('THREADS: auto is one per core but one, at least one, at most one per shard; explicit wins', async (t) => {
  t.equal(autoThreads(2, 1), 1)
  t.equal(autoThreads(2, 2), 1)
  t.equal(autoThreads(2, 3), 2)
  t.equal(autoThreads(2, 16), 2)
  t.equal(autoThreads(8, 4), 3)
  t.equal(settleCounts(parseConfig([], { SHARDS: '8', THREADS: '0' }).config, null).threads, autoThreads(8))
  t.equal(settleCounts(parseConfig(['--threads', '5'], { SHARDS: '2' }).config, null).threads, 5, 'more workers than shards: some only serve HTTP')
  t.equal(settleCounts(parseConfig([], {}, { threads: 2 }).config, 3).threads, 2)
})

t.test('SHARDS: auto is the data directory\'s count, or one per auto worker for a new one; explicit must match', async (t) => {
  t.equal(autoShards(1), 1)
  t.equal(autoShards(2), 1, 'one worker on two cores: one shard, one log')
  t.equal(autoShards(3), 2)
  t.equal(autoShards(16), 15)
  const auto = parseConfig([], {}, { dataDir: '/d' }).config
  t.same(settleCounts(auto, null), { ...auto, shards: autoShards(), threads: autoThreads(autoShards()) }, 'a new directory')
  t.equal(autoThreads(autoShards()), Math.max(1, availableParallelism() - 1), 'one worker per shard')
  t.same(settleCounts(auto, 2), { ...auto, shards: 2, threads: autoThreads(2) }, 'an existing directory keeps its count')
  t.equal(settleCounts(parseConfig([], { SHARDS: '3' }).config, null).shards, 3, 'a new directory takes an explicit count')
  t.equal(settleCounts(parseConfig([], { SHARDS: '3' }).config, 3).shards, 3, 'the same count passes')
  t.throws(
    () => settleCounts(parseConfig([], { SHARDS: '2' }, { dataDir: '/d' }).config, 4),
    new ConfigError(
      'data directory /d holds 4 shards but the server was started with SHARDS=2; ' +
        'chats are placed by hash mod shard count, so start with --shards 4 or without --shards (changing it needs a migration)',
    ),
  )
  t.ok(Object.isFrozen(settleCounts(auto, null)))
})

t.test('a removed option says what replaced it', async (t) => {
  const why = 'every worker thread now serves HTTP and hosts shards: use THREADS (--threads)'
  t.throws(() => parseConfig([], { HTTP_THREADS: '2' }), new ConfigError(`HTTP_THREADS is no longer an option: ${why}`))
  t.throws(() => parseConfig(['--http-threads', '2'], {}), new ConfigError(`--http-threads is no longer an option: ${why}`))
})

t.test('--help is reported and documents every env var', async (t) => {
  t.equal(parseConfig(['--help'], {}).help, true)
  const text = helpText()
  for (const env of ['PORT', 'HOST', 'DATA_DIR', 'SHARDS', 'THREADS', 'BODY_BYTES_MAX', 'LOG_LEVEL']) t.match(text, env)
  t.match(text, /--threads\s+THREADS\s+auto /)
  t.match(text, /--shards\s+SHARDS\s+auto /)
})

t.test("the README's configuration table is --help's list, row for row", async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const unescape = (cell: string): string => cell.replace(/\\\|/g, '|').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/^`|`$/g, '')
  const table = readme
    .split('\n')
    .filter((line) => line.startsWith('| `--'))
    .map((line) => line.slice(2, -2).split(/ (?<!\\)\| /).map((cell) => unescape(cell.trim())))
  const options = helpText()
    .split('\n')
    .filter((line) => line.startsWith('  --') && !line.startsWith('  --help'))
    .map((line) => {
      const m = /^ {2}(--\S+)\s+(\S+)\s+(\S+)\s+(.*)$/.exec(line)
      if (m === null) throw new Error(`unexpected --help line: ${line}`)
      return [m[1], m[2], m[3], m[4]]
    })
  t.ok(options.length >= 20, `--help lists the options (${options.length})`)
  t.same(table, options)
})
