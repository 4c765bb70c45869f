import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { runtimeChecks } from "./fixtures/runtime-checks.ts"
import { DENO, ROOT } from "./runtimes.ts"

const EXPECTED = {
  sqlite: {
    missing: null,
    changes: [1, 1],
    ignored: 0,
    committed: 2,
    nested: 1,
    error: "undone",
    rolledBack: null,
    all: [
      { k: "a", n: 3 },
      { k: "b", n: 1 },
      { k: "c", n: 2 },
      { k: "d", n: 4 },
    ],
  },
  serve: {
    portChosen: true,
    declared: { status: 200, text: "read 1000" },
    chunked: { status: 200, text: "read 1000" },
    afterStop: "refused",
  },
  file: { status: 200, type: "text/plain; charset=utf-8", text: "hello, file" },
}

async function inDeno(dir: string): Promise<unknown> {
  const proc = Bun.spawn(
    [
      DENO,
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      "tests/fixtures/runtime-checks.ts",
      dir,
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  )
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  if (code !== 0) throw new Error(`deno exited with ${code}: ${err}`)
  return JSON.parse(out)
}

describe("shared/runtime.ts", () => {
  for (const [runtime, check] of [
    ["Bun", async (dir: string) => JSON.parse(JSON.stringify(await runtimeChecks(dir)))],
    ["Deno", inDeno],
  ] as const) {
    test(`serves, limits bodies, stops, streams files and runs SQLite the same way under ${runtime}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "polarity-runtime-"))
      try {
        expect(await check(dir)).toEqual(EXPECTED)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })
  }
})
