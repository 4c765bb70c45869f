#!/usr/bin/env node
// polarity: the command line over the gateway's REST API (`npx polarity help`). Plain JavaScript on Node 20 or
// later, Bun or Deno, with nothing but the platform (fetch, util.parseArgs): it runs where the project is installed
// with `npm ci --omit=dev`, without a build step or a TypeScript runtime.
import process from "node:process"
import { parseArgs } from "node:util"

const USAGE = `polarity: the sentiment-polarity API from the command line

  polarity submit "text" [--document] [--language en|ru] [--priority 0-9] [--wait]
  polarity status ID
  polarity watch ID                    follow a task live, with a progress bar
  polarity cancel ID [--terminate]     revoke a task; --terminate stops a running one too
  polarity workers                     the workers, pinged (admin)
  polarity queues                      the work queues (admin)
  polarity pause|resume|purge QUEUE    polarity or default (admin)

Options (or the environment):
  --url URL             the gateway (POLARITY_URL; http://localhost:9000)
  --api-key KEY         an API key, when the gateway requires one (POLARITY_API_KEY)
  --admin-token TOKEN   for the admin commands: ADMIN_TOKEN or an admin API key (POLARITY_ADMIN_TOKEN)
  --json                the API's JSON as it answers, one document (watch: one event) a line, for scripts

Exit status: 0 when it worked (watch and submit --wait: the task ended SUCCESS), 1 otherwise.`

const OPTIONS = {
  url: { type: "string" },
  "api-key": { type: "string" },
  "admin-token": { type: "string" },
  json: { type: "boolean", default: false },
  wait: { type: "boolean", default: false },
  document: { type: "boolean", default: false },
  language: { type: "string" },
  priority: { type: "string" },
  terminate: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
}

const FINAL = new Set(["SUCCESS", "FAILURE", "EXPIRED", "REVOKED"])
const QUEUES = ["polarity", "default"]

/** A failure to report in one line: the API's problem detail, or why the gateway could not be reached. */
class CliError extends Error {}

function settings(values) {
  const env = process.env
  return {
    base: (values.url ?? env.POLARITY_URL ?? "http://localhost:9000").replace(/\/+$/, ""),
    apiKey: values["api-key"] ?? env.POLARITY_API_KEY,
    adminToken: values["admin-token"] ?? env.POLARITY_ADMIN_TOKEN,
    json: values.json,
  }
}

/** A request to the API; a problem+json answer becomes a CliError with its status and detail. */
async function call(cli, method, path, { body, admin = false, accept } = {}) {
  const secret = admin ? (cli.adminToken ?? cli.apiKey) : cli.apiKey
  const headers = {
    ...(secret && { authorization: `Bearer ${secret}` }),
    ...(body !== undefined && { "content-type": "application/json" }),
    ...(accept && { accept }),
  }
  let res
  try {
    res = await fetch(`${cli.base}${path}`, {
      method,
      headers,
      ...(body !== undefined && { body: JSON.stringify(body) }),
    })
  } catch (err) {
    throw new CliError(`cannot reach the gateway at ${cli.base}: ${err.cause?.message ?? err.message}`)
  }
  if (res.ok) return res
  const problem = await res.json().catch(() => null)
  const detail = problem?.detail ?? res.statusText
  const hint =
    res.status === 401
      ? admin
        ? " (set POLARITY_ADMIN_TOKEN or --admin-token)"
        : " (set POLARITY_API_KEY or --api-key)"
      : ""
  throw new CliError(`${res.status} ${problem?.title ?? ""}: ${detail}${hint}`.replace(" :", ":"))
}

const callJson = async (cli, method, path, options) => (await call(cli, method, path, options)).json()

function print(cli, value, readable) {
  process.stdout.write(`${cli.json ? JSON.stringify(value) : readable(value)}\n`)
}

/** `polarity: positive (score 3)`, a document's totals, or the result as JSON for other kinds. */
function describeResult(result) {
  if (result === null || result === undefined) return null
  if (typeof result.polarity === "string" && typeof result.score === "number") {
    const sentences = Array.isArray(result.sentences) ? `, ${result.sentences.length} sentences` : ""
    return `${result.polarity} (score ${result.score}${sentences}${result.language ? `, ${result.language}` : ""})`
  }
  return JSON.stringify(result)
}

