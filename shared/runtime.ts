// What differs between Bun and Deno, in one place: serving a fetch handler, SQLite, reading a file into a
// Response, and starting another program under the same runtime. Everything else in services/ and shared/ is Web-standard or a node: module that both runtimes
// implement (node:crypto, node:timers/promises, node:fs), or an npm package that works in both (uuid).
import type { Database as BunDatabase } from "bun:sqlite"
import { spawn } from "node:child_process"
import type { DatabaseSync } from "node:sqlite"

/** The little of Deno's global that this module uses (Deno's own types are not part of the tsc build). */
interface DenoRuntime {
  serve(
    options: { port: number; hostname: string; onListen(): void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> }
  open(path: string): Promise<{ readable: ReadableStream<Uint8Array> }>
}
const Deno = (globalThis as { Deno?: DenoRuntime }).Deno
const isBun = "Bun" in globalThis

// ---- Serving ---------------------------------------------------------------------------------------------

export interface ServeOptions {
  port: number
  hostname: string
  fetch: (request: Request) => Response | Promise<Response>
}

export interface Server {
  /** The port bound: the one asked for, or the one the system chose for port 0. */
  port: number
  /** Stop taking connections, let the requests in flight finish, then close. */
  stop(): Promise<void>
}

export function serve(options: ServeOptions): Server {
  if (isBun) {
    const server = Bun.serve({
      port: options.port,
      hostname: options.hostname,
      fetch: options.fetch,
      // Bun's own default is a bare 413 past 128 MiB; none here, as under Deno, so that the app's own limit
      // (shared/http.ts) answers every oversized body with its problem+json.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    })
    return { port: server.port ?? options.port, stop: () => server.stop(false) }
  }
  // onListen replaces Deno's "Listening on …" line, which is not a JSON log line.
  const server = requireDeno().serve(
    { port: options.port, hostname: options.hostname, onListen() {} },
    options.fetch,
  )
  return { port: server.addr.port, stop: () => server.shutdown() }
}

function requireDeno(): DenoRuntime {
  if (!Deno) throw new Error("neither Bun nor Deno: the services run on one of the two")
  return Deno
}

// ---- Processes -------------------------------------------------------------------------------------------

export interface ChildProcess {
  pid: number
  /** Resolves once it has exited: its exit code, or the signal that ended it. */
  exited: Promise<{ code: number | null; signal: string | null }>
  kill(signal: "SIGTERM" | "SIGKILL"): void
}

/**
 * Run `script` under this process's runtime (node:child_process, which both implement): Bun takes the script
 * alone, Deno `run` with `denoFlags`, its permissions. Its output goes to this process's own, line for line.
 */
export function spawnScript(
  script: string,
  options: { env: Record<string, string | undefined>; denoFlags: string[] },
): ChildProcess {
  const args = isBun ? [script] : ["run", ...options.denoFlags, script]
  const child = spawn(process.execPath, args, { env: options.env, stdio: ["ignore", "inherit", "inherit"] })
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }))
    // A program that cannot start (no such executable) never exits: it ends here instead.
    child.once("error", () => resolve({ code: null, signal: null }))
  })
  return {
    pid: child.pid ?? 0,
    exited,
    kill: (signal) => void child.kill(signal),
  }
}

// ---- Files -----------------------------------------------------------------------------------------------

/** The file at `path` streamed as a response body, never read whole into memory. */
export async function fileResponse(path: string, init: ResponseInit): Promise<Response> {
  if (isBun) return new Response(Bun.file(path), init)
  const file = await requireDeno().open(path)
  return new Response(file.readable, init)
}

// ---- SQLite ----------------------------------------------------------------------------------------------

/** What a statement's parameters may be: positional values, or one object of named ones. */
export type SqlValue = string | number | bigint | boolean | null | Uint8Array
export type SqlParams = SqlValue[] | Record<string, SqlValue>

/** A prepared statement, as bun:sqlite shapes it: `get` answers null when no row matches. */
export interface Statement<Row, Params extends unknown[]> {
  get(...params: Params): Row | null
  all(...params: Params): Row[]
  run(...params: Params): { changes: number }
}

/** The SQLite database the status store uses: bun:sqlite under Bun, node:sqlite under Deno. */
export interface SqliteDatabase {
  /** One or more statements without parameters (schema, migrations, pragmas). */
  exec(sql: string): void
  /** A prepared statement; `Params` is a tuple of positional values or one object of named ones. */
  query<Row, Params extends SqlParams | SqlValue[]>(
    sql: string,
  ): Statement<Row, Params extends unknown[] ? Params : [Params]>
  /** `fn` wrapped in BEGIN … COMMIT, rolled back if it throws. */
  transaction<Args extends unknown[], Result>(fn: (...args: Args) => Result): (...args: Args) => Result
  close(): void
}

/** Open (creating it if needed) the database at `path`, or `:memory:`. */
export function openSqlite(path: string): SqliteDatabase {
  return isBun ? openBunSqlite(path) : openNodeSqlite(path)
}

// Loaded on first use, and synchronously: only the status store pays for SQLite, and opening stays synchronous.
function openBunSqlite(path: string): SqliteDatabase {
  const { Database } = process.getBuiltinModule("bun:sqlite" as "node:sqlite") as unknown as {
    Database: typeof BunDatabase
  }
  // strict: named parameters bind without their `$` and a missing one is an error, as node:sqlite does.
  const db = new Database(path, { create: true, strict: true })
  return {
    exec: (sql) => void db.run(sql),
    query: (sql) => db.query(sql) as never,
    transaction: (fn) => db.transaction(fn),
    close: () => db.close(),
  }
}

function openNodeSqlite(path: string): SqliteDatabase {
  const { DatabaseSync: Database } = process.getBuiltinModule("node:sqlite") as {
    DatabaseSync: typeof DatabaseSync
  }
  const db = new Database(path)
  return {
    exec: (sql) => db.exec(sql),
    query<Row>(sql: string) {
      const statement = db.prepare(sql)
      return {
        get: (...params: SqlValue[]) => (statement.get(...(params as never[])) as Row | undefined) ?? null,
        all: (...params: SqlValue[]) => statement.all(...(params as never[])) as Row[],
        run: (...params: SqlValue[]) => ({ changes: Number(statement.run(...(params as never[])).changes) }),
      } as never
    },
    transaction: (fn) => nodeTransaction(db, fn),
    close: () => db.close(),
  }
}

/** As bun:sqlite's: a call made inside another transaction joins it instead of nesting. */
function nodeTransaction<Args extends unknown[], Result>(
  db: DatabaseSync,
  fn: (...args: Args) => Result,
): (...args: Args) => Result {
  const begin = db.prepare("BEGIN")
  const commit = db.prepare("COMMIT")
  const rollback = db.prepare("ROLLBACK")
  return (...args) => {
    if (db.isTransaction) return fn(...args)
    begin.run()
    try {
      const result = fn(...args)
      commit.run()
      return result
    } catch (err) {
      rollback.run()
      throw err
    }
  }
}
