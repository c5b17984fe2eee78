// Process exit codes for environmental stops (documented in README "Exit codes").
// Values follow BSD sysexits.h where one fits.
export const EXIT_FAILURE = 1 // start-up failed: port in use, data directory locked, shard count mismatch
export const EXIT_CONFIG = 2 // bad configuration
export const EXIT_WAL_CORRUPT = 65 // EX_DATAERR: a log is corrupt; run `npm run repair`
export const EXIT_FSYNC_FAILED = 74 // EX_IOERR: fdatasync failed; restart recovers from the log
