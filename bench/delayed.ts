// How late delayed tasks start: tasks submitted with countdowns of 1 to 5 s through the API, then read back by
// lookup; each one's lateness is its `started_at` minus its `eta` (never below 0: the ladder rounds a delay up).
import type { TaskLookup } from "../shared/contracts.ts"
import { HttpClient } from "./http-client.ts"
import { forEachConcurrently, type Percentiles, percentiles, reviewText } from "./load.ts"

export interface DelayedResult {
  tasks: number
  /** Tasks that did not end SUCCESS within the settle time, or that started before their eta. */
  lost: number
  early: number
  /** Milliseconds from eta to started_at. */
  lateness: Percentiles
}

/** 40 countdowns, 1.0 to 4.9 s, so every tick of the ladder's lowest levels is used. */
const countdownOf = (index: number) => 1 + (index % 40) / 10

export async function measureDelayLateness(
  gatewayUrl: string,
  tasks: number,
  concurrency: number,
  settleTimeoutMs: number,
  apiKey?: string,
): Promise<DelayedResult> {
  const client = new HttpClient(gatewayUrl, apiKey)
  const taskIds: string[] = []
  try {
    await forEachConcurrently(tasks, concurrency, async (index) => {
      const body = JSON.stringify({ review: reviewText(index), countdown: countdownOf(index) })
      const res = await client.request("POST", "/polarities", body)
      if (res.status !== 202) throw new Error(`a delayed submission answered ${res.status}`)
      taskIds.push(res.json<{ task_id: string }>().task_id)
    })
    const lateness: number[] = []
    let early = 0
    const deadline = Date.now() + 5000 + settleTimeoutMs
    for (let i = 0; i < taskIds.length; i += 100) {
      const waitS = Math.max(0, Math.min(30, (deadline - Date.now()) / 1000))
      const body = JSON.stringify({ task_ids: taskIds.slice(i, i + 100) })
      const res = await client.request("POST", `/polarities/tasks/lookup?wait=${waitS}`, body)
      for (const task of res.json<TaskLookup>().tasks) {
        if (task?.status !== "SUCCESS" || !task.eta || !task.started_at) continue
        const ms = Date.parse(task.started_at) - Date.parse(task.eta)
        if (ms < 0) early++
        lateness.push(ms)
      }
    }
    return { tasks, lost: tasks - lateness.length, early, lateness: percentiles(lateness) }
  } finally {
    client.close()
  }
}
