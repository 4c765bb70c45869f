// The status store's backends as the tests open them: each test gets a database of its own (a temporary
// SQLite file), raw SQL beside the store for the checks, and removes it all afterwards.
import { Database } from "bun:sqlite"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { openSqliteStore } from "../services/status-store/sqlite.ts"
import type { StatusStore } from "../services/status-store/store.ts"

export const STORE_BACKENDS = ["sqlite"] as const
export type StoreBackend = (typeof STORE_BACKENDS)[number]

export interface TestDatabase extends AsyncDisposable {
  backend: StoreBackend
  /** Where the database is: the SQLite file's path. */
  path: string
  /** The store, open on this database. */
  store: StatusStore
  /** Close the store and open it again on the same database. */
  reopen(): Promise<StatusStore>
  /** Rows of a query that reads the same on every backend (use CAST(… AS INTEGER) for counts). */
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>
}

export async function openTestDatabase(backend: StoreBackend): Promise<TestDatabase> {
  const dir = mkdtempSync(join(tmpdir(), "polarity-store-"))
  const path = join(dir, "store.sqlite")
  const open = () => openSqliteStore(path, "NORMAL")
  let store = open()
  return {
    backend,
    path,
    get store() {
      return store
    },
    async reopen() {
      await store.close()
      store = open()
      return store
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
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
