import t from 'tap'
import { ConfigError, DEFAULTS, helpText, parseConfig } from '../src/config.js'

t.test('defaults when nothing is given', async (t) => {
  const { config, help } = parseConfig([], {})
  t.same(config, DEFAULTS)
  t.equal(help, false)
  t.ok(Object.isFrozen(config))
})

t.test('env vars, then flags, later wins', async (t) => {
  const { config } = parseConfig(['--port', '9000', '--shards=4'], { PORT: '7000', HTTP_THREADS: '3', LOG_LEVEL: 'WARN' })
  t.equal(config.port, 9000)
  t.equal(config.shards, 4)
  t.equal(config.httpThreads, 3)
  t.equal(config.logLevel, 'warn')
})

t.test('bad values name the option', async (t) => {
  t.throws(() => parseConfig(['--port', 'x'], {}), new ConfigError('--port must be an integer, got "x"'))
  t.throws(() => parseConfig([], { SHARDS: '0' }), new ConfigError('SHARDS must be between 1 and 256, got 0'))
  t.throws(() => parseConfig(['--nope'], {}), new ConfigError('unknown option --nope (see --help)'))
  t.throws(() => parseConfig(['--port'], {}), new ConfigError('--port needs a value'))
  t.throws(() => parseConfig(['stray'], {}), new ConfigError('unexpected argument "stray" (see --help)'))
  t.throws(() => parseConfig([], { LOG_LEVEL: 'loud' }), /LOG_LEVEL must be one of/)
  t.throws(() => parseConfig([], { PULL_LIMIT_DEFAULT: '50', PULL_LIMIT_MAX: '20' }), /must not exceed/)
})

t.test('--help is reported and documents every env var', async (t) => {
  t.equal(parseConfig(['--help'], {}).help, true)
  const text = helpText()
  for (const env of ['PORT', 'HOST', 'DATA_DIR', 'SHARDS', 'HTTP_THREADS', 'BODY_BYTES_MAX', 'LOG_LEVEL']) t.match(text, env)
})
