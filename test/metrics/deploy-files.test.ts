// The deployment files, checked without Docker (there is no engine on the test machines): they
// parse, they agree with one another (service names, ports, mount points, data source uid), the
// Dockerfile follows the rules the image needs, and its HEALTHCHECK command really works.

import { spawnSync, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import t from 'tap'
import { parseDocument } from 'yaml'
import { startServer } from '../helpers/server.js'
import { ROOT, loadDashboard } from './dashboard.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any

function yamlFile(rel: string): Any {
  const doc = parseDocument(readFileSync(`${ROOT}${rel}`, 'utf8'), { uniqueKeys: true, strict: true, prettyErrors: true })
  if (doc.errors.length > 0 || doc.warnings.length > 0) throw new Error(`${rel}: ${[...doc.errors, ...doc.warnings].map((e) => e.message).join('\n')}`)
  return doc.toJS()
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerfile(): { op: string; args: string }[] {
  const lines = readFileSync(`${ROOT}Dockerfile`, 'utf8').split('\n')
  const out: { op: string; args: string }[] = []
  let buf = ''
  for (const raw of lines) {
    const line = raw.trimEnd()
    if (buf === '' && (line.trim() === '' || line.trim().startsWith('#'))) continue
    if (line.endsWith('\\')) {
      buf += line.slice(0, -1) + ' '
      continue
    }
    buf += line
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(buf)
    if (m === null) throw new Error(`cannot read Dockerfile line ${JSON.stringify(buf)}`)
    out.push({ op: (m[1] as string).toUpperCase(), args: (m[2] as string).trim() })
    buf = ''
  }
  return out
}

/** Bind mounts "./host:/container[:ro]" of a compose service. */
function binds(service: Any): Map<string, string> {
  const m = new Map<string, string>()
  for (const v of service.volumes ?? []) {
    const [host, container] = String(v).split(':')
    if (host?.startsWith('./')) m.set(container as string, host)
  }
  return m
}

const compose = yamlFile('docker-compose.yml')
const prom = yamlFile('prometheus/prometheus.yml')
const ds = yamlFile('grafana/provisioning/datasources/prometheus.yml')
const dashProv = yamlFile('grafana/provisioning/dashboards/pullchat.yml')
const docker = dockerfile()

t.test('prometheus.yml: a 5 s scrape of the pullchat service as compose names it', async (t) => {
  t.equal(prom.global.scrape_interval, '5s')
  const jobs = prom.scrape_configs as Any[]
  t.equal(jobs.length, 1)
  const job = jobs[0]
  t.equal(job.job_name, 'pullchat')
  t.equal(job.metrics_path ?? '/metrics', '/metrics')
  t.same(job.static_configs, [{ targets: ['pullchat:8080'] }])
  t.ok(compose.services.pullchat, 'the target host is the compose service name')
  const promtool = spawnSync('promtool', ['check', 'config', `${ROOT}prometheus/prometheus.yml`], { encoding: 'utf8' })
  if (promtool.error === undefined) t.equal(promtool.status, 0, `promtool check config\n${promtool.stdout}${promtool.stderr}`)
  else t.comment('promtool not found: prometheus.test.ts checks the config when it is installed')
})

t.test('docker-compose.yml: services, ports, volumes and mounts agree with the files', async (t) => {
  t.same(Object.keys(compose.services).sort(), ['grafana', 'prometheus', 'pullchat'])
  const app = compose.services.pullchat
  t.equal(app.build, '.', 'pullchat is built from the Dockerfile here')
  t.ok(app.ports.includes('8080:8080'), 'service port published')
  t.ok(app.volumes.includes('pullchat-data:/data'), 'data on a named volume at /data')
  t.ok('pullchat-data' in compose.volumes, 'the named volume is declared')
  t.equal(app.healthcheck, undefined, "the image's HEALTHCHECK applies")
  t.ok(Number.parseInt(app.stop_grace_period, 10) > 10, 'stop grace period above the 10 s drain')

  const p = compose.services.prometheus
  t.match(p.image, /^prom\/prometheus:v\d+\.\d+\.\d+$/, 'a pinned prom/prometheus image')
  t.ok(p.ports.includes('9090:9090'))
  const configFlag = (p.command as string[]).find((c) => c.startsWith('--config.file='))?.split('=')[1]
  t.equal(binds(p).get(configFlag as string), './prometheus/prometheus.yml', 'the shipped config is mounted where --config.file reads it')

  const g = compose.services.grafana
  t.match(g.image, /^grafana\/grafana:\d+\.\d+\.\d+$/, 'a pinned grafana/grafana image')
  t.ok(g.ports.includes('3000:3000'))
  t.same(g.depends_on, ['prometheus'])
  t.equal(g.environment.GF_AUTH_ANONYMOUS_ENABLED, 'true', 'anonymous viewers')
  t.equal(g.environment.GF_AUTH_ANONYMOUS_ORG_ROLE, 'Viewer', 'anonymous users only view')
  const gb = binds(g)
  t.equal(gb.get('/etc/grafana/provisioning'), './grafana/provisioning', 'provisioning mounted where Grafana reads it')
  const dashDir = dashProv.providers[0].options.path as string
  t.equal(gb.get(dashDir), './grafana/dashboards', 'the dashboards directory is mounted where the provider reads')
  t.equal(g.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH, `${dashDir}/pullchat.json`, 'home dashboard is the shipped one')

  for (const s of Object.values(compose.services) as Any[]) {
    for (const host of binds(s).values()) t.ok(existsSync(`${ROOT}${host}`), `${host} exists`)
  }
})

t.test('Grafana provisioning: the data source the dashboard defaults to, at the compose service', async (t) => {
  t.equal(ds.apiVersion, 1)
  const [source] = ds.datasources as Any[]
  t.equal(source.uid, 'prometheus')
  t.equal(source.type, 'prometheus')
  t.equal(source.url, 'http://prometheus:9090', 'compose service name and port')
  t.ok(compose.services.prometheus.ports.includes('9090:9090'))
  t.equal(source.jsonData.timeInterval, prom.global.scrape_interval, 'timeInterval is the scrape interval')
  t.equal(loadDashboard().templating.list.find((v) => v.name === 'DS_PROMETHEUS')?.current?.value, source.uid, 'the dashboard defaults to it')
  t.equal(dashProv.apiVersion, 1)
  t.equal(dashProv.providers.length, 1)
  t.equal(dashProv.providers[0].type, 'file')
})

t.test('Dockerfile: multi-stage bookworm build, non-root, /data volume, health check, exec-form CMD', async (t) => {
  const froms = docker.filter((i) => i.op === 'FROM').map((i) => i.args)
  t.same(froms, ['node:20-bookworm-slim AS build', 'node:20-bookworm-slim'], 'two stages on node 20 bookworm-slim (glibc for uWS)')
  const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8'))
  t.equal(pkg.engines.node, '>=20 <21', 'the image node major matches package.json engines')
  const runs = docker.filter((i) => i.op === 'RUN').map((i) => i.args)
  t.ok(runs.some((r) => /\bnpm ci\b/.test(r)), 'npm ci')
  t.ok(runs.some((r) => /npm run build/.test(r) && /npm prune --omit=dev/.test(r)), 'build, then prune dev dependencies')
  const runtime = docker.slice(docker.findLastIndex((i) => i.op === 'FROM'))
  const copies = runtime.filter((i) => i.op === 'COPY').map((i) => i.args)
  for (const what of ['dist', 'node_modules', 'package.json']) t.ok(copies.some((c) => c.startsWith('--from=build') && c.includes(`/${what}`)), `runtime copies ${what} from the build stage`)
  t.match(runtime.find((i) => i.op === 'ENV')?.args ?? '', /DATA_DIR=\/data/)
  t.match(runtime.find((i) => i.op === 'WORKDIR')?.args ?? '', /^\/app$/)
  const user = runtime.filter((i) => i.op === 'USER').at(-1)?.args
  t.ok(user !== undefined && user !== 'root' && user !== '0', `runs as ${user}, not root`)
  const volumeAt = runtime.findIndex((i) => i.op === 'VOLUME')
  t.same(JSON.parse(runtime[volumeAt]?.args ?? 'null'), ['/data'])
  const chownAt = runtime.findIndex((i) => i.op === 'RUN' && new RegExp(`chown ${user}(:${user})? /data`).test(i.args))
  t.ok(chownAt >= 0 && chownAt < volumeAt, '/data is chowned to the user before VOLUME (later changes would be lost)')
  t.equal(runtime.find((i) => i.op === 'EXPOSE')?.args, '8080')
  t.equal(runtime.find((i) => i.op === 'STOPSIGNAL')?.args, 'SIGTERM')
  const cmd = JSON.parse(runtime.find((i) => i.op === 'CMD')?.args ?? 'null') as string[]
  t.same([cmd[0], cmd.at(-1)], ['node', 'dist/cluster.js'], 'exec-form CMD: node is PID 1 and gets SIGTERM')
  t.ok(pkg.scripts.start.endsWith(` && ${cmd.join(' ')}`), `the same command as npm start (${pkg.scripts.start}), node flags included`)
})

t.test('.dockerignore: keeps the build inputs, drops local state', async (t) => {
  const rules = readFileSync(`${ROOT}.dockerignore`, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  for (const must of ['node_modules', 'dist', 'data', '.git', '.tap']) t.ok(rules.includes(must), `${must} is ignored`)
  const copied = docker.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).flatMap((i) => i.args.split(/\s+/).slice(0, -1))
  t.ok(copied.length >= 3, `build inputs: ${copied.join(' ')}`)
  for (const src of copied) {
    t.notOk(rules.some((r) => r === src || r === `${src}/` || src.startsWith(`${r}/`) || r === '*'), `${src} is not ignored`)
    t.ok(existsSync(`${ROOT}${src}`), `${src} exists`)
  }
})

t.test("the HEALTHCHECK command reports a live server healthy, and a dead or failing one not", async (t) => {
  const hc = docker.find((i) => i.op === 'HEALTHCHECK')
  t.ok(hc !== undefined, 'there is a HEALTHCHECK')
  const m = /^(.*?)\bCMD\s+(\[.*\])$/.exec(hc?.args ?? '')
  t.ok(m !== null, 'HEALTHCHECK ... CMD [exec form]')
  const opts = m?.[1] ?? ''
  t.match(opts, /--interval=\d+s/)
  const timeoutS = Number(/--timeout=(\d+)s/.exec(opts)?.[1])
  t.ok(timeoutS > 0, `--timeout=${timeoutS}s`)
  t.match(opts, /--start-period=\d+s/)
  const argv = JSON.parse(m?.[2] ?? '[]') as string[]
  t.equal(argv[0], 'node', 'node itself (no curl in the slim image)')
  const run = (port: number): Promise<number | null> =>
    new Promise((resolve) => {
      // Run from the repository root: its package.json says "type": "module", as the image's does.
      const p = spawn(process.execPath, argv.slice(1), { cwd: ROOT, env: { ...process.env, PORT: String(port) }, stdio: 'ignore' })
      const timer = setTimeout(() => p.kill('SIGKILL'), 10_000)
      p.on('exit', (code) => {
        clearTimeout(timer)
        resolve(code)
      })
    })
  const { port } = await startServer(t, { shards: 1, threads: 1 })
  t.equal(await run(port), 0, 'healthy: GET /ping answered 200')

  const free = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port
      s.close(() => resolve(p))
    })
  })
  t.equal(await run(free), 1, 'unhealthy: nothing listening')

  const failing = http.createServer((_req, res) => res.writeHead(503).end('{}'))
  await new Promise<void>((r) => failing.listen(0, '127.0.0.1', r))
  t.teardown(() => failing.close())
  t.equal(await run((failing.address() as net.AddressInfo).port), 1, 'unhealthy: /ping answered 503')

  const hung = http.createServer(() => {}) // accepts, never answers
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    hung.closeAllConnections()
    hung.close()
  })
  const started = Date.now()
  t.equal(await run((hung.address() as net.AddressInfo).port), 1, 'unhealthy: /ping never answered')
  t.ok(Date.now() - started < timeoutS * 1000, `gives up on its own within the HEALTHCHECK --timeout (${Date.now() - started} ms)`)
})
