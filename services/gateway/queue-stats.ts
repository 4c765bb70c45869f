// Queue depths, consumers and rates for the dashboard and /metrics. Depth and consumers come from passive
// declares, which every broker answers; publish and deliver rates only from the management API, when there is
// one (RABBITMQ_MANAGEMENT_URL), since AMQP has no way to ask for them. Without it, the change in depth between
// two samples is all there is, and the report says so.
import { type AMQPChannel, AMQPClient } from "@cloudamqp/amqp-client"
import type { QueueReport } from "../../shared/contracts.ts"
import type { Logger } from "../../shared/log.ts"
import { Gauge, type ServiceMetrics } from "../../shared/metrics.ts"
import { allNames, type TopologyOptions } from "../../shared/topology.ts"

type QueueRow = QueueReport["queues"][number]

/** Samples closer together than this are served from the last one: a scrape and a dashboard tick share it. */
const FRESH_MS = 500

interface QueueStatsOptions {
  /** The node the gateway's session is on: after a failover, the next sample connects there too. */
  amqpUrl: () => string
  topology: TopologyOptions
  managementUrl: string | undefined
  deadLetterQueues: string[]
  metrics: ServiceMetrics
  log: Logger
}

export class QueueStats {
  private client: AMQPClient | undefined
  private channel: AMQPChannel | undefined
  private last: { report: QueueReport; at: number } | undefined
  private sampling: Promise<QueueReport> | undefined
  private readonly queues: string[]

  constructor(private readonly options: QueueStatsOptions) {
    this.queues = allNames(options.topology).queues
    const stats = this
    const registers = [options.metrics.registry]
    const gauge = (name: string, help: string, value: (row: QueueRow) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["queue"],
        registers,
        async collect() {
          for (const row of (await stats.sample()).queues) this.set({ queue: row.name }, value(row))
        },
      })
    gauge(
      "polarity_queue_messages",
      "Messages in each queue, as the broker last reported them.",
      (r) => r.messages,
    )
    gauge(
      "polarity_queue_consumers",
      "Consumers of each queue, as the broker last reported them.",
      (r) => r.consumers,
    )
  }

  /** The queues now, or as sampled less than FRESH_MS ago; concurrent callers share one sample. */
  sample(): Promise<QueueReport> {
    if (this.last && Date.now() - this.last.at < FRESH_MS) return Promise.resolve(this.last.report)
    this.sampling ??= this.takeSample().finally(() => {
      this.sampling = undefined
    })
    return this.sampling
  }

  private async takeSample(): Promise<QueueReport> {
    const at = Date.now()
    const depths = await this.depths()
    const rates = this.options.managementUrl ? await this.managementRates() : undefined
    const previous = new Map(this.last?.report.queues.map((row) => [row.name, row.messages]))
    const seconds = this.last ? (at - this.last.at) / 1000 : 0
    const queues = depths.map(({ name, messages, consumers }): QueueRow => {
      const before = previous.get(name)
      const rate = rates?.get(name)
      return {
        name,
        messages,
        consumers,
        dead_letter: this.options.deadLetterQueues.includes(name),
        publish_rate: rate?.publish ?? null,
        deliver_rate: rate?.deliver ?? null,
        net_rate:
          before === undefined || seconds <= 0 ? null : Math.round(((messages - before) / seconds) * 10) / 10,
      }
    })
    const report: QueueReport = {
      at: new Date(at).toISOString(),
      source: rates ? "management" : "depth",
      queues,
    }
    this.last = { report, at }
    return report
  }

  /** Passive declares on a connection of its own: one for a missing queue closes its channel. */
  private async depths(): Promise<
    Omit<QueueRow, "dead_letter" | "publish_rate" | "deliver_rate" | "net_rate">[]
  > {
    const rows = []
    for (const name of this.queues) {
      try {
        const channel = await this.openChannel()
        const { messageCount, consumerCount } = await channel.queueDeclare(name, { passive: true })
        rows.push({ name, messages: messageCount, consumers: consumerCount })
      } catch (err) {
        this.channel = undefined
        if (this.client?.closed !== false) {
          this.options.log.warn("queue depths not read", { err: (err as Error).message })
          this.client = undefined
          break
        }
      }
    }
    return rows
  }

  private async openChannel(): Promise<AMQPChannel> {
    if (this.channel && !this.channel.closed) return this.channel
    if (!this.client || this.client.closed) {
      const url = new URL(this.options.amqpUrl())
      url.searchParams.set("name", "gateway-queue-stats")
      this.client = new AMQPClient(url.toString(), undefined, null)
      await this.client.connect()
    }
    this.channel = await this.client.channel()
    return this.channel
  }

  /** Publish and deliver rates per queue from the management API; undefined when it does not answer. */
  private async managementRates(): Promise<Map<string, { publish: number; deliver: number }> | undefined> {
    const base = new URL(this.options.managementUrl ?? "")
    const authorization = `Basic ${btoa(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`)}`
    base.username = ""
    base.password = ""
    const vhost = encodeURIComponent(
      decodeURIComponent(new URL(this.options.amqpUrl()).pathname.slice(1)) || "/",
    )
    const rates = new Map<string, { publish: number; deliver: number }>()
    try {
      await Promise.all(
        this.queues.map(async (name) => {
          const res = await fetch(new URL(`api/queues/${vhost}/${encodeURIComponent(name)}`, base), {
            headers: { authorization },
            signal: AbortSignal.timeout(2000),
          })
          if (res.status === 404) return res.body?.cancel()
          if (!res.ok) throw new Error(`management API answered ${res.status}`)
          const body = (await res.json()) as {
            message_stats?: { publish_details?: { rate?: number }; deliver_get_details?: { rate?: number } }
          }
          rates.set(name, {
            publish: body.message_stats?.publish_details?.rate ?? 0,
            deliver: body.message_stats?.deliver_get_details?.rate ?? 0,
          })
        }),
      )
      return rates
    } catch (err) {
      this.options.log.warn("management API not read; rates from depths", { err: (err as Error).message })
      return undefined
    }
  }

  async close(): Promise<void> {
    await this.client?.close().catch(() => {})
  }
}