function describeTask(task) {
  const rows = [
    ["task", task.task_id],
    ["kind", task.kind],
    ["status", task.status],
    ["attempts", task.attempts],
    ["result", describeResult(task.result)],
    ["error", task.error],
    ["progress", task.progress ? progressText(task.progress) : null],
    ["submitted", task.submitted_at],
    ["finished", task.finished_at],
  ]
  return rows
    .filter(([, value]) => value !== null && value !== undefined)
    .map(([label, value]) => `${label.padEnd(10)}${value}`)
    .join("\n")
}

function progressText({ done, total, message }) {
  return `${done}/${total}${message ? ` ${message}` : ""}`
}

/** `[########------------]  40%  4/10 sentences`, fitted to the terminal. */
function progressBar(progress) {
  // A pseudo-terminal that was never sized says 0 columns.
  const columns = process.stdout.columns || 80
  const share = progress.total > 0 ? Math.min(1, progress.done / progress.total) : 0
  const width = Math.max(10, Math.min(40, columns - 30))
  const filled = Math.round(share * width)
  const line = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.round(share * 100)).padStart(3)}%  ${progressText(progress)}`
  return line.slice(0, columns - 1)
}

/** Table of rows (arrays of strings) under a header, columns padded to their widest cell. */
function table(header, rows) {
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((row) => String(row[i]).length)))
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, i) => String(cell).padEnd(widths[i]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")
}

/** The Server-Sent Events of a response, each as {event, data}; comment lines are skipped. */
async function* serverSentEvents(res) {
  const decoder = new TextDecoder()
  let buffered = ""
  for await (const chunk of res.body) {
    buffered += decoder.decode(chunk, { stream: true }).replaceAll("\r\n", "\n")
    for (let end = buffered.indexOf("\n\n"); end >= 0; end = buffered.indexOf("\n\n")) {
      const block = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      const lines = block.split("\n").filter((line) => !line.startsWith(":"))
      if (lines.length === 0) continue
      const field = (name) =>
        lines
          .filter((line) => line.startsWith(`${name}:`))
          .map((line) => line.slice(name.length + 1).replace(/^ /, ""))
          .join("\n")
      yield { event: field("event") || "message", data: JSON.parse(field("data") || "null") }
    }
  }
}

/**
 * Follow a task until it is final: a live progress bar on a terminal (a line per state otherwise); with --json,
 * each event as a line `{"event", "data"}`. The task's final record, or the last one seen if the stream ended.
 */
async function follow(cli, taskId, { quiet = false } = {}) {
  const res = await call(cli, "GET", `/polarities/tasks/${encodeURIComponent(taskId)}/events`, {
    accept: "text/event-stream",
  })
  const live = process.stdout.isTTY && !cli.json
  let last = null
  let barShown = false
  const clearBar = () => {
    if (barShown) process.stdout.write("\r\x1b[2K")
    barShown = false
  }
  for await (const { event, data } of serverSentEvents(res)) {
    if (quiet) {
      // Only the final record is printed.
    } else if (cli.json) {
      process.stdout.write(`${JSON.stringify({ event, data })}\n`)
    } else if (event === "progress") {
      if (live) {
        process.stdout.write(`\r\x1b[2K${progressBar(data)}`)
        barShown = true
      } else process.stdout.write(`progress  ${progressText(data)}\n`)
    } else {
      clearBar()
      process.stdout.write(`${data.status.padEnd(9)} ${new Date().toISOString()}\n`)
    }
    if (event !== "progress") last = data
    if (last && FINAL.has(last.status)) break
  }
  clearBar()
  return last
}

function readPriority(raw) {
  if (raw === undefined) return undefined
  const priority = Number(raw)
  if (!Number.isInteger(priority) || priority < 0 || priority > 9) {
    throw new CliError(`--priority must be a whole number from 0 to 9, not "${raw}"`)
  }
  return priority
}

async function submit(cli, [text], values) {
  if (!text) throw new CliError('submit needs the text: polarity submit "What a lovely day"')
  const priority = readPriority(values.priority)
  const body = {
    ...(values.document ? { document: text } : { review: text }),
    ...(values.language && { language: values.language }),
    ...(priority !== undefined && { priority }),
  }
  const accepted = await callJson(cli, "POST", values.document ? "/polarities/documents" : "/polarities", {
    body,
  })
  if (!values.wait) {
    print(cli, accepted, (a) => `${a.task_id}  ${a.status}`)
    return true
  }
  if (!cli.json) process.stdout.write(`${accepted.task_id}\n`)
  // With --json, one document: the final record.
  await follow(cli, accepted.task_id, { quiet: cli.json })
  return finalRecord(cli, accepted.task_id)
}

/** The task's record printed; true when it ended SUCCESS. */
async function finalRecord(cli, taskId) {
  const task = await callJson(cli, "GET", `/polarities/tasks/${encodeURIComponent(taskId)}`)
  print(cli, task, describeTask)
  return task.status === "SUCCESS"
}

const COMMANDS = {
  submit,
  async status(cli, [taskId]) {
    if (!taskId) throw new CliError("status needs a task id")
    const task = await callJson(cli, "GET", `/polarities/tasks/${encodeURIComponent(taskId)}`)
    print(cli, task, describeTask)
    return true
  },
  async watch(cli, [taskId]) {
    if (!taskId) throw new CliError("watch needs a task id")
    const last = await follow(cli, taskId)
    if (cli.json) return last?.status === "SUCCESS"
    return finalRecord(cli, taskId)
  },
  async cancel(cli, [taskId], values) {
    if (!taskId) throw new CliError("cancel needs a task id")
    const query = values.terminate ? "?terminate=true" : ""
    const task = await callJson(cli, "DELETE", `/polarities/tasks/${encodeURIComponent(taskId)}${query}`)
    print(cli, task, describeTask)
    return true
  },
  async workers(cli) {
    const { workers } = await callJson(cli, "GET", "/admin/workers", { admin: true })
    print(cli, { workers }, () =>
      workers.length === 0
        ? "no worker has sent a heartbeat"
        : table(
            ["worker", "status", "queues", "in hand", "succeeded", "failed", "ping"],
            workers.map((w) => [
              w.worker,
              w.status,
              (w.queues ?? []).join(","),
              w.in_hand ?? "",
              w.succeeded ?? "",
              w.failed ?? "",
              w.ping_ms === null ? "–" : `${w.ping_ms} ms`,
            ]),
          ),
    )
    return true
  },
  async queues(cli) {
    const answer = await callJson(cli, "GET", "/admin/queues", { admin: true })
    print(cli, answer, ({ queues }) =>
      table(
        ["queue", "state", "messages", "consumers", "since"],
        queues.map((q) => [
          q.queue,
          q.paused ? "paused" : "running",
          q.messages ?? "?",
          q.consumers ?? "?",
          q.changed_at ?? "",
        ]),
      ),
    )
    return true
  },
}

for (const action of ["pause", "resume", "purge"]) {
  COMMANDS[action] = async (cli, [queue]) => {
    if (!QUEUES.includes(queue)) throw new CliError(`${action} needs a queue: ${QUEUES.join(" or ")}`)
    const answer = await callJson(cli, "POST", `/admin/queues/${queue}/${action}`, { admin: true })
    print(cli, answer, (a) =>
      action === "purge"
        ? `${a.queue}: ${a.messages_purged} messages purged, ${a.tasks_revoked} tasks revoked (purged)`
        : `${a.queue} ${a.paused ? "paused" : "resumed"}`,
    )
    return true
  }
}

async function main(argv) {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true })
  } catch (err) {
    throw new CliError(`${err.message}\n\n${USAGE}`)
  }
  const { values, positionals } = parsed
  const [command, ...args] = positionals
  if (values.help || !command || command === "help") {
    process.stdout.write(`${USAGE}\n`)
    return command !== undefined || values.help
  }
  const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined
  if (!run) throw new CliError(`unknown command "${command}"\n\n${USAGE}`)
  return run(settings(values), args, values)
}

main(process.argv.slice(2)).then(
  (ok) => {
    process.exitCode = ok ? 0 : 1
  },
  (err) => {
    process.stderr.write(`polarity: ${err instanceof CliError ? err.message : err.stack}\n`)
    process.exitCode = 1
  },
)
