// Reads the shipped Grafana dashboard and the PromQL in it.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const DASHBOARD_PATH = `${ROOT}grafana/dashboards/pullchat.json`

export interface Target {
  readonly refId: string
  readonly expr: string
  readonly legendFormat?: string
  readonly datasource?: { readonly type: string; readonly uid: string }
}

export interface Panel {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number }
  readonly datasource?: { readonly type: string; readonly uid: string }
  readonly targets?: readonly Target[]
  readonly panels?: readonly Panel[]
  readonly collapsed?: boolean
}

export interface Dashboard {
  readonly uid: string
  readonly title: string
  readonly schemaVersion: number
  readonly panels: readonly Panel[]
  readonly templating: { readonly list: readonly { name: string; type: string; query?: string; current?: { value?: string } }[] }
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard
}

/** Every panel, those inside collapsed rows included, in order. */
export function allPanels(d: Dashboard): Panel[] {
  const out: Panel[] = []
  const walk = (ps: readonly Panel[]): void => {
    for (const p of ps) {
      out.push(p)
      if (p.panels !== undefined) walk(p.panels)
    }
  }
  walk(d.panels)
  return out
}

export interface Query {
  readonly panel: string
  readonly refId: string
  readonly expr: string
}

/** Every PromQL expression of every panel's targets. */
export function allQueries(d: Dashboard): Query[] {
  return allPanels(d).flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, refId: t.refId, expr: t.expr })))
}

/** The metric names an expression reads (pullchat_ prefixed identifiers that are not functions). */
export function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\bpullchat_[a-zA-Z0-9_:]*/g)].map((m) => m[0]))]
}
