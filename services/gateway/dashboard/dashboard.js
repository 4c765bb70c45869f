// The dashboard's script: one live stream (Server-Sent Events) for the figures, workers and queues; the task table
// and a task's detail read on demand. Every text from a task goes in with textContent, never as HTML.
/* global uPlot */

const STATUSES = ["SCHEDULED", "PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "EXPIRED", "REVOKED"]
const CANCELLABLE = new Set(["SCHEDULED", "PENDING", "RETRY"])
/** A task in these states may still change: its open detail follows it live. */
const UNFINISHED = new Set(["SCHEDULED", "PENDING", "STARTED", "RETRY"])
const RETRYABLE = new Set(["FAILURE", "EXPIRED", "REVOKED"])
/** What the stream sends; the chart shows the last minute, 5 or 10 minutes of it. */
const SERIES_SECONDS = 600
const PAGE_SIZE = 25

const $ = (selector) => document.querySelector(selector)
const url = (path) => new URL(path, document.baseURI)

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value)
    else if (key === "className") node.className = value
    else node.setAttribute(key, value)
  }
  for (const child of children) node.append(child ?? "")
  return node
}

const number = new Intl.NumberFormat("en")
const decimal = new Intl.NumberFormat("en", { maximumFractionDigits: 1 })

function duration(ms) {
  if (ms === null || ms === undefined) return "–"
  if (ms < 1) return "<1 ms"
  if (ms < 1000) return `${decimal.format(ms)} ms`
  if (ms < 60_000) return `${decimal.format(ms / 1000)} s`
  return `${decimal.format(ms / 60_000)} min`
}

function ago(iso) {
  if (!iso) return "–"
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  if (seconds < 60) return `${seconds} s ago`
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`
  return new Date(iso).toLocaleString()
}

const time = (iso) => (iso ? element("time", { datetime: iso, title: iso }, ago(iso)) : "–")
const badge = (status) => element("span", { className: `badge status-${status}` }, status)

async function fetchJson(path, init) {
  const res = await fetch(url(path), init)
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : null
  if (!res.ok)
    throw Object.assign(new Error(body?.detail ?? `${res.status} ${res.statusText}`), { status: res.status })
  return body
}

// --- figures, workers and queues, from the live stream

const series = new Map()
let chart

function mergeSeries({ t, submitted, succeeded, failed, retried }) {
  t.forEach((second, i) => {
    series.set(second, [succeeded[i], failed[i], submitted[i], retried[i]])
  })
}

let lastDrawn = Date.now()

function chartData(now) {
  const last = Math.floor(now / 1000)
  const span = Number($("#chart-window").value)
  const columns = [[], [], [], [], []]
  for (let second = last - span + 1; second <= last; second++) {
    const values = series.get(second) ?? [0, 0, 0, 0]
    columns[0].push(second)
    values.forEach((value, i) => {
      columns[i + 1].push(value)
    })
  }
  for (const second of series.keys()) if (second <= last - SERIES_SECONDS) series.delete(second)
  return columns
}

function drawChart(now) {
  lastDrawn = now
  const data = chartData(now)
  const target = $("#chart")
  if (!chart) {
    const line = (label, stroke) => ({ label, stroke, width: 1.5, points: { show: false } })
    chart = new uPlot(
      {
        width: target.clientWidth || 600,
        height: 200,
        series: [
          {},
          line("completed/s", "#15803d"),
          line("failed/s", "#b91c1c"),
          line("submitted/s", "#2563eb"),
          line("retried/s", "#d97706"),
        ],
        axes: [{}, { size: 60 }],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      },
      data,
      target,
    )
    window.addEventListener("resize", () => chart.setSize({ width: target.clientWidth, height: 200 }))
    $("#chart-window").addEventListener("change", () => drawChart(lastDrawn))
  } else {
    chart.setData(data)
  }
}

function renderStats(stats) {
  for (const status of STATUSES) $(`#count-${status}`).textContent = number.format(stats.counts[status])
  for (const name of ["succeeded", "failed", "submitted", "retried"]) {
    $(`#rate-${name}`).textContent = decimal.format(stats.rates[name])
  }
  $("#rate-window").textContent = `over the last ${stats.rates.window_s} s`
  $("#latency-window").textContent = `of tasks ended in the last ${stats.latency.window_s / 60} min`
  for (const phase of ["wait", "run", "total"]) {
    const figures = stats.latency[phase]
    const cells = document.querySelectorAll(`#latency tr[data-phase="${phase}"] td`)
    const values = figures ? [figures.p50, figures.p90, figures.p99].map(duration) : ["–", "–", "–"]
    values.push(figures ? number.format(figures.count) : "0")
    values.forEach((value, i) => {
      cells[i].textContent = value
    })
  }
  mergeSeries(stats.series)
  drawChart(Date.parse(stats.at))
}

