// @ts-check
// What a page of new memory costs on this machine, and what it does to the log's fdatasyncs: the
// two costs that STORE_PREFAULT_BYTES moves to start-up (README "Memory").
//
// 1. First writes: a fresh buffer of PAGES_MB written one byte per 4 KiB page, against the same
//    pages written again (already in memory): ns per page, and the page faults counted.
// 2. fdatasync of 8 KiB appends on one thread for FAULT_SECONDS, alone, then while another thread writes
//    fresh memory page by page (in 1 MiB chunks it keeps): each call's median and 90th percentile.
// On the reference machine (a 2-core virtual machine whose host takes freed memory back) a first
// write cost 1.6 to ~10 µs a page, depending on what had been freed before, and the fdatasyncs'
// median was x0.88-1.34 of theirs alone (docs/performance.md, twentieth session); on bare metal a
// fault is typically well under a microsecond.
//
//   node bench/faults.mjs     (PAGES_MB=256 FAULT_SECONDS=3; writes a scratch file in the OS's temp dir)

import { mkdtempSync, openSync, closeSync, writeSync, fdatasyncSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'

const pagesMb = Number(process.env.PAGES_MB ?? 256)
const seconds = Number(process.env.FAULT_SECONDS ?? 3)
const PAGE = 4096

const faults = () => process.resourceUsage().minorPageFault

function firstWrites() {
  const buf = Buffer.allocUnsafeSlow(pagesMb * 2 ** 20)
  const pages = buf.length / PAGE
  const pass = (/** @type {number} */ v) => {
    const f0 = faults()
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < buf.length; i += PAGE) buf[i] = v
    const ns = Number(process.hrtime.bigint() - t0)
    return { nsPerPage: Math.round(ns / pages), faultsPerPage: +((faults() - f0) / pages).toFixed(2) }
  }
  const first = pass(1)
  const again = pass(2)
  console.log(`first writes to ${pagesMb} MiB of new memory: ${first.nsPerPage} ns a page (${first.faultsPerPage} faults a page); written again: ${again.nsPerPage} ns a page (${again.faultsPerPage})`)
  return { pagesMb, first, again }
}

/** fdatasyncs for `seconds`, with another thread writing new memory page by page when `faulting`. */
async function syncs(/** @type {boolean} */ faulting) {
  const dir = mkdtempSync(join(tmpdir(), 'pullchat-faults-'))
  const fd = openSync(join(dir, 'log'), 'w')
  const block = Buffer.alloc(8192, 1)
  const worker = faulting
    ? new Worker(
        `const { parentPort } = require('node:worker_threads')
        const kept = []
        let stop = false
        parentPort.on('message', () => { stop = true })
        const step = () => {
          for (let k = 0; k < 8 && !stop; k++) {
            const b = Buffer.allocUnsafeSlow(1 << 20)
            for (let i = 0; i < b.length; i += 4096) b[i] = 1
            kept.push(b)
          }
          if (stop) parentPort.postMessage(kept.length)
          else setImmediate(step)
        }
        step()`,
        { eval: true },
      )
    : null
  const done = worker === null ? null : new Promise((resolve) => worker.once('message', resolve))
  /** @type {number[]} */
  const us = []
  const end = Date.now() + seconds * 1000
  while (Date.now() < end) {
    const t0 = process.hrtime.bigint()
    writeSync(fd, block)
    fdatasyncSync(fd)
    us.push(Number(process.hrtime.bigint() - t0) / 1000)
    // Let the worker's messages through now and then (it runs on its own regardless).
    if (us.length % 256 === 0) await new Promise((r) => setImmediate(r))
  }
  worker?.postMessage('stop')
  const mib = done === null ? 0 : Number(await done)
  await worker?.terminate()
  closeSync(fd)
  rmSync(dir, { recursive: true, force: true })
  us.sort((a, b) => a - b)
  const at = (/** @type {number} */ q) => Math.round(us[Math.min(us.length - 1, Math.floor(q * us.length))] ?? NaN)
  const r = { calls: us.length, p50us: at(0.5), p90us: at(0.9), faultedMib: mib }
  console.log(`fdatasync of 8 KiB appends, ${faulting ? `while another thread wrote ${mib} MiB of new memory` : 'alone'}: ${r.calls} calls, median ${r.p50us} µs, p90 ${r.p90us} µs`)
  return r
}

const result = { firstWrites: firstWrites(), alone: await syncs(false), faulting: await syncs(true) }
console.log(`fdatasync's median while faulting over alone: x${(result.faulting.p50us / result.alone.p50us).toFixed(2)}`)
console.log(JSON.stringify(result))
