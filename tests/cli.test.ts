// The `polarity` command (bin/polarity.js) run as a user runs it, by Node, against a real stack.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { TaskQueueList, TaskRecord, WorkerStatus } from "../shared/contracts.ts"
import { eventually, type Stack, startStack, submitFlaky, taskBody } from "./support.ts"

// A document's sentences take 40 ms each on this worker, so that a long one reports progress for a while; one
// task in hand per queue, so that a task queued behind a sleeper stays PENDING.
let stack: Stack
beforeAll(async () => {
  stack = await startStack("cli", {
    ENABLE_TEST_TASKS: "true",
    TEST_SENTENCE_DELAY_MS: "40",
    PROGRESS_INTERVAL_MS: "100",
    WORKER_PREFETCH: "1",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** `node bin/polarity.js …`, as `npx polarity …` runs it, against the stack's gateway unless `env` says else. */
async function polarity(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = Bun.spawn(["node", "bin/polarity.js", ...args], {
    env: { PATH: process.env.PATH ?? "", POLARITY_URL: stack.gateway.url, ...env },
    stdout: "pipe",
    stderr: "pipe",
  })
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ])
  return { code, stdout, stderr }
}

const sentences = (count: number) =>
  Array.from({ length: count }, (_, i) =>
    i % 2 ? `Sentence ${i} is lovely.` : `Sentence ${i} is sad.`,
  ).join(" ")

const record = async (taskId: string) => taskBody(await fetch(stack.url(`/polarities/tasks/${taskId}`)))

describe("polarity, the command line", () => {
  test("submit --wait prints the finished task and exits 0; --json prints the API's answer", async () => {
    const waited = await polarity(["submit", "What a lovely, wonderful day", "--wait"])
    expect(waited).toMatchObject({ code: 0, stderr: "" })
    expect(waited.stdout).toMatch(/^status {4}SUCCESS$/m)
    expect(waited.stdout).toMatch(/^result {4}positive \(score \d+, en\)$/m)

    const waitedJson = await polarity(["submit", "Lovely", "--wait", "--json"])
    expect(JSON.parse(waitedJson.stdout)).toMatchObject({ status: "SUCCESS", kind: "polarity:review" })

    const submitted = await polarity([
      "submit",
      "Грустно и ужасно",
      "--language",
      "ru",
      "--priority",
      "5",
      "--json",
    ])
    expect(submitted.code).toBe(0)
    const accepted = JSON.parse(submitted.stdout) as { task_id: string; status: string }
    expect(accepted).toEqual({ task_id: expect.any(String), status: "PENDING" })
    const status = await eventually(async () => {
      const run = await polarity(["status", accepted.task_id, "--json"])
      const task = JSON.parse(run.stdout) as TaskRecord
      expect(task.status).toBe("SUCCESS")
      return task
    })
    expect(status).toEqual(await record(accepted.task_id))
  })

  test("status prints a task readably", async () => {
    const { task_id } = JSON.parse((await polarity(["submit", "It is awful", "--json"])).stdout) as TaskRecord
    await eventually(async () => expect((await record(task_id)).status).toBe("SUCCESS"))
    const run = await polarity(["status", task_id])
    expect(run.code).toBe(0)
    expect(run.stdout.split("\n").slice(0, 5)).toEqual([
      `task      ${task_id}`,
      "kind      polarity:review",
      "status    SUCCESS",
      "attempts  1",
      expect.stringMatching(/^result {4}negative \(score -\d+, en\)$/),
    ])
  })

  test("watch follows a slow document's progress to its end; --json gives each event on a line", async () => {
    const submitted = await polarity(["submit", sentences(40), "--document", "--json"])
    const { task_id } = JSON.parse(submitted.stdout) as TaskRecord
    const watched = await polarity(["watch", task_id, "--json"])
    expect(watched.code).toBe(0)
    const events = watched.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { event: string; data: { done?: number; status?: string } })
    const progress = events.filter((e) => e.event === "progress").map((e) => e.data.done ?? -1)
    expect(progress.length).toBeGreaterThan(0)
    expect(progress).toEqual(progress.toSorted((a, b) => a - b))
    expect(events.at(-1)).toMatchObject({ event: "SUCCESS", data: { status: "SUCCESS", task_id } })
  })

  test("watch draws a progress bar on a terminal", async () => {
    const { task_id } = JSON.parse(
      (await polarity(["submit", sentences(40), "--document", "--json"])).stdout,
    ) as TaskRecord
    // `script` gives the command a pseudo-terminal, as a user's shell would.
    const command = `node bin/polarity.js watch ${task_id}`
    const run = Bun.spawn(["script", "-qec", command, "/dev/null"], {
      env: { PATH: process.env.PATH ?? "", POLARITY_URL: stack.gateway.url },
      stdout: "pipe",
    })
    const [output, code] = await Promise.all([new Response(run.stdout).text(), run.exited])
    expect(code).toBe(0)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the bar redraws its line with ESC [2K, which is what is checked
    expect(output).toMatch(/\r\x1b\[2K\[#+-+\] +\d+% {2}\d+\/40\r/)
    expect(output).toMatch(/^status {4}SUCCESS\r?$/m)
  })

  test("cancel revokes a waiting task, and --terminate stops a running one", async () => {
    const running = await submitFlaky(stack, { sleep_ms: 20_000 })
    await eventually(async () => expect((await record(running)).status).toBe("STARTED"), 10_000)
    const waiting = await submitFlaky(stack, { sleep_ms: 10 })

    const cancelled = await polarity(["cancel", waiting])
    expect(cancelled.code).toBe(0)
    expect(cancelled.stdout).toMatch(/^status {4}REVOKED$/m)

    const refused = await polarity(["cancel", running])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/^polarity: 409 Conflict: task \S+ is already running/)

    const terminated = await polarity(["cancel", running, "--terminate", "--json"])
    expect(terminated.code).toBe(0)
    expect(JSON.parse(terminated.stdout)).toMatchObject({ task_id: running, status: "REVOKED" })
  })

  test("workers and queues list what the admin routes answer", async () => {
    const workers = await polarity(["workers"])
    expect(workers.code).toBe(0)
    expect(workers.stdout.split("\n")[0]).toMatch(
      /^worker +status +queues +in hand +succeeded +failed +ping$/,
    )
    expect(workers.stdout).toContain(stack.worker.worker)
    const asJson = JSON.parse((await polarity(["workers", "--json"])).stdout) as { workers: WorkerStatus[] }
    expect(asJson.workers.map((w) => w.worker)).toContain(stack.worker.worker)

    const queues = await polarity(["queues"])
    expect(queues.stdout.split("\n").slice(0, 3)).toEqual([
      expect.stringMatching(/^queue +state +messages +consumers +since$/),
      expect.stringMatching(/^polarity +running +\d+ +1/),
      expect.stringMatching(/^default +running +\d+ +1/),
    ])
  })

  test("pause, purge and resume a queue", async () => {
    expect((await polarity(["pause", "polarity"])).stdout).toBe("polarity paused\n")
    const queued = JSON.parse((await polarity(["submit", "waits", "--json"])).stdout) as TaskRecord
    const listed = JSON.parse((await polarity(["queues", "--json"])).stdout) as TaskQueueList
    expect(listed.queues.find((q) => q.queue === "polarity")).toMatchObject({ paused: true })
    expect((await polarity(["purge", "polarity"])).stdout).toBe(
      "polarity: 1 messages purged, 1 tasks revoked (purged)\n",
    )
    expect(await record(queued.task_id)).toMatchObject({ status: "REVOKED", error: "purged" })
    expect((await polarity(["resume", "polarity"])).stdout).toBe("polarity resumed\n")

    const wrong = await polarity(["pause", "emails"])
    expect(wrong).toEqual({
      code: 1,
      stdout: "",
      stderr: "polarity: pause needs a queue: polarity or default\n",
    })
  })

  test("takes the admin token and the API key from the environment or flags, and says which is missing", async () => {
    const token = "cli-admin-token-of-at-least-32-chars"
    const guarded = await stack.gatewayWith({ ADMIN_TOKEN: token, HOST: "127.0.0.1" })
    const url = guarded("")
    const missing = await polarity(["queues"], { POLARITY_URL: url })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(
      /^polarity: 401 Unauthorized: .*\(set POLARITY_ADMIN_TOKEN or --admin-token\)\n$/,
    )
    expect((await polarity(["queues"], { POLARITY_URL: url, POLARITY_ADMIN_TOKEN: token })).code).toBe(0)
    expect((await polarity(["queues", "--admin-token", token, "--url", url])).code).toBe(0)
  })

  test("an unreachable gateway, an unknown command or a missing argument is one line on stderr and exit 1", async () => {
    const unreachable = await polarity(["status", "x"], { POLARITY_URL: "http://127.0.0.1:9" })
    expect(unreachable).toEqual({
      code: 1,
      stdout: "",
      stderr: expect.stringMatching(/^polarity: cannot reach the gateway at http:\/\/127\.0\.0\.1:9: .+\n$/),
    })
    const unknown = await polarity(["frobnicate"])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toStartWith('polarity: unknown command "frobnicate"')
    expect(await polarity(["status"])).toEqual({
      code: 1,
      stdout: "",
      stderr: "polarity: status needs a task id\n",
    })
    const help = await polarity(["help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("polarity pause|resume|purge QUEUE")
  })
})