// --- workers: their heartbeats from the live stream; ping, tasks in hand, shutdown and pool size by remote control

/** The last ping's answer per worker (milliseconds, or null for no answer), kept across the stream's renders. */
const pings = new Map()
let lastWorkers = []

/** A pool's processes right after their supervisor; a worker's name says what it is in a pool. */
function workerOrder(workers) {
  const supervisorOf = (w) => w.supervisor ?? w.worker
  return [...workers].sort(
    (a, b) =>
      supervisorOf(a).localeCompare(supervisorOf(b)) ||
      Number(Boolean(a.supervisor)) - Number(Boolean(b.supervisor)) ||
      a.worker.localeCompare(b.worker),
  )
}

function workerName(w) {
  if (w.pool) {
    const { min, max, processes } = w.pool
    return [w.worker, element("span", { className: "muted" }, ` pool of ${processes.length} (${min}–${max})`)]
  }
  return w.supervisor ? ["↳ ", w.worker] : [w.worker]
}

function workerActions(w) {
  if (w.status !== "online") return element("td", {})
  const button = (action, label, title) =>
    element("button", { type: "button", dataset: { workerAction: action }, title }, label)
  return element(
    "td",
    { className: "row-actions" },
    button("active", "tasks", "the tasks it holds now"),
    ...(w.pool
      ? [button("grow", "+1", "start one more process"), button("shrink", "−1", "stop one process")]
      : []),
    button("shutdown", "stop", "finish the tasks in hand, then stop"),
  )
}

function renderWorkers(workers) {
  lastWorkers = workers
  const body = $("#workers tbody")
  const online = workers.filter((w) => w.status === "online").length
  $("#workers-summary").textContent = `${online} online of ${workers.length}`
  if (workers.length === 0) return
  body.replaceChildren(
    ...workerOrder(workers).map((w) => {
      const ping = pings.has(w.worker)
        ? pings.get(w.worker) === null
          ? "no answer"
          : duration(pings.get(w.worker))
        : "–"
      return element(
        "tr",
        { dataset: { worker: w.worker, status: w.status } },
        element(
          "td",
          { className: "id", title: `host ${w.host}, pid ${w.pid}, up since ${w.started_at}` },
          ...workerName(w),
        ),
        element("td", {}, element("span", { className: `badge ${w.status}` }, w.status)),
        element("td", {}, (w.queues ?? []).join(", ") || "–"),
        element("td", { className: "number" }, String(w.prefetch)),
        element("td", { className: "number" }, number.format(w.in_hand)),
        element("td", { className: "number" }, number.format(w.succeeded)),
        element("td", { className: "number" }, number.format(w.failed)),
        element("td", { className: "number" }, number.format(w.retried)),
        element("td", {}, time(w.last_heartbeat_at)),
        element("td", { className: "number ping" }, ping),
        workerActions(w),
      )
    }),
  )
}

// --- schedules: read every few seconds (they change rarely; their last and next runs move on their own)

const SCHEDULES_REFRESH_MS = 5000

const whenOf = (s) => (s.every !== null ? `every ${number.format(s.every)} s` : `${s.cron} (${s.timezone})`)

