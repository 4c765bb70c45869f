// What priorities cost the broker: the ceiling's pipeline (bench/ceiling.ts) with its work queue declared as ours
// are, `x-max-priority: 9`, against a plain classic queue, in alternating rounds so that the machine's load falls on
// both alike; then with every task published at a random priority 0–9. `bun bench/priorities.ts [messages] [rounds]`
// under `flock /work/bench.lock`.
import { cpus, loadavg } from "node:os"
import { MAX_PRIORITY } from "../shared/contracts.ts"
import { AMQP_URL } from "../tests/broker.ts"
import { runCeiling } from "./ceiling.ts"

const messages = Number(process.argv[2] ?? 20_000)
const rounds = Number(process.argv[3] ?? 3)
const variants = {
  plain: {},
  "x-max-priority 9, none set": { tasksQueueArguments: { "x-max-priority": MAX_PRIORITY } },
  "x-max-priority 9, random 0–9": {
    tasksQueueArguments: { "x-max-priority": MAX_PRIORITY },
    priorityOf: () => Math.floor(Math.random() * (MAX_PRIORITY + 1)),
  },
} as const

const figures = new Map<string, number[]>(Object.keys(variants).map((name) => [name, []]))
for (let round = 0; round < rounds; round++) {
  for (const [name, variant] of Object.entries(variants)) {
    const result = await runCeiling({
      amqpUrl: AMQP_URL,
      prefix: `bench-priorities-${process.pid}.`,
      messages,
      prefetch: 1000,
      window: 1000,
      reviewBytes: 0,
      queueType: "classic",
      ...variant,
    })
    figures.get(name)?.push(Math.round(result.perSecond))
  }
}
console.log(
  `${messages} messages a round, ${rounds} rounds, ${cpus().length} cores, load ${loadavg()[0]?.toFixed(1)}`,
)
for (const [name, perSecond] of figures) {
  const sorted = perSecond.toSorted((a, b) => a - b)
  console.log(
    `${name.padEnd(30)} ${sorted.join(", ")} messages/s (median ${sorted[Math.floor(sorted.length / 2)]})`,
  )
}
