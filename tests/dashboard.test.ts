// The dashboard in a real browser: headless Chromium (Debian's package, driven by playwright-core) against a
// running stack. Without Chromium these tests fail: `.ci/run` installs it.

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { keyLine, mintKey } from "../services/gateway/api-keys.ts"
import { loadWorkerConfig, startPool, start as startWorker } from "../services/polarity-worker.ts"
import { postReview, type Stack, startStack, taskBody, waitForFinal } from "./support.ts"

const CHROMIUM = "/usr/bin/chromium"
// playwright-core gives every launch a fresh, temporary profile (its own --user-data-dir).
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]
const WAIT_MS = 10_000
const ADMIN_TOKEN = "browser-test-admin-token-of-32-characters"

let stack: Stack
let browser: Browser
beforeAll(async () => {
  stack = await startStack("dashboard", {
    ENABLE_TEST_TASKS: "true",
    // A retryable failure waits a long while in RETRY: the screenshot shows that state too.
    MAX_RETRIES: "1",
    RETRY_BASE_DELAY_MS: "60000",
    // One task in hand per queue, so that a task queued behind a sleeper stays PENDING until it is cancelled.
    WORKER_PREFETCH: "1",
    WORKER_HEARTBEAT_MS: "250",
    DASHBOARD_REFRESH_MS: "250",
    ADMIN_TOKEN: ADMIN_TOKEN,
    // Each sentence of a document takes 30 ms, so that a long one runs for seconds and shows its progress.
    TEST_SENTENCE_DELAY_MS: "30",
  })
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
})
afterAll(async () => {
  await browser?.close()
  await stack?.[Symbol.asyncDispose]()
})

interface OpenPage extends AsyncDisposable {
  page: Page
  /** Uncaught errors and console errors of the page. */
  errors: string[]
}

async function openDashboard(url: string): Promise<OpenPage> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
  const errors: string[] = []
  page.on("pageerror", (err) => errors.push(err.message))
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(msg.text())
  })
  await page.goto(url)
  return { page, errors, [Symbol.asyncDispose]: () => page.close() }
}

async function untilLive(page: Page): Promise<void> {
  await page.locator('#live[data-state="live"]').waitFor({ timeout: WAIT_MS })
}

async function untilText(page: Page, selector: string, text: string): Promise<void> {
  let shown: string | undefined
  for (const deadline = Date.now() + WAIT_MS; Date.now() < deadline; await Bun.sleep(50)) {
    shown = (await page.locator(selector).textContent({ timeout: WAIT_MS }))?.trim()
    if (shown === text) return
  }
  throw new Error(`${selector} shows "${shown}", not "${text}"`)
}

/** The table's rows as [task id, status], once `done` holds for them. */
async function untilRows(page: Page, done: (rows: string[][]) => boolean): Promise<string[][]> {
  for (const deadline = Date.now() + WAIT_MS; ; await Bun.sleep(50)) {
    const rows = await page
      .locator("#tasks tbody tr[data-task-id]")
      .evaluateAll((trs) =>
        trs.map((tr) => [tr.getAttribute("data-task-id") ?? "", tr.getAttribute("data-status") ?? ""]),
      )
    if (done(rows)) return rows
    if (Date.now() > deadline) throw new Error(`the task table shows ${JSON.stringify(rows)}`)
  }
}

const row = (taskId: string, status?: string) =>
  `#tasks tbody tr[data-task-id="${taskId}"]${status ? `[data-status="${status}"]` : ""}`