/** A time ahead, as "in 5 s", or behind as `ago` says it. */
function until(iso) {
  if (!iso) return "–"
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000)
  if (seconds < 0) return ago(iso)
  const text =
    seconds < 60
      ? `in ${seconds} s`
      : seconds < 3600
        ? `in ${Math.round(seconds / 60)} min`
        : new Date(iso).toLocaleString()
  return element("time", { datetime: iso, title: iso }, text)
}

function renderSchedules(schedules) {
  const paused = schedules.filter((s) => s.paused).length
  $("#schedules-summary").textContent = `${schedules.length}${paused ? `, ${paused} paused` : ""}`
  if (schedules.length === 0) return
  $("#schedules tbody").replaceChildren(
    ...schedules.map((s) =>
      element(
        "tr",
        { dataset: { schedule: s.id } },
        element("td", { className: "id", title: s.from_file ? "from SCHEDULES_FILE" : "" }, s.id),
        element("td", {}, whenOf(s)),
        element("td", {}, s.task.kind),
        element("td", {}, s.missed),
        element("td", {}, s.last_task_id ? taskLink(s.last_task_id, time(s.last_run_at)) : "–"),
        element(
          "td",
          {},
          s.paused ? element("span", { className: "badge offline" }, "paused") : until(s.next_run_at),
        ),
      ),
    ),
  )
}

/** A link that opens a task's detail. */
function taskLink(taskId, content) {
  const link = element("a", { href: `#task=${taskId}` }, content)
  link.addEventListener("click", (event) => {
    event.preventDefault()
    openDetail(taskId)
  })
  return link
}

// --- the polarity share over time, from the latest polarity reports (each one a point at the end of its window)

let polarityChart

function renderPolarity(reports) {
  const points = reports
    .map((task) => task.result)
    .filter((report) => report && report.tasks > 0)
    .toSorted((a, b) => Date.parse(a.to) - Date.parse(b.to))
  $("#polarity-empty").hidden = points.length > 0
  const share = (side) => points.map((r) => Math.round((1000 * r.counts[side]) / r.tasks) / 10)
  const data = [
    points.map((r) => Date.parse(r.to) / 1000),
    share("positive"),
    share("negative"),
    share("neutral"),
  ]
  const target = $("#polarity-chart")
  if (polarityChart) return polarityChart.setData(data)
  const line = (label, stroke) => ({
    label,
    stroke,
    width: 1.5,
    value: (_u, v) => (v == null ? "–" : `${v} %`),
  })
  polarityChart = new uPlot(
    {
      width: target.clientWidth || 600,
      height: 160,
      series: [{}, line("positive", "#15803d"), line("negative", "#b91c1c"), line("neutral", "#64748b")],
      axes: [{}, { size: 50, values: (_u, ticks) => ticks.map((t) => `${t} %`) }],
      scales: { y: { range: [0, 100] } },
    },
    data,
    target,
  )
  window.addEventListener("resize", () => polarityChart.setSize({ width: target.clientWidth, height: 160 }))
}

async function loadReports() {
  try {
    renderPolarity((await fetchJson("dashboard/api/reports")).tasks)
  } catch {
    // As for the schedules: the live stream tells that the store is away.
  }
}

async function loadSchedules() {
  try {
    renderSchedules((await fetchJson("dashboard/api/schedules")).schedules)
  } catch {
    // The live stream reports the store being away; the table keeps what it last showed.
  }
}

const workerPath = (workerId) => `dashboard/api/workers/${encodeURIComponent(workerId)}`

async function pingWorkers() {
  const message = $("#worker-message")
  message.textContent = "pinging…"
  try {
    const { workers } = await fetchJson("dashboard/api/workers")
    pings.clear()
    for (const w of workers) pings.set(w.worker, w.ping_ms)
    const answered = workers.filter((w) => w.ping_ms !== null).length
    message.textContent = `${answered} of ${workers.length} answered`
    renderWorkers(lastWorkers)
  } catch (err) {
    message.textContent = err.message
  }
}

