// Repairing a corrupt log: cut it at the last good record. The cut-off bytes are not thrown away:
// the damaged segment is copied to `<name>.broken` before it is truncated, and every later
// segment (whose records no longer follow on) is renamed to `<name>.broken`.

import { closeSync, copyFileSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, renameSync } from 'node:fs'
import { LATER_FORMAT, SEGMENT_HEADER_BYTES, decodeHeader } from './format.js'
import { headerNeverWritten, listSegments, scanSegment } from './reader.js'
import { syncDir, syncFile } from './sync.js'

export interface RepairAction {
  readonly file: string
  readonly action: 'truncated' | 'moved'
  /** For `truncated`: the new size. */
  readonly offset?: number
  readonly brokenCopy: string
  readonly reason: string
}

/** A segment that a later pullchat wrote: no damage, and not this release's to cut. */
export class WalLaterFormatError extends Error {
  constructor(file: string, reason: string) {
    super(`${file}: ${reason}; nothing was changed: run the repair of the release that wrote it`)
    this.name = 'WalLaterFormatError'
  }
}

function readHeader(path: string): Buffer {
  const fd = openSync(path, 'r')
  try {
    const buf = Buffer.alloc(SEGMENT_HEADER_BYTES)
    return buf.subarray(0, readSync(fd, buf, 0, SEGMENT_HEADER_BYTES, 0))
  } finally {
    closeSync(fd)
  }
}

function brokenName(path: string): string {
  let name = `${path}.broken`
  for (let i = 1; existsSync(name); i++) name = `${path}.broken.${i}`
  return name
}

/**
 * Repairs one shard's log directory. Returns what it did (nothing for a healthy log). A torn tail,
 * and a last segment whose header was never written, are left for normal recovery, which handles
 * them by itself.
 */
export function repairLog(dir: string, shard: number, check: (payload: Buffer) => string | null = () => null): RepairAction[] {
  const segments = listSegments(dir)
  // Before anything is cut: a segment of a later format anywhere means this release must not
  // touch the log (cutting an earlier segment would move it aside too).
  for (const seg of segments) {
    const header = decodeHeader(readHeader(seg.path))
    if (typeof header === 'string' && header.includes(LATER_FORMAT)) throw new WalLaterFormatError(seg.path, header)
  }
  const actions: RepairAction[] = []
  let expectLsn = 0
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!
    const isLast = i === segments.length - 1
    const buf = readFileSync(seg.path)
    // Left for recovery, like a torn tail: it deletes such a segment and starts it anew.
    if (headerNeverWritten(buf, isLast)) break
    const header = decodeHeader(buf)
    let cutAt = -1
    let reason = ''
    if (typeof header === 'string' || header.shard !== shard || header.firstLsn !== seg.firstLsn || (expectLsn !== 0 && header.firstLsn !== expectLsn)) {
      cutAt = 0
      reason = typeof header === 'string' ? header : 'segment header does not follow on'
    } else {
      let records = 0
      let badAt = -1
      let badWhy = ''
      const scan = scanSegment(buf, isLast, header.version, (payload, offset) => {
        if (badAt !== -1) return
        const why = check(payload)
        if (why === null) records++
        else {
          badAt = offset
          badWhy = why
        }
      })
      expectLsn = header.firstLsn + records
      if (badAt !== -1) {
        cutAt = badAt
        reason = badWhy
      } else if (scan.outcome.kind === 'corrupt') {
        cutAt = scan.outcome.offset
        reason = scan.outcome.reason
      }
    }
    if (cutAt === -1) continue
    const copy = brokenName(seg.path)
    if (cutAt === 0) {
      renameSync(seg.path, copy)
      actions.push({ file: seg.path, action: 'moved', brokenCopy: copy, reason })
    } else {
      copyFileSync(seg.path, copy)
      syncFile(copy)
      const fd = openSync(seg.path, 'r+')
      try {
        ftruncateSync(fd, cutAt)
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      actions.push({ file: seg.path, action: 'truncated', offset: cutAt, brokenCopy: copy, reason })
    }
    for (const later of segments.slice(i + 1)) {
      const laterCopy = brokenName(later.path)
      renameSync(later.path, laterCopy)
      actions.push({ file: later.path, action: 'moved', brokenCopy: laterCopy, reason: 'follows the cut' })
    }
    syncDir(dir)
    break
  }
  return actions
}

