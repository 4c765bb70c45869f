import { describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import { deleteTopology, testEnv } from "./support.ts"

async function runFixture(extra: Record<string, string> = {}) {
  const { env, dataDir } = testEnv("stray-rejection", extra)
  try {
    const proc = Bun.spawn([process.execPath, "tests/fixtures/stray-rejection.ts"], {
      env: { ...process.env, ...env },
      stdout: "pipe",
      stderr: "pipe",
    })
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ])
    return { stdout, stderr, code }
  } finally {
    await deleteTopology(env)
    rmSync(dataDir, { recursive: true, force: true })
  }
}

describe("a service process and unhandled rejections", () => {
  test("survives the confirm rejection amqp-client leaves behind a publish written to a dying socket", async () => {
    const { stdout, code } = await runFixture()
    expect({ stdout, code }).toEqual({
      stdout: "publish failed: Cannot call write after a stream was destroyed\nstill running\n",
      code: 0,
    })
  })

  test("survives a write amqp-client makes of its own accord, unhandled, to a socket that is gone", async () => {
    const { stdout, code } = await runFixture({ UNCAUGHT_WRITE: "1" })
    expect({ stdout, code }).toEqual({ stdout: "frame written\nstill running\n", code: 0 })
  })

  test("still ends on any other unhandled rejection", async () => {
    const { stderr, code } = await runFixture({ GENUINE: "1" })
    expect(stderr).toContain("error: a genuine bug")
    expect(code).not.toBe(0)
  })
})
