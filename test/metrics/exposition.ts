// A strict parser for the Prometheus text exposition format (version 0.0.4), for tests: it throws
// on anything Prometheus would reject, and on the things it accepts but that are still wrong
// (a family split in two, a series twice, a histogram whose buckets are not cumulative).

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped'

export interface Sample {
  /** The sample's own name (for a histogram: name_bucket, name_sum or name_count). */
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
  readonly line: number
}

export interface Family {
  readonly name: string
  type: MetricType
  help: string | null
  readonly samples: Sample[]
}

export interface Exposition {
  readonly families: ReadonlyMap<string, Family>
  readonly samples: readonly Sample[]
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/
const FLOAT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/
const TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped']

export class ExpositionError extends Error {
  constructor(line: number, text: string, why: string) {
    super(`line ${line}: ${why}: ${JSON.stringify(text)}`)
    this.name = 'ExpositionError'
  }
}

/**
 * A sample value as Prometheus parses it (Go's strconv.ParseFloat): decimal floats, and NaN,
 * Inf, Infinity in any case with an optional sign (prom-client writes NaN as "Nan").
 */
export function parseFloatStrict(s: string): number {
  const special = /^([+-]?)(nan|inf|infinity)$/i.exec(s)
  if (special !== null) {
    if ((special[2] as string).toLowerCase() === 'nan') return NaN
    return special[1] === '-' ? -Infinity : Infinity
  }
  if (!FLOAT.test(s)) throw new Error(`not a float: ${JSON.stringify(s)}`)
  return Number(s)
}

function unescapeHelp(s: string): string {
  return s.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === '\\' ? '\\' : `\\${c}`))
}

/** The family a sample name belongs to, given the families declared so far. */
function familyOf(name: string, declared: ReadonlyMap<string, Family>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue
    const base = name.slice(0, -suffix.length)
    const f = declared.get(base)
    if (f !== undefined && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return base
  }
  return name
}

function parseLabels(text: string, at: number, line: number, raw: string): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {}
  let i = at + 1 // after '{'
  for (;;) {
    if (text[i] === '}') return { labels, end: i + 1 }
    const m = LABEL_NAME.exec(text.slice(i))
    if (m === null) throw new ExpositionError(line, raw, `bad label name at column ${i + 1}`)
    const name = m[0]
    i += name.length
    if (text[i] !== '=' || text[i + 1] !== '"') throw new ExpositionError(line, raw, `expected ="..." after label ${name}`)
    i += 2
    let value = ''
    for (;;) {
      const c = text[i]
      if (c === undefined) throw new ExpositionError(line, raw, `unterminated value of label ${name}`)
      if (c === '"') break
      if (c === '\\') {
        const e = text[i + 1]
        if (e === '\\') value += '\\'
        else if (e === '"') value += '"'
        else if (e === 'n') value += '\n'
        else throw new ExpositionError(line, raw, `bad escape \\${e ?? ''} in label ${name}`)
        i += 2
        continue
      }
      if (c === '\n') throw new ExpositionError(line, raw, `raw newline in label ${name}`)
      value += c
      i++
    }
    i++ // closing quote
    if (Object.hasOwn(labels, name)) throw new ExpositionError(line, raw, `label ${name} twice`)
    if (name.startsWith('__')) throw new ExpositionError(line, raw, `reserved label name ${name}`)
    labels[name] = value
    if (text[i] === ',') i++
    else if (text[i] !== '}') throw new ExpositionError(line, raw, `expected ',' or '}' after label ${name}`)
  }
}

