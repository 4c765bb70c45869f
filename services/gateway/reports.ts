// Polarity reports: POST /polarities/reports submits a `report:polarity` task (the worker asks the status store to
// add up a window of scored tasks), and GET /polarities/reports/latest answers the latest that succeeded. A report
// covers the tasks of the API key that asked for it, and belongs to that key.
import type { Context } from "hono"
import { MAX_REPORT_RANGE_MS, type SubmitReport, type TaskRecord } from "../../shared/contracts.ts"
import { Problem } from "../../shared/http.ts"
import { callerOf, ownerFilter } from "./access.ts"
import type { Route } from "./openapi.ts"
import type { StatusStoreClient } from "./status-store-client.ts"

/** The task fields of a report request: a window, or a range checked and turned into milliseconds. */
export function reportFields({ window, from, to, ...options }: SubmitReport) {
  const range = from !== undefined || to !== undefined
  if (window !== undefined && range) throw new Problem(422, "give window, or from and to, not both")
  if (window !== undefined) return { ...options, window }
  if (from === undefined || to === undefined) {
    throw new Problem(422, 'a report needs window ("hour" or "day"), or from and to (RFC 3339 times)')
  }
  const [start, end] = [Date.parse(from), Date.parse(to)]
  if (!(start < end)) throw new Problem(422, `from: ${from} is not before to: ${to}`)
  if (end - start > MAX_REPORT_RANGE_MS) {
    throw new Problem(422, `from ${from} to ${to} is longer than ${MAX_REPORT_RANGE_MS / 86_400_000} days`)
  }
  return { ...options, from: start, to: end }
}

export function latestReportRoute(route: Route<"TaskRecord">, store: StatusStoreClient): void {
  route(
    "get",
    "/polarities/reports/latest",
    {
      summary: "The latest polarity report that succeeded",
      description:
        "The `report:polarity` task submitted last among those that succeeded (of this API key when keys are on), with the report as its `result`.",
      tag: "reports",
      responses: { 200: { description: "The report's task", schema: "TaskRecord" } },
      problems: [404, 503],
    },
    async (c: Context) => {
      const page = await store.listTasks("SUCCESS", 1, undefined, {
        kind: "report:polarity",
        owner: ownerFilter(callerOf(c)),
      })
      const latest: TaskRecord | undefined = page.tasks[0]
      if (!latest) throw new Problem(404, "no polarity report has succeeded yet")
      return c.json(latest)
    },
  )
}