async function showWorkerTasks(workerId) {
  const { tasks } = await fetchJson(`${workerPath(workerId)}/active`)
  $("#worker-tasks-id").textContent = workerId
  $("#worker-tasks tbody").replaceChildren(
    ...(tasks.length === 0
      ? [element("tr", { className: "empty" }, element("td", { colspan: "5" }, "nothing in hand"))]
      : tasks.map((task) =>
          element(
            "tr",
            { dataset: { taskId: task.task_id } },
            element("td", { className: "id" }, task.task_id),
            element("td", {}, task.kind),
            element("td", { className: "number" }, String(task.attempt)),
            element("td", {}, task.queue),
            element(
              "td",
              { className: "number" },
              task.running_ms === null ? "waiting" : duration(task.running_ms),
            ),
          ),
        )),
  )
  $("#worker-tasks").hidden = false
}

async function workerAction(action, workerId) {
  const message = $("#worker-message")
  try {
    if (action === "active") return await showWorkerTasks(workerId)
    if (action === "shutdown") {
      if (!confirm(`Stop ${workerId} once its tasks in hand are done?`)) return
      await fetchJson(`${workerPath(workerId)}/shutdown`, { method: "POST" })
      message.textContent = `${workerId} is stopping`
      return
    }
    const { pool } = await fetchJson(`${workerPath(workerId)}/pool/${action}`, { method: "POST" })
    const count = pool.processes.length
    message.textContent = `${workerId}: ${count} ${count === 1 ? "process" : "processes"}`
  } catch (err) {
    message.textContent = err.message
  }
}

function setUpWorkers() {
  $("#ping").addEventListener("click", pingWorkers)
  $("#workers tbody").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-worker-action]")
    if (button) workerAction(button.dataset.workerAction, button.closest("tr").dataset.worker)
  })
}

/** The part of the names that every queue shares (the deployment's AMQP_PREFIX), shown once in the title. */
function commonPrefix(names) {
  if (names.length === 0) return ""
  let prefix = names[0]
  for (const name of names) while (!name.startsWith(prefix)) prefix = prefix.slice(0, -1)
  return prefix.slice(0, prefix.lastIndexOf(".") + 1)
}

/** The delay ladder's wait queues (`<prefix>delay.level<k>.<ms>ms`) shown as one row: messages waiting in all. */
function foldDelayLadder(queues) {
  const ladder = queues.filter((q) => /delay\.level\d+\.\d+ms$/.test(q.name))
  if (ladder.length === 0) return queues
  const sum = (field) =>
    ladder.every((q) => q[field] === null) ? null : ladder.reduce((total, q) => total + (q[field] ?? 0), 0)
  const folded = {
    name: ladder[0].name.replace(/level\d+\.\d+ms$/, `ladder (${ladder.length} wait queues)`),
    messages: sum("messages"),
    consumers: 0,
    dead_letter: false,
    publish_rate: sum("publish_rate"),
    deliver_rate: sum("deliver_rate"),
    net_rate: sum("net_rate"),
  }
  const first = queues.indexOf(ladder[0])
  const rest = queues.filter((q) => !ladder.includes(q))
  return [...rest.slice(0, first), folded, ...rest.slice(first)]
}

/** A work queue's pause, resume and purge buttons; nothing for the other queues. */
function queueActions(taskQueue) {
  if (!taskQueue) return element("td", {})
  const button = (action, label, title) =>
    element("button", { type: "button", dataset: { queueAction: action }, title }, label)
  return element(
    "td",
    { className: "row-actions" },
    taskQueue.paused
      ? button("resume", "resume", "workers consume it again")
      : button("pause", "pause", "every worker stops consuming it; tasks wait"),
    button("purge", "purge", "its waiting tasks end REVOKED (purged)"),
  )
}