async function postJson(path: string, body: unknown): Promise<string> {
  const res = await fetch(stack.url(path), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
  expect([200, 202]).toContain(res.status)
  return ((await res.json()) as { task_id: string }).task_id
}

const reviews = ["What a lovely, wonderful day", "This is awful and sad", "It arrived on Tuesday"]
const submitted: Record<string, string> = {}

describe("the dashboard in a browser", () => {
  test("counts, the table, workers and queues update live, without a reload", async () => {
    await using opened = await openDashboard(stack.url("/dashboard"))
    const { page } = opened
    await untilLive(page)
    await untilText(page, "#count-SUCCESS", "0")
    await page.evaluate(() => {
      Object.assign(globalThis, { sameDocument: true })
    })

    for (const review of reviews)
      submitted[review] = (await taskBody(await postReview(stack, review, "?wait=10"))).task_id
    submitted.failed = await postJson("/test/flaky?wait=10", { fail_times: 1, non_retryable: true })

    await untilText(page, "#count-SUCCESS", "3")
    await untilText(page, "#count-FAILURE", "1")
    for (const review of reviews)
      await page.locator(row(submitted[review] ?? "", "SUCCESS")).waitFor({ timeout: WAIT_MS })
    await page.locator(row(submitted.failed ?? "", "FAILURE")).waitFor({ timeout: WAIT_MS })
    await untilText(page, '#latency tr[data-phase="total"] td:last-child', "4")
    await page.locator('#workers tbody tr[data-status="online"]').waitFor({ timeout: WAIT_MS })
    await untilText(page, `#queues tr[data-queue="${stack.names.failedQueue}"] td:nth-child(2)`, "1")
    expect(await page.locator("#chart canvas").count()).toBeGreaterThan(0)
    expect(await page.evaluate(() => (globalThis as { sameDocument?: boolean }).sameDocument)).toBe(true)
    expect(opened.errors).toEqual([])
  })

  test("a task's detail shows its review, result, attempts and timeline", async () => {
    await using opened = await openDashboard(stack.url("/dashboard"))
    const { page } = opened
    const taskId = submitted[reviews[0] ?? ""] ?? ""
    await page.locator(row(taskId)).click()
    await page.locator('#detail[open][data-status="SUCCESS"]').waitFor({ timeout: WAIT_MS })
    expect(await page.locator("#detail-id").textContent()).toBe(taskId)
    expect(await page.locator("#detail-text").textContent()).toBe(reviews[0] ?? "")
    const body = (await page.locator("#detail-body").textContent()) ?? ""
    expect(body).toContain("polarityposi") // the result's term and value, side by side
    expect(body).toContain("positive wordswonderful, lovely")
    expect(await page.locator("#detail-timeline li").last().getAttribute("data-state")).toBe("SUCCESS")
    expect(await page.locator('#detail [data-action="cancel"]').isHidden()).toBe(true)
    expect(await page.locator('#detail [data-action="retry"]').isHidden()).toBe(true)
    expect(page.url()).toEndWith(`#task=${taskId}`)
    await page.locator("#detail-close").click()
    expect(await page.locator("#detail[open]").count()).toBe(0)
    expect(opened.errors).toEqual([])
  })

  test("cancels a pending task from its detail", async () => {
    // The sleeper holds the default queue's only slot, so the next flaky task waits PENDING behind it: long
    // enough for a browser on a busy machine to open the page and click (1.5 s was not, once in CI).
    const sleeper = await postJson("/test/flaky", { sleep_ms: 6000 })
    const pending = await postJson("/test/flaky", {})
    await using opened = await openDashboard(stack.url(`/dashboard#task=${pending}`))
    const { page } = opened
    await page.locator('#detail[open][data-status="PENDING"]').waitFor({ timeout: WAIT_MS })
    await page.locator('#detail [data-action="cancel"]').click()
    await page.locator('#detail[data-status="REVOKED"]').waitFor({ timeout: WAIT_MS })
    expect(await page.locator("#detail-message").textContent()).toBe("Task cancelled.")
    await page.locator(row(pending, "REVOKED")).waitFor({ timeout: WAIT_MS })
    await untilText(page, "#count-REVOKED", "1")
    expect((await waitForFinal(stack, sleeper)).status).toBe("SUCCESS")
    expect((await waitForFinal(stack, pending)).status).toBe("REVOKED")
    submitted.revoked = pending
    expect(opened.errors).toEqual([])
  })

  test("terminates a running task from its detail, after a confirmation", async () => {
    const running = await postJson("/test/flaky", { sleep_ms: 60_000 })
    await using opened = await openDashboard(stack.url(`/dashboard#task=${running}`))
    const { page } = opened
    await page.locator('#detail[open][data-status="STARTED"]').waitFor({ timeout: WAIT_MS })
    expect(await page.locator('#detail [data-action="cancel"]').isHidden()).toBe(true)
    const asked: string[] = []
    page.on("dialog", (dialog) => {
      asked.push(dialog.message())
      void dialog.accept()
    })
    await page.locator('#detail [data-action="terminate"]').click()
    await page.locator('#detail[data-status="REVOKED"]').waitFor({ timeout: WAIT_MS })
    expect(asked).toEqual(["Stop this running task? It ends REVOKED and is not retried."])
    expect(await page.locator("#detail-message").textContent()).toBe("Task terminated.")
    expect(await page.locator("#detail-error").textContent()).toBe("terminated while running attempt 1")
    expect(await page.locator('#detail [data-action="terminate"]').isHidden()).toBe(true)
    expect(opened.errors).toEqual([])
  })

  test("a running document's detail shows a progress bar that moves, then its result", async () => {
    // 300 sentences of 30 ms: 9 s, long enough for a browser on a busy machine to open the page and see it run.
    const text = Array.from({ length: 300 }, (_, i) => `Sentence ${i} is lovely.`).join(" ")
    const taskId = await postJson("/polarities/documents", { document: text })
    await using opened = await openDashboard(stack.url(`/dashboard#task=${taskId}`))
    const { page } = opened
    const bar = page.locator("#detail-progress")
    await bar.waitFor({ timeout: WAIT_MS })
    const first = Number(await bar.getAttribute("data-done"))
    expect(await bar.getAttribute("data-total")).toBe("300")
    // Moved by the live stream alone: the page reads the detail again only when the state changes.
    let done = first
    for (const deadline = Date.now() + WAIT_MS; done <= first && Date.now() < deadline; await Bun.sleep(50))
      done = Number(await bar.getAttribute("data-done", { timeout: WAIT_MS }))
    expect(done).toBeGreaterThan(first)
    expect(await page.locator("#detail-progress progress").getAttribute("max")).toBe("300")
    expect(await bar.textContent()).toMatch(/^\d+ \/ 300 \(\d+ %\)$/)
    await page.locator('#detail[data-status="SUCCESS"]').waitFor({ timeout: 3 * WAIT_MS })
    expect(await bar.count()).toBe(0)
    expect(await page.locator("#detail-body").textContent()).toContain("300 positive, 0 negative")
    expect(opened.errors).toEqual([])
  })

  test("filters the table by status, by kind and by id", async () => {
    await using opened = await openDashboard(stack.url("/dashboard"))
    const { page } = opened
    await page.locator(row(submitted.failed ?? "")).waitFor({ timeout: WAIT_MS })
    const ids = (rows: string[][]) => rows.map(([taskId]) => taskId)

    await page.selectOption("#filter-status", "FAILURE")
    const failures = await untilRows(page, (rows) => rows.every(([, status]) => status === "FAILURE"))
    expect(ids(failures)).toEqual([submitted.failed ?? ""])

    await page.selectOption("#filter-status", "")
    await page.selectOption("#filter-kind", "polarity:review")
    const ofKind = await untilRows(page, (rows) => rows.length === 3)
    expect(ids(ofKind)).toEqual(reviews.map((review) => submitted[review] ?? "").toReversed())

    const wanted = submitted[reviews[1] ?? ""] ?? ""
    await page.fill("#filter-id", wanted.slice(0, 34))
    expect(ids(await untilRows(page, (rows) => rows.length === 1))).toEqual([wanted])
    expect(opened.errors).toEqual([])
  })

  test("what a client wrote is shown as text, never as HTML", async () => {
    const review = `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script> awful`
    const { task_id: taskId } = await taskBody(await postReview(stack, review, "?wait=10"))
    await using opened = await openDashboard(stack.url(`/dashboard#task=${taskId}`))
    const { page } = opened
    await page.locator('#detail[open][data-status="SUCCESS"]').waitFor({ timeout: WAIT_MS })
    expect(await page.locator("#detail-text").textContent()).toBe(review)
    expect(await page.locator("#detail img, #detail script").count()).toBe(0)
    expect(await page.title()).not.toBe("pwned")
  })

  // Into docs/ only when asked, so that a test run leaves the checkout as it found it.
  const screenshotPath = process.env.UPDATE_SCREENSHOT
    ? "docs/dashboard.png"
    : join(tmpdir(), `dashboard-${process.pid}.png`)

  test("saves a screenshot with tasks in several states (docs/dashboard.png with UPDATE_SCREENSHOT=1)", async () => {
    for (let burst = 0; burst < 4; burst++) {
      const batch = Array.from({ length: 60 }, (_, i) =>
        i % 4 === 0 ? `Awful ${i}` : `Lovely review ${burst}-${i}`,
      )
      await postJson("/polarities/batch", { reviews: batch }).catch(() => {})
      await Bun.sleep(400)
    }
    await postJson("/test/flaky", { fail_times: 2 })
    await postJson("/test/flaky", { sleep_ms: 3000 })
    await postJson("/polarities/documents", { document: "I love this phone. The battery is awful!" })
    await using opened = await openDashboard(stack.url("/dashboard"))
    const { page } = opened
    await untilLive(page)
    await untilText(page, "#count-RETRY", "1")
    await untilText(page, "#count-STARTED", "1")
    await page.selectOption("#chart-window", "60")
    await page.waitForTimeout(600)
    await page.screenshot({ path: screenshotPath, fullPage: true })
    const png = await Bun.file(screenshotPath).bytes()
    if (!process.env.UPDATE_SCREENSHOT) rmSync(screenshotPath)
    expect([...png.slice(1, 4)].map((c) => String.fromCharCode(c)).join("")).toBe("PNG")
    expect(opened.errors).toEqual([])
  })

  test("retries a failed task from its detail, and it succeeds", async () => {
    await using opened = await openDashboard(stack.url(`/dashboard#task=${submitted.failed}`))
    const { page } = opened
    await page.locator('#detail[open][data-status="FAILURE"]').waitFor({ timeout: WAIT_MS })
    expect(await page.locator("#detail-error").textContent()).toBe(
      "NonRetryableError: planned failure on attempt 1 of the first 1",
    )
    await page.locator('#detail [data-action="retry"]').click()
    await page.locator('#detail[data-status="SUCCESS"]').waitFor({ timeout: WAIT_MS })
    expect(
      await page
        .locator("#detail-timeline li")
        .evaluateAll((items) => items.map((li) => li.getAttribute("data-state"))),
    ).toContain("FAILURE")
    expect(opened.errors).toEqual([])
  })
})

describe("the workers in a browser", () => {
  test("pings the workers, lists a worker's tasks in hand, and stops another one", async () => {
    const second = await startWorker(
      loadWorkerConfig({ ...stack.env, WORKER_QUEUES: "polarity", WORKER_NAME: "browser-second" }),
    )
    try {
      // Long enough for a browser on a busy machine to open the page and list it.
      const sleeper = await postJson("/test/flaky", { sleep_ms: 6000 })
      await using opened = await openDashboard(stack.url("/dashboard"))
      const { page } = opened
      const rowOf = (worker: string) => `#workers tr[data-worker="${worker}"]`
      await page.locator(`${rowOf("browser-second")}[data-status="online"]`).waitFor({ timeout: WAIT_MS })
      await page.locator(`${rowOf(stack.worker.worker)} button[data-worker-action="active"]`).click()
      await page.locator(`#worker-tasks tr[data-task-id="${sleeper}"]`).waitFor({ timeout: WAIT_MS })
      expect(await page.locator("#worker-tasks-id").textContent()).toBe(stack.worker.worker)

      await page.locator("#ping").click()
      await untilText(page, "#worker-message", "2 of 2 answered")
      expect(await page.locator(`${rowOf(stack.worker.worker)} td.ping`).textContent()).toMatch(/ms$/)

      page.on("dialog", (dialog) => void dialog.accept())
      await page.locator(`${rowOf("browser-second")} button[data-worker-action="shutdown"]`).click()
      await second.stopped
      await page.locator(`${rowOf("browser-second")}[data-status="offline"]`).waitFor({ timeout: WAIT_MS })
      expect((await waitForFinal(stack, sleeper, 20_000)).status).toBe("SUCCESS")
      expect(opened.errors).toEqual([])
    } finally {
      await second.stop()
    }
  })

  test("shows an autoscaled pool with its processes under it, and +1 / −1 resize it", async () => {
    // The supervisor in this process, its processes real ones; no shrink by the autoscaler during the test.
    const settings = { ...stack.env, WORKER_QUEUES: "polarity", AUTOSCALE_IDLE_MS: "600000" }
    const config = loadWorkerConfig({ ...settings, WORKER_NAME: "browser-pool" })
    const pool = await startPool(
      { ...config, WORKER_AUTOSCALE: { max: 2, min: 1 } },
      "services/polarity-worker.ts",
      {
        ...process.env,
        ...settings,
      },
    )
    try {
      await using opened = await openDashboard(stack.url("/dashboard"))
      const { page } = opened
      const rowOf = (worker: string) => `#workers tr[data-worker="${worker}"]`
      await page.locator(`${rowOf("browser-pool.1")}[data-status="online"]`).waitFor({ timeout: WAIT_MS })
      expect(await page.locator(`${rowOf("browser-pool")} td.id`).textContent()).toBe(
        "browser-pool pool of 1 (1–2)",
      )
      expect(await page.locator(`${rowOf("browser-pool.1")} td.id`).textContent()).toBe("↳ browser-pool.1")

      await page.locator(`${rowOf("browser-pool")} button[data-worker-action="grow"]`).click()
      await untilText(page, "#worker-message", "browser-pool: 2 processes")
      await page.locator(`${rowOf("browser-pool.2")}[data-status="online"]`).waitFor({ timeout: WAIT_MS })
      await page.locator(`${rowOf("browser-pool")} button[data-worker-action="shrink"]`).click()
      await untilText(page, "#worker-message", "browser-pool: 1 process")
      // The process holding fewest tasks (ties: the first listed) drains and says goodbye.
      await page
        .locator(`#workers tr[data-worker^="browser-pool."][data-status="offline"]`)
        .waitFor({ timeout: WAIT_MS })
      expect(opened.errors).toEqual([])
    } finally {
      await pool.stop()
    }
  })
})

describe("the dead letters in a browser", () => {
  test("replays the failed dead letters after asking for the admin token", async () => {
    await using opened = await openDashboard(stack.url("/dashboard"))
    const { page } = opened
    const failedRow = `#queues tr[data-queue="${stack.names.failedQueue}"] td:nth-child(2)`
    await untilText(page, failedRow, "1")
    const asked: string[] = []
    page.on("dialog", (dialog) => {
      asked.push(dialog.message())
      void dialog.accept(ADMIN_TOKEN)
    })
    await page.locator("#replay").click()
    await untilText(page, "#replay-result", "replayed 1 task")
    expect(asked).toEqual(["The admin token (ADMIN_TOKEN) to replay dead letters:"])
    await untilText(page, failedRow, "0")
    // 401 from the admin endpoint, before the token was given.
    expect(opened.errors).toEqual([
      "Failed to load resource: the server responded with a status of 401 (Unauthorized)",
    ])
  })
})

describe("the protected dashboard in a browser", () => {
  const token = "browser-test-dashboard-token"
  let guarded: Stack
  const aliceKey = mintKey()
  const postAsAlice = (path: string, body: unknown) =>
    fetch(guarded.url(path), {
      method: "POST",
      headers: { authorization: `Bearer ${aliceKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    })
  beforeAll(async () => {
    // With API keys on: the page and its actions work with the dashboard's own cookie, and no key.
    guarded = await startStack("dashboard-guarded", {
      DASHBOARD_TOKEN: token,
      DASHBOARD_REFRESH_MS: "250",
      API_KEYS: keyLine("alice", false, aliceKey),
    })
  })
  afterAll(async () => {
    await guarded?.[Symbol.asyncDispose]()
  })

  test("is a 401 without the token, and live after opening it once with ?token=", async () => {
    const page = await browser.newPage()
    try {
      const refused = await page.goto(guarded.url("/dashboard"))
      expect(refused?.status()).toBe(401)
      await page.goto(guarded.url(`/dashboard?token=${token}`))
      expect(page.url()).toBe(guarded.url("/dashboard"))
      await untilLive(page)
      expect((await postAsAlice("/polarities?wait=10", { review: "lovely" })).status).toBe(200)
      await untilText(page, "#count-SUCCESS", "1")
    } finally {
      await page.close()
    }
  })

  test("cancels a key's task with the dashboard's cookie alone", async () => {
    await guarded.restartWorker(async () => {
      const res = await postAsAlice("/polarities", { review: "held while the worker is away" })
      const { task_id: taskId } = await taskBody(res)
      const page = await browser.newPage()
      try {
        // The link's fragment outlives the redirect that sets the cookie.
        await page.goto(guarded.url(`/dashboard?token=${token}#task=${taskId}`))
        await page.locator('#detail[open][data-status="PENDING"]').waitFor({ timeout: WAIT_MS })
        await page.locator('#detail [data-action="cancel"]').click()
        await page.locator('#detail[data-status="REVOKED"]').waitFor({ timeout: WAIT_MS })
        expect(await page.locator("#detail-message").textContent()).toBe("Task cancelled.")
      } finally {
        await page.close()
      }
      const after = await fetch(guarded.url(`/polarities/tasks/${taskId}`), {
        headers: { authorization: `Bearer ${aliceKey}` },
      })
      expect((await taskBody(after)).status).toBe("REVOKED")
    })
  })
})

