// One JSON object per line on stdout: {time, level, service, msg, ...fields}.

export type LogLevel = "debug" | "info" | "warn" | "error"
export type LogFields = Record<string, unknown>

export interface Logger {
  debug(msg: string, fields?: LogFields): void
  info(msg: string, fields?: LogFields): void
  warn(msg: string, fields?: LogFields): void
  error(msg: string, fields?: LogFields): void
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export function createLogger(service: string, level: LogLevel = "info"): Logger {
  const write = (at: LogLevel, msg: string, fields?: LogFields) => {
    if (rank[at] < rank[level]) return
    const line = { time: new Date().toISOString(), level: at, service, msg, ...serializeErrors(fields) }
    process.stdout.write(`${JSON.stringify(line)}\n`)
  }
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
  }
}

// Error objects stringify to {} in JSON; keep their message (and stack for the unexpected ones).
function serializeErrors(fields: LogFields | undefined): LogFields | undefined {
  if (!fields) return fields
  const out: LogFields = {}
  for (const [key, value] of Object.entries(fields)) {
    out[key] =
      value instanceof Error ? { name: value.name, message: value.message, stack: value.stack } : value
  }
  return out
}