async function queueAction(action, queue) {
  const message = $("#queue-message")
  try {
    if (
      action === "purge" &&
      !confirm(`Purge queue ${queue}? Every task of it that has not started ends REVOKED.`)
    )
      return
    const answer = await fetchJson(`dashboard/api/queues/${queue}/${action}`, { method: "POST" })
    message.textContent =
      action === "purge"
        ? `${queue}: ${answer.messages_purged} messages purged, ${answer.tasks_revoked} tasks revoked`
        : `${queue} ${answer.paused ? "paused" : "resumed"}`
  } catch (err) {
    message.textContent = err.message
  }
}

function renderQueues(report, taskQueues = []) {
  const management = report.source === "management"
  const prefix = commonPrefix(report.queues.map((q) => q.name))
  $("#queue-source").textContent = management
    ? "rates from the RabbitMQ management API"
    : "rates: change in depth per second (set RABBITMQ_MANAGEMENT_URL for publish and deliver rates)"
  $("#queue-prefix").textContent = prefix ? `prefix ${prefix}` : ""
  $("#rate-head-1").textContent = management ? "in/s" : "net/s"
  $("#rate-head-2").textContent = management ? "out/s" : ""
  const rate = (value) => (value === null ? "–" : decimal.format(value))
  const taskQueueOf = (q) => taskQueues.find((t) => t.work_queue === q.name)
  $("#queues tbody").replaceChildren(
    ...foldDelayLadder(report.queues).map((q) =>
      element(
        "tr",
        {
          dataset: { queue: q.name, ...(taskQueueOf(q) && { route: taskQueueOf(q).queue }) },
          className: `${q.dead_letter ? "dead-letter" : ""} ${q.messages > 0 ? "has-messages" : ""} ${taskQueueOf(q)?.paused ? "paused" : ""}`,
        },
        element(
          "td",
          { className: "id", title: q.name },
          q.name.slice(prefix.length),
          ...(taskQueueOf(q)?.paused ? [" ", element("span", { className: "badge" }, "paused")] : []),
        ),
        element("td", { className: "number" }, number.format(q.messages)),
        element("td", { className: "number" }, String(q.consumers)),
        element("td", { className: "number" }, rate(management ? q.publish_rate : q.net_rate)),
        element("td", { className: "number" }, management ? rate(q.deliver_rate) : ""),
        queueActions(taskQueueOf(q)),
      ),
    ),
  )
}

function setLive(state, text) {
  $("#live").dataset.state = state
  $("#live").textContent = text
}

function connect() {
  const source = new EventSource(url("dashboard/api/stream"))
  source.addEventListener("open", () => setLive("live", "live"))
  source.addEventListener("error", () => setLive("down", "reconnecting…"))
  source.addEventListener("overview", (e) => {
    const { stats, workers, queues, task_queues } = JSON.parse(e.data)
    renderStats(stats)
    renderWorkers(workers)
    renderQueues(queues, task_queues)
    $("#problem").hidden = true
    $("#updated").textContent = `updated ${new Date(stats.at).toLocaleTimeString()}`
  })
  source.addEventListener("problem", (e) => {
    $("#problem").hidden = false
    $("#problem").textContent = JSON.parse(e.data).detail
  })
  source.addEventListener("tasks", () => scheduleTableRefresh())
}

// --- the task table: filters, pages by cursor, refreshed when tasks change

const table = { cursors: [], cursor: null, next: null, refreshTimer: undefined }

function filterParams() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) })
  const status = $("#filter-status").value
  const kind = $("#filter-kind").value
  const q = $("#filter-id").value.trim().toLowerCase()
  if (status) params.set("status", status)
  if (kind) params.set("kind", kind)
  if (q) params.set("q", q)
  if (table.cursor) params.set("cursor", table.cursor)
  return params
}

function tookMs(task) {
  const from = task.submitted_at ?? task.started_at
  return from && task.finished_at ? Date.parse(task.finished_at) - Date.parse(from) : null
}

