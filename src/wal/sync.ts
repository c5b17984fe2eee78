// fsync of a file or a directory by path: for files the log does not hold open, and for
// directories after a segment or the lock is created or deleted (so that the name survives).

import { closeSync, fsyncSync, openSync } from 'node:fs'

function syncPath(path: string, flags: string): void {
  const fd = openSync(path, flags)
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

export const syncFile = (path: string): void => syncPath(path, 'r+')
export const syncDir = (dir: string): void => syncPath(dir, 'r')