export function parseExposition(text: string): Exposition {
  if (text !== '' && !text.endsWith('\n')) throw new Error('the exposition must end with a newline')
  const families = new Map<string, Family>()
  const samples: Sample[] = []
  const seriesSeen = new Set<string>()
  const typed = new Set<string>()
  const closed = new Set<string>() // families whose samples ended: they may not come back
  let current: string | null = null
  const enter = (name: string, line: number, raw: string): Family => {
    if (current !== name) {
      if (closed.has(name)) throw new ExpositionError(line, raw, `metric family ${name} is split (its lines are not contiguous)`)
      if (current !== null) closed.add(current)
      current = name
    }
    let f = families.get(name)
    if (f === undefined) families.set(name, (f = { name, type: 'untyped', help: null, samples: [] }))
    return f
  }
  const lines = text.split('\n')
  lines.pop() // after the final newline
  lines.forEach((raw, idx) => {
    const line = idx + 1
    if (raw.trim() === '') return
    if (raw.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+([^ \t]+)(?:[ \t]+(.*))?$/.exec(raw)
      if (m === null) return // a plain comment
      const [, kind, name, rest] = m as unknown as [string, 'HELP' | 'TYPE', string, string | undefined]
      if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new ExpositionError(line, raw, `bad metric name ${name}`)
      const f = enter(name, line, raw)
      if (kind === 'HELP') {
        if (f.help !== null) throw new ExpositionError(line, raw, `second HELP for ${name}`)
        f.help = unescapeHelp(rest ?? '')
      } else {
        const type = (rest ?? '').trim() as MetricType
        if (!TYPES.includes(type)) throw new ExpositionError(line, raw, `unknown type ${JSON.stringify(rest)}`)
        if (f.samples.length > 0) throw new ExpositionError(line, raw, `TYPE for ${name} after its samples`)
        if (typed.has(name)) throw new ExpositionError(line, raw, `second TYPE for ${name}`)
        typed.add(name)
        f.type = type
      }
      return
    }
    const nm = METRIC_NAME.exec(raw)
    if (nm === null) throw new ExpositionError(line, raw, 'expected a metric name')
    const name = nm[0]
    let i = name.length
    let labels: Record<string, string> = {}
    if (raw[i] === '{') ({ labels, end: i } = parseLabels(raw, i, line, raw))
    const rest = raw.slice(i)
    const vm = /^[ \t]+([^ \t]+)(?:[ \t]+(-?\d+))?[ \t]*$/.exec(rest)
    if (vm === null) throw new ExpositionError(line, raw, 'expected a value (and an optional integer timestamp)')
    let value: number
    try {
      value = parseFloatStrict(vm[1] as string)
    } catch {
      throw new ExpositionError(line, raw, `bad value ${vm[1]}`)
    }
    const fname = familyOf(name, families)
    const f = enter(fname, line, raw)
    if (f.type === 'histogram' && name === fname) throw new ExpositionError(line, raw, `histogram ${fname} has a bare sample`)
    if (f.type === 'histogram' && name.endsWith('_bucket') && labels.le === undefined) throw new ExpositionError(line, raw, 'bucket without le')
    const key = name + JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))
    if (seriesSeen.has(key)) throw new ExpositionError(line, raw, 'the same series twice')
    seriesSeen.add(key)
    const s: Sample = { name, labels, value, line }
    f.samples.push(s)
    samples.push(s)
  })
  for (const f of families.values()) {
    if (f.type === 'counter') for (const s of f.samples) if (!(s.value >= 0)) throw new Error(`counter ${s.name} is ${s.value} (line ${s.line})`)
    if (f.type === 'histogram') checkHistogram(f)
  }
  return { families, samples }
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: { le: number; v: number }[]; count?: number; sum?: number }>()
  for (const s of f.samples) {
    const { le, ...rest } = s.labels
    const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1)))
    let g = groups.get(key)
    if (g === undefined) groups.set(key, (g = { buckets: [] }))
    if (s.name === `${f.name}_bucket`) g.buckets.push({ le: parseFloatStrict(le as string), v: s.value })
    else if (s.name === `${f.name}_count`) g.count = s.value
    else if (s.name === `${f.name}_sum`) g.sum = s.value
  }
  for (const [key, g] of groups) {
    const where = `histogram ${f.name}${key}`
    if (g.count === undefined || g.sum === undefined) throw new Error(`${where} lacks _count or _sum`)
    const last = g.buckets.at(-1)
    if (last === undefined || last.le !== Infinity) throw new Error(`${where} does not end with le="+Inf"`)
    for (let i = 1; i < g.buckets.length; i++) {
      const a = g.buckets[i - 1] as { le: number; v: number }
      const b = g.buckets[i] as { le: number; v: number }
      if (!(b.le > a.le)) throw new Error(`${where}: le ${b.le} after ${a.le}`)
      if (b.v < a.v) throw new Error(`${where}: bucket le=${b.le} (${b.v}) < le=${a.le} (${a.v}): not cumulative`)
    }
    if (last.v !== g.count) throw new Error(`${where}: +Inf bucket ${last.v} != _count ${g.count}`)
  }
}

/** Sum of the samples named `name` whose labels include `match`. */
export function sumOf(e: Exposition, name: string, match: Readonly<Record<string, string>> = {}): number {
  let total = 0
  for (const s of e.samples) {
    if (s.name !== name) continue
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value
  }
  return total
}

/** Samples named `name` whose labels include `match`. */
export function samplesOf(e: Exposition, name: string, match: Readonly<Record<string, string>> = {}): Sample[] {
  return e.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
}