function taskRow(task) {
  const row = element(
    "tr",
    { dataset: { taskId: task.task_id, status: task.status } },
    element("td", { className: "id", title: task.task_id }, task.task_id),
    element("td", {}, task.kind ?? "–"),
    element("td", {}, badge(task.status)),
    element("td", { className: "number" }, String(task.attempts)),
    element("td", {}, time(task.submitted_at)),
    element("td", { className: "number" }, duration(tookMs(task))),
    element("td", { className: "error", title: task.error ?? "" }, task.error ?? ""),
  )
  row.addEventListener("click", () => openDetail(task.task_id))
  return row
}

async function loadTasks() {
  const problem = $("#filter-problem")
  try {
    const page = await fetchJson(`dashboard/api/tasks?${filterParams()}`)
    problem.hidden = true
    table.next = page.next_cursor
    const rows = page.tasks.map(taskRow)
    if (rows.length === 0)
      rows.push(element("tr", { className: "empty" }, element("td", { colspan: "7" }, "no tasks")))
    $("#tasks tbody").replaceChildren(...rows)
  } catch (err) {
    problem.hidden = false
    problem.textContent = err.message
  }
  $("#older").disabled = !table.next
  $("#newer").disabled = table.cursors.length === 0
  $("#newest").disabled = table.cursors.length === 0
}

function scheduleTableRefresh() {
  table.refreshTimer ??= setTimeout(() => {
    table.refreshTimer = undefined
    loadTasks()
    if ($("#detail").open) showDetail($("#detail").dataset.taskId)
  }, 300)
}

function restartTable() {
  table.cursors = []
  table.cursor = null
  loadTasks()
}

function setUpTable() {
  $("#filter-status").addEventListener("change", restartTable)
  $("#filter-kind").addEventListener("change", restartTable)
  let typing
  $("#filter-id").addEventListener("input", () => {
    clearTimeout(typing)
    typing = setTimeout(restartTable, 250)
  })
  $("#filters").addEventListener("submit", (e) => e.preventDefault())
  $("#older").addEventListener("click", () => {
    table.cursors.push(table.cursor)
    table.cursor = table.next
    loadTasks()
  })
  $("#newer").addEventListener("click", () => {
    table.cursor = table.cursors.pop() ?? null
    loadTasks()
  })
  $("#newest").addEventListener("click", restartTable)
}

// --- a task's detail, and the actions on it

function definitions(pairs) {
  return element(
    "dl",
    {},
    ...pairs.flatMap(([term, value]) => [element("dt", {}, term), element("dd", {}, value)]),
  )
}

function words(list) {
  return list.length > 0 ? list.join(", ") : "–"
}

function resultView(result) {
  if (!result) return null
  if ("sentences" in result) {
    return element(
      "div",
      {},
      definitions([
        ["polarity", result.polarity],
        ["score", String(result.score)],
        ["language", result.language],
        [
          "sentences",
          `${result.sentence_counts.positive} positive, ${result.sentence_counts.negative} negative, ${result.sentence_counts.neutral} neutral`,
        ],
      ]),
      element(
        "table",
        {},
        element(
          "thead",
          {},
          element(
            "tr",
            {},
            element("th", {}, "sentence"),
            element("th", {}, "polarity"),
            element("th", {}, "score"),
          ),
        ),
        element(
          "tbody",
          {},
          ...result.sentences.map((s) =>
            element(
              "tr",
              {},
              element("td", {}, s.text),
              element("td", {}, s.polarity),
              element("td", {}, String(s.score)),
            ),
          ),
        ),
      ),
    )
  }
  if ("positive" in result) {
    return definitions([
      ["polarity", result.polarity],
      ["score", `${result.score} (comparative ${decimal.format(result.comparative)})`],
      ["language", result.language],
      ["positive words", words(result.positive)],
      ["negative words", words(result.negative)],
    ])
  }
  return element("pre", { className: "text" }, JSON.stringify(result, null, 2))
}

function inputView(input) {
  if (!input) return null
  const { review, document: text, ...options } = input
  const shown = review ?? text
  return element(
    "div",
    {},
    shown === undefined ? "" : element("div", { className: "text", id: "detail-text" }, shown),
    Object.keys(options).length > 0
      ? definitions(Object.entries(options).map(([k, v]) => [k, JSON.stringify(v)]))
      : "",
  )
}