describe("the API docs in a browser", () => {
  test("/docs renders every operation of /openapi.json and the schemas they use", async () => {
    const spec = (await (await fetch(stack.url("/openapi.json"))).json()) as {
      paths: Record<string, Record<string, unknown>>
      components: { schemas: Record<string, unknown> }
    }
    const operations = Object.entries(spec.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    )
    await using opened = await openDashboard(stack.url("/docs"))
    const { page, errors } = opened
    await page.locator(".opblock").first().waitFor({ timeout: WAIT_MS })
    const shown = await page
      .locator(".opblock-summary")
      .evaluateAll((blocks) =>
        blocks.map(
          (block) =>
            `${block.querySelector(".opblock-summary-method")?.textContent?.trim()} ${block
              .querySelector("[data-path]")
              ?.getAttribute("data-path")}`,
        ),
      )
    expect(shown.sort()).toEqual(operations.sort())
    // OpenAPI 3.1: Swagger UI lists each component schema as a JSON Schema 2020-12 article, by its title.
    const models = await page
      .locator('.models article[data-json-schema-level="0"] .json-schema-2020-12__title')
      .allTextContents()
    expect(models.sort()).toEqual(Object.keys(spec.components.schemas).sort())
    expect(errors).toEqual([])
  })
})

// Last: the scheduled and report tasks would otherwise show in the tables the other tests read.
describe("the dashboard's schedules, reports and delay ladder", () => {
  test("lists the schedules with their last and next run, and the last run's task opens from it", async () => {
    const created = await fetch(stack.url("/schedules"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: "every-second",
        every: 1,
        task: { kind: "polarity:review", review: "Tick" },
      }),
    })
    expect(created.status).toBe(201)
    try {
      await using opened = await openDashboard(stack.url("/dashboard"))
      const { page } = opened
      const scheduleRow = page.locator('#schedules tbody tr[data-schedule="every-second"]')
      await scheduleRow.locator("td a").waitFor({ timeout: WAIT_MS })
      const cells = (await scheduleRow.locator("td").allTextContents()).map((cell) => cell.trim())
      expect(cells.slice(0, 4)).toEqual(["every-second", "every 1 s", "polarity:review", "skip"])
      expect(cells[4]).toMatch(/ s ago$/)
      expect(cells[5]).toMatch(/^in \d+ s$|s ago$/)
      await scheduleRow.locator("td a").click()
      await page.locator("#detail[open]").waitFor({ timeout: WAIT_MS })
      expect(await page.locator("#detail-text").textContent()).toBe("Tick")
      expect(opened.errors).toEqual([])
    } finally {
      await fetch(stack.url("/schedules/every-second"), { method: "DELETE" })
    }
  })

  test("draws the polarity share of the latest reports", async () => {
    const res = await fetch(stack.url("/polarities/reports?wait=20"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ window: "day" }),
    })
    expect((await taskBody(res)).status).toBe("SUCCESS")
    await using opened = await openDashboard(stack.url("/dashboard"))
    const { page } = opened
    await page.locator("#polarity-chart .uplot").waitFor({ timeout: WAIT_MS })
    await page.locator("#polarity-empty[hidden]").waitFor({ state: "attached", timeout: WAIT_MS })
    const legend = await page.locator("#polarity-chart .u-legend").textContent()
    expect(legend).toContain("positive")
    expect(opened.errors).toEqual([])
  })

  test("pauses a work queue, purges it after a confirmation, and resumes it", async () => {
    await using opened = await openDashboard(stack.url("/dashboard"))
    const { page } = opened
    const polarity = `#queues tr[data-route="polarity"]`
    await page.locator(`${polarity} button[data-queue-action="pause"]`).click()
    await page.locator(`${polarity}.paused .badge`).waitFor({ timeout: WAIT_MS })
    await untilText(page, "#queue-message", "polarity paused")
    const waiting = await postJson("/polarities", { review: "waits in a paused queue" })

    const confirmed: string[] = []
    page.once("dialog", (dialog) => {
      confirmed.push(dialog.message())
      void dialog.accept()
    })
    await page.locator(`${polarity} button[data-queue-action="purge"]`).click()
    await untilText(page, "#queue-message", "polarity: 1 messages purged, 1 tasks revoked")
    expect(confirmed).toEqual(["Purge queue polarity? Every task of it that has not started ends REVOKED."])
    expect(await taskBody(await fetch(stack.url(`/polarities/tasks/${waiting}`)))).toMatchObject({
      status: "REVOKED",
      error: "purged",
    })

    await page.locator(`${polarity} button[data-queue-action="resume"]`).click()
    await page
      .locator(`${polarity}:not(.paused) button[data-queue-action="pause"]`)
      .waitFor({ timeout: WAIT_MS })
    expect((await taskBody(await postReview(stack, "runs again", "?wait=10"))).status).toBe("SUCCESS")
    expect(opened.errors).toEqual([])
  })

  test("shows the delay ladder's 25 wait queues as one row", async () => {
    await using opened = await openDashboard(stack.url("/dashboard"))
    const { page } = opened
    const ladder = page.locator(
      `#queues tr[data-queue="${stack.names.delayDueExchange.replace(/due$/, "ladder (25 wait queues)")}"]`,
    )
    await ladder.waitFor({ timeout: WAIT_MS })
    expect(await page.locator('#queues tr[data-queue*="delay.level"]').count()).toBe(0)
    expect(opened.errors).toEqual([])
  })
})
