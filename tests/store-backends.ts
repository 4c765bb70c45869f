// The status store's backends as the tests open them: each test gets a database of its own (a temporary SQLite
// file, or a PostgreSQL database of a unique name on the local server), raw SQL beside the store for the checks,
// and removes it all afterwards.
import { Database } from "bun:sqlite"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { openPostgresStore } from "../services/status-store/postgres.ts"
import { connectPostgres } from "../services/status-store/postgres-schema.ts"
import { openSqliteStore } from "../services/status-store/sqlite.ts"
import type { StatusStore } from "../services/status-store/store.ts"
import { createTestDatabase } from "./postgres.ts"

export const STORE_BACKENDS = ["sqlite", "postgres"] as const
export type StoreBackend = (typeof STORE_BACKENDS)[number]

export function storeBackend(name: string): StoreBackend {
  const backend = STORE_BACKENDS.find((known) => known === name)
  if (!backend) throw new Error(`unknown store backend ${name}: one of ${STORE_BACKENDS.join(", ")}`)
  return backend
}

export interface TestDatabase extends AsyncDisposable {
  backend: StoreBackend
  /** Where the database is: the SQLite file's path, or the PostgreSQL database's URL. */
  path: string
  /** The store, open on this database. */
  store: StatusStore
  /** Close the store and open it again on the same database. */
  reopen(): Promise<StatusStore>
  /** One more store on the same database, as another replica would open it; closed with the database. */
  openReplica(): Promise<StatusStore>
  /** Rows of a query that reads the same on every backend (use CAST(… AS INTEGER) for counts). */
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>
}

export function openTestDatabase(backend: StoreBackend): Promise<TestDatabase> {
  return backend === "sqlite" ? openSqliteDatabase() : openPostgresDatabase()
}

async function openPostgresDatabase(): Promise<TestDatabase> {
  const database = await createTestDatabase("store")
  const open = () => openPostgresStore(database.url, 4)
  const replicas: StatusStore[] = []
  let store: StatusStore
  try {
    store = await open()
  } catch (err) {
    await database[Symbol.asyncDispose]()
    throw err
  }
  return {
    backend: "postgres",
    path: database.url,
    get store() {
      return store
    },
    async reopen() {
      await store.close()
      store = await open()
      return store
    },
    async openReplica() {
      const replica = await open()
      replicas.push(replica)
      return replica
    },
    async query<T>(sql: string) {
      const raw = connectPostgres(database.url, 1)
      try {
        return [...(await raw.unsafe(sql))] as T[]
      } finally {
        await raw.end()
      }
    },
    async [Symbol.asyncDispose]() {
      await Promise.allSettled([store, ...replicas].map((replica) => replica.close()))
      await database[Symbol.asyncDispose]()
    },
  }
}

async function openSqliteDatabase(): Promise<TestDatabase> {
  const dir = mkdtempSync(join(tmpdir(), "polarity-store-"))
  const path = join(dir, "store.sqlite")
  const open = () => openSqliteStore(path, "NORMAL")
  const replicas: StatusStore[] = []
  let store = open()
  return {
    backend: "sqlite",
    path,
    get store() {
      return store
    },
    async reopen() {
      await store.close()
      store = open()
      return store
    },
    async openReplica() {
      const replica = open()
      replicas.push(replica)
      return replica
    },
    async query<T>(sql: string) {
      const raw = new Database(path, { readonly: true })
      try {
        return raw.query<T, []>(sql).all()
      } finally {
        raw.close()
      }
    },
    async [Symbol.asyncDispose]() {
      await Promise.allSettled([store, ...replicas].map((replica) => replica.close()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