/** A completion webhook's attempt, after the task's states. */
function webhookEntry({ at, webhook }) {
  const parts = [
    `${new Date(at).toLocaleTimeString()} webhook `,
    badge(webhook.outcome),
    ` attempt ${webhook.attempt}`,
  ]
  if (webhook.status_code !== null) parts.push(`, HTTP ${webhook.status_code}`)
  if (webhook.next_attempt_at)
    parts.push(`, next attempt ${new Date(webhook.next_attempt_at).toLocaleTimeString()}`)
  if (webhook.error) parts.push(element("div", { className: "error-text" }, webhook.error))
  return element("li", { dataset: { webhook: webhook.outcome } }, ...parts)
}

function timelineView(timeline, webhooks = []) {
  return element(
    "ol",
    { id: "detail-timeline" },
    ...timeline.map((entry) => {
      const parts = [
        `${new Date(entry.at).toLocaleTimeString()} `,
        badge(entry.state),
        ` attempt ${entry.attempt}`,
      ]
      if (entry.run > 1) parts.push(`, run ${entry.run}`)
      if (entry.worker) parts.push(` on ${entry.worker}`)
      if (entry.started_at && entry.state !== "STARTED")
        parts.push(`, started ${new Date(entry.started_at).toLocaleTimeString()}`)
      if (entry.retry_at) parts.push(`, next attempt ${new Date(entry.retry_at).toLocaleTimeString()}`)
      if (entry.error) parts.push(element("div", { className: "error-text" }, entry.error))
      return element("li", { dataset: { state: entry.state } }, ...parts)
    }),
    ...webhooks.map(webhookEntry),
  )
}

/** A progress bar with "done / total (percent)" and the task's message. */
function progressView(progress) {
  const percent = Math.floor((progress.done / progress.total) * 100)
  const label = `${number.format(progress.done)} / ${number.format(progress.total)} (${percent} %)`
  return element(
    "div",
    { id: "detail-progress", dataset: { done: String(progress.done), total: String(progress.total) } },
    element("progress", { value: String(progress.done), max: String(progress.total) }),
    element("span", {}, progress.message ? `${label} · ${progress.message}` : label),
  )
}

function renderProgress(progress) {
  const shown = $("#detail-progress")
  if (shown) shown.replaceWith(progressView(progress))
  else $("#detail-body").prepend(element("h3", {}, "Progress"), progressView(progress))
}

// While a task may still change, its detail follows the task's own event stream: progress moves the bar, and a
// new state reads the whole detail again.
let followed

function follow(taskId, status) {
  if (followed?.taskId === taskId && UNFINISHED.has(status)) return
  followed?.source.close()
  followed = undefined
  // A detail closed while it was being read follows nothing.
  if (!UNFINISHED.has(status) || $("#detail").dataset.taskId !== taskId) return
  const source = new EventSource(url(`dashboard/api/tasks/${encodeURIComponent(taskId)}/events`))
  followed = { taskId, source }
  source.addEventListener("progress", (e) => renderProgress(JSON.parse(e.data)))
  for (const state of STATUSES) {
    source.addEventListener(state, () => {
      if ($("#detail").dataset.status !== state) showDetail(taskId)
    })
  }
}

