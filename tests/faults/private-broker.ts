// A RabbitMQ node of the test's own (own node name, ports and data directory), for tests that stop,
// restart or kill a broker: the shared broker and any dev stack are never touched.
// Recipe: ../shared/RABBITMQ.md. The node runs as the `rabbitmq` user, so its directory belongs to it.
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"

export class PrivateBroker {
  readonly url: string
  /** The management API's URL, with credentials, when the node was made with `{ management: true }`. */
  readonly managementUrl: string | undefined
  private readonly node: string
  private readonly dir: string
  private readonly port: number
  private readonly env: Record<string, string>

  constructor({ management = false } = {}) {
    this.port = 5700 + Math.floor(Math.random() * 200)
    this.dir = mkdtempSync(join(tmpdir(), "rmq-test-"))
    this.node = `faulttest-${process.pid}-${this.port}@${hostname().split(".")[0]}`
    this.url = `amqp://guest:guest@127.0.0.1:${this.port}`
    this.env = {
      ...(process.env as Record<string, string>),
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.port + 20_000),
      RABBITMQ_MNESIA_BASE: join(this.dir, "mnesia"),
      RABBITMQ_LOG_BASE: join(this.dir, "log"),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, "enabled_plugins"),
      // The machine's rabbitmq.conf names 127.0.0.1:5672 as a listener, which would beat NODE_PORT.
      RABBITMQ_CONFIG_FILE: join(this.dir, "rabbitmq.conf"),
      RABBITMQ_PID_FILE: join(this.dir, "node.pid"),
    }
    const managementPort = this.port + 1000
    this.managementUrl = management ? `http://guest:guest@127.0.0.1:${managementPort}/` : undefined
    writeFileSync(join(this.dir, "enabled_plugins"), management ? "[rabbitmq_management]." : "[].")
    const conf = [`listeners.tcp.local = 127.0.0.1:${this.port}`]
    // Rates are sampled every half second rather than every 5 s, so that a test sees them soon.
    if (management) {
      conf.push(`management.tcp.ip = 127.0.0.1`, `management.tcp.port = ${managementPort}`)
      conf.push("collect_statistics_interval = 500")
    }
    writeFileSync(join(this.dir, "rabbitmq.conf"), `${conf.join("\n")}\n`)
    const { uid, gid } = rabbitmqUser()
    for (const file of ["", "enabled_plugins", "rabbitmq.conf"]) chownSync(join(this.dir, file), uid, gid)
  }

  /** Start the node (or start it again after `kill`, on the same data) and wait until AMQP answers. */
  async start(): Promise<void> {
    this.run(["rabbitmq-server", "-detached"])
    await this.waitUntil(true)
  }

  /** Broker down, Erlang node up, data kept. */
  async stopApp(): Promise<void> {
    this.run(["rabbitmqctl", "-n", this.node, "stop_app"])
    await this.waitUntil(false)
  }

  async startApp(): Promise<void> {
    this.run(["rabbitmqctl", "-n", this.node, "start_app"])
    await this.waitUntil(true)
  }

  /** kill -9 of the node's Erlang VM: a crash, nothing flushed beyond what it had fsynced. */
  async kill(): Promise<void> {
    process.kill(Number(readFileSync(join(this.dir, "node.pid"), "utf8").trim()), "SIGKILL")
    await this.waitUntil(false)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.run(["rabbitmqctl", "-n", this.node, "stop"], true)
    rmSync(this.dir, { recursive: true, force: true })
  }

  private run(command: string[], ignoreFailure = false): void {
    const result = Bun.spawnSync(command, { env: this.env, stdout: "pipe", stderr: "pipe" })
    if (!result.success && !ignoreFailure) {
      throw new Error(`${command.join(" ")} failed: ${result.stderr.toString()}${result.stdout.toString()}`)
    }
  }

  /** `rabbitmqctl await_startup` can return early; a real AMQP handshake cannot. */
  private async waitUntil(up: boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if ((await this.answers()) === up) return
      await Bun.sleep(200)
    }
    throw new Error(`private broker ${this.node} did not go ${up ? "up" : "down"} in ${timeoutMs} ms`)
  }

  /** A raw AMQP handshake: the broker answers the protocol header with a method frame (connection.start). */
  private async answers(): Promise<boolean> {
    const answered = Promise.withResolvers<boolean>()
    try {
      const socket = await Bun.connect({
        hostname: "127.0.0.1",
        port: this.port,
        socket: {
          open: (s) => void s.write(new Uint8Array([65, 77, 81, 80, 0, 0, 9, 1])),
          data: (s, data) => {
            answered.resolve(data[0] === 1)
            s.end()
          },
          close: () => answered.resolve(false),
          error: () => answered.resolve(false),
        },
      })
      setTimeout(() => {
        answered.resolve(false)
        socket.end()
      }, 2000)
      return await answered.promise
    } catch {
      return false
    }
  }
}

function rabbitmqUser(): { uid: number; gid: number } {
  const idOf = (flag: "-u" | "-g") =>
    Number(Bun.spawnSync(["id", flag, "rabbitmq"]).stdout.toString().trim() || Number.NaN)
  const [uid, gid] = [idOf("-u"), idOf("-g")]
  if (Number.isNaN(uid) || Number.isNaN(gid))
    throw new Error("no rabbitmq user: is the RabbitMQ package installed?")
  return { uid, gid }
}
