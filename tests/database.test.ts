import { Database } from "bun:sqlite"
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { openDatabase } from "../services/status-store/database.ts"

describe("the status store's database", () => {
  test("a database of the first version is migrated in place and keeps its tasks", () => {
    const dir = mkdtempSync(join(tmpdir(), "polarity-migrate-"))
    try {
      const path = join(dir, "old.sqlite")
      const old = new Database(path, { create: true })
      old.run(`CREATE TABLE tasks (task_id TEXT PRIMARY KEY, kind TEXT, status TEXT NOT NULL,
        progress INTEGER NOT NULL, attempts INTEGER NOT NULL, input TEXT, result TEXT, error TEXT,
        submitted_at INTEGER, started_at INTEGER, finished_at INTEGER)`)
      old.run(`INSERT INTO tasks VALUES ('01a2124d-1111-7000-8000-000000000001', 'polarity:review', 'PENDING',
        1000000, 0, '{"review":"x"}', NULL, NULL, 1000, NULL, NULL)`)
      old.close()

      for (let open = 0; open < 2; open++) {
        const db = openDatabase(path, "NORMAL")
        expect(db.find("01a2124d-1111-7000-8000-000000000001")).toMatchObject({
          status: "PENDING",
          group_id: null,
          group_index: null,
        })
        expect(db.list({ status: "PENDING" }, 10).map((row) => row.task_id)).toEqual([
          "01a2124d-1111-7000-8000-000000000001",
        ])
        db.close()
      }
      const migrated = new Database(path)
      expect(migrated.query("PRAGMA user_version").get()).toEqual({ user_version: 4 })
      migrated.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