async function showDetail(taskId) {
  const dialog = $("#detail")
  dialog.dataset.taskId = taskId
  let detail
  try {
    detail = await fetchJson(`dashboard/api/tasks/${encodeURIComponent(taskId)}`)
  } catch (err) {
    $("#detail-body").replaceChildren(element("p", { className: "problem" }, err.message))
    return
  }
  const { task, input, timeline, webhooks } = detail
  dialog.dataset.status = task.status
  $("#detail-title").replaceChildren("Task ", badge(task.status))
  const section = (title, content) => (content ? [element("h3", {}, title), content] : [])
  $("#detail-body").replaceChildren(
    ...section("Progress", task.progress ? progressView(task.progress) : null),
    definitions([
      ["id", element("code", { id: "detail-id" }, task.task_id)],
      ["kind", task.kind ?? "–"],
      ["attempts", String(task.attempts)],
      ["group", task.group_id ?? "–"],
      ["submitted", task.submitted_at ?? "–"],
      ["started", task.started_at ?? "–"],
      ["finished", task.finished_at ?? "–"],
    ]),
    ...section(input && "review" in input ? "Review" : "Input", inputView(input)),
    ...section("Result", resultView(task.result)),
    ...section(
      "Error",
      task.error ? element("div", { className: "error-text", id: "detail-error" }, task.error) : null,
    ),
    ...section("Timeline", timelineView(timeline, webhooks)),
  )
  dialog.querySelector('[data-action="cancel"]').hidden = !CANCELLABLE.has(task.status)
  dialog.querySelector('[data-action="terminate"]').hidden = task.status !== "STARTED"
  dialog.querySelector('[data-action="retry"]').hidden = !RETRYABLE.has(task.status)
  follow(taskId, task.status)
}

async function openDetail(taskId) {
  $("#detail-message").textContent = ""
  history.replaceState(null, "", `#task=${taskId}`)
  await showDetail(taskId)
  if (!$("#detail").open) $("#detail").showModal()
}

const ACTIONS = {
  cancel: (taskId) => ({ path: `dashboard/api/tasks/${taskId}`, method: "DELETE", done: "cancelled" }),
  terminate: (taskId) => ({
    path: `dashboard/api/tasks/${taskId}?terminate=true`,
    method: "DELETE",
    done: "terminated",
  }),
  retry: (taskId) => ({
    path: `dashboard/api/tasks/${taskId}/retry`,
    method: "POST",
    done: "queued again as a new run",
  }),
}

async function act(action) {
  const taskId = $("#detail").dataset.taskId
  const message = $("#detail-message")
  const request = ACTIONS[action](taskId)
  if (action === "terminate" && !confirm("Stop this running task? It ends REVOKED and is not retried."))
    return
  try {
    await fetchJson(request.path, { method: request.method })
    message.textContent = `Task ${request.done}.`
  } catch (err) {
    message.textContent = err.message
  }
  await showDetail(taskId)
  loadTasks()
}

function setUpDetail() {
  const dialog = $("#detail")
  $("#detail-close").addEventListener("click", () => dialog.close())
  dialog.addEventListener("close", () => {
    history.replaceState(null, "", location.pathname + location.search)
    delete dialog.dataset.taskId
    follow(null, null)
  })
  for (const button of dialog.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => act(button.dataset.action))
  }
  const linked = location.hash.match(/^#task=([0-9a-f-]{36})$/)
  if (linked) openDetail(linked[1])
}

// --- replaying the failed dead letters (the admin endpoint: it may need ADMIN_TOKEN)

async function replay() {
  const result = $("#replay-result")
  const send = (token) =>
    fetchJson("admin/dead-letters/failed/replay", {
      method: "POST",
      headers: token ? { authorization: `Bearer ${token}` } : {},
    })
  try {
    let token = sessionStorage.getItem("adminToken")
    let body
    try {
      body = await send(token)
    } catch (err) {
      if (err.status !== 401) throw err
      token = prompt("The admin token (ADMIN_TOKEN) to replay dead letters:")
      if (!token) return
      body = await send(token)
      sessionStorage.setItem("adminToken", token)
    }
    result.textContent = `replayed ${body.replayed} task${body.replayed === 1 ? "" : "s"}`
    loadTasks()
  } catch (err) {
    result.textContent = err.message
  }
}

$("#replay").addEventListener("click", replay)
$("#queues tbody").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-queue-action]")
  if (button) queueAction(button.dataset.queueAction, button.closest("tr").dataset.route)
})
setUpTable()
setUpDetail()
setUpWorkers()
connect()
loadTasks()
loadSchedules()
setInterval(loadSchedules, SCHEDULES_REFRESH_MS)
loadReports()
setInterval(loadReports, SCHEDULES_REFRESH_MS)
