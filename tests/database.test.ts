import { Database } from "bun:sqlite"
import { describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import { openPostgresStore } from "../services/status-store/postgres.ts"
import { connectPostgres, POSTGRES_SCHEMA_VERSION } from "../services/status-store/postgres-schema.ts"
import { SQLITE_SCHEMA_VERSION } from "../services/status-store/sqlite.ts"
import { createTestDatabase } from "./postgres.ts"
import { openTestDatabase, STORE_BACKENDS } from "./store-backends.ts"

describe("the status store's SQLite database", () => {
  test("a database of the first version is migrated in place and keeps its tasks", async () => {
    await using database = await openTestDatabase("sqlite")
    await database.store.close()
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${database.path}${suffix}`, { force: true })
    const old = new Database(database.path, { create: true })
    old.run(`CREATE TABLE tasks (task_id TEXT PRIMARY KEY, kind TEXT, status TEXT NOT NULL,
      progress INTEGER NOT NULL, attempts INTEGER NOT NULL, input TEXT, result TEXT, error TEXT,
      submitted_at INTEGER, started_at INTEGER, finished_at INTEGER)`)
    old.run(`INSERT INTO tasks VALUES ('01a2124d-1111-7000-8000-000000000001', 'polarity:review', 'PENDING',
      1000000, 0, '{"review":"x"}', NULL, NULL, 1000, NULL, NULL)`)
    old.close()
    for (let open = 0; open < 2; open++) {
      const db = await database.reopen()
      expect(await db.find("01a2124d-1111-7000-8000-000000000001")).toMatchObject({
        status: "PENDING",
        rank: 1_000_000,
        group_id: null,
        group_index: null,
      })
      expect((await db.list({ status: "PENDING" }, 10)).map((row) => row.task_id)).toEqual([
        "01a2124d-1111-7000-8000-000000000001",
      ])
    }
    expect(await database.query("PRAGMA user_version")).toEqual([{ user_version: SQLITE_SCHEMA_VERSION }])
  })
})

describe("the status store's PostgreSQL database", () => {
  test("replicas that start at once migrate it once, one after another", async () => {
    await using database = await createTestDatabase("migrations")
    const replicas = await Promise.all([1, 2, 3].map(() => openPostgresStore(database.url, 1)))
    await Promise.all(replicas.map((replica) => replica.close()))
    const raw = connectPostgres(database.url, 1)
    try {
      const versions = await raw<
        { version: number }[]
      >`SELECT version FROM schema_migrations ORDER BY version`
      expect(versions.map((row) => row.version)).toEqual(
        Array.from({ length: POSTGRES_SCHEMA_VERSION }, (_, i) => i + 1),
      )
    } finally {
      await raw.end()
    }
  })
})

describe.each(STORE_BACKENDS)("a newer schema (%s)", (backend) => {
  test("a database migrated by a newer store is refused with its version", async () => {
    await using database = await openTestDatabase(backend)
    const known = backend === "sqlite" ? SQLITE_SCHEMA_VERSION : POSTGRES_SCHEMA_VERSION
    await database.store.close()
    if (backend === "sqlite") {
      const raw = new Database(database.path)
      raw.run(`PRAGMA user_version = ${known + 1}`)
      raw.close()
    } else {
      const raw = connectPostgres(database.path, 1)
      await raw`INSERT INTO schema_migrations VALUES (${known + 1}, 0)`.finally(() => raw.end())
    }
    await expect(database.reopen()).rejects.toThrow(
      `the database is at schema version ${known + 1}, newer than this status store's ${known}`,
    )
  })
})
