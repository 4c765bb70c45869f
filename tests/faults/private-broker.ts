// A RabbitMQ node of the test's own (own node name, ports and data directory), or a cluster of three, for tests
// that stop, restart or kill a broker: the shared broker and any dev stack are never touched.
// Recipe: ../shared/RABBITMQ.md. The node runs as the `rabbitmq` user, so its directory belongs to it.
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"

/**
 * A port nobody listens on now, in [min, max). The node's CLI tools take the ten ports from its distribution
 * port + 10,000, so ranges stay well below 55,525.
 */
function freePort(min: number, max: number): number {
  for (let tries = 0; tries < 100; tries++) {
    const port = min + Math.floor(Math.random() * (max - min))
    try {
      Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true)
      return port
    } catch {
      // taken: try another
    }
  }
  throw new Error(`no free port in [${min}, ${max})`)
}

export class PrivateBroker {
  readonly url: string
  /** The management API's URL, with credentials, when the node was made with `{ management: true }`. */
  readonly managementUrl: string | undefined
  /** The Erlang node name, e.g. `faulttest-123-4567@vm`. */
  readonly node: string
  private readonly dir: string
  private readonly port: number
  private readonly env: Record<string, string>

  /** `conf`: more lines of the node's rabbitmq.conf. */
  constructor({ management = false, name = "faulttest", conf = [] as string[] } = {}) {
    this.port = freePort(11_000, 19_000)
    this.dir = mkdtempSync(join(tmpdir(), "rmq-test-"))
    this.node = `${name}-${process.pid}-${this.port}@${hostname().split(".")[0]}`
    this.url = `amqp://guest:guest@127.0.0.1:${this.port}`
    this.env = {
      ...(process.env as Record<string, string>),
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(freePort(21_000, 29_000)),
      RABBITMQ_MNESIA_BASE: join(this.dir, "mnesia"),
      RABBITMQ_LOG_BASE: join(this.dir, "log"),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, "enabled_plugins"),
      // The machine's rabbitmq.conf names 127.0.0.1:5672 as a listener, which would beat NODE_PORT.
      RABBITMQ_CONFIG_FILE: join(this.dir, "rabbitmq.conf"),
      RABBITMQ_PID_FILE: join(this.dir, "node.pid"),
    }
    const managementPort = freePort(31_000, 39_000)
    this.managementUrl = management ? `http://guest:guest@127.0.0.1:${managementPort}/` : undefined
    writeFileSync(join(this.dir, "enabled_plugins"), management ? "[rabbitmq_management]." : "[].")
    const lines = [`listeners.tcp.local = 127.0.0.1:${this.port}`, ...conf]
    // Rates are sampled every half second rather than every 5 s, so that a test sees them soon.
    if (management) {
      lines.push(`management.tcp.ip = 127.0.0.1`, `management.tcp.port = ${managementPort}`)
      lines.push("collect_statistics_interval = 500")
    }
    writeFileSync(join(this.dir, "rabbitmq.conf"), `${lines.join("\n")}\n`)
    const { uid, gid } = rabbitmqUser()
    for (const file of ["", "enabled_plugins", "rabbitmq.conf"]) chownSync(join(this.dir, file), uid, gid)
  }

  /** Start the node (or start it again after `kill`, on the same data) and wait until AMQP answers. */
  async start(): Promise<void> {
    this.run(["rabbitmq-server", "-detached"])
    await this.waitUntil(true)
    this.reapAfterTest()
  }

  /**
   * Should the test process end without stopping this node (a hook that timed out, a crash, a kill; bun test
   * runs no "exit" handlers), a watcher of its own kills the node and removes its directory once the test process
   * is gone. It ends by itself when the node stops first.
   */
  private reapAfterTest(): void {
    const pid = this.pid()
    if (!pid) return
    const ours = `tr '\\0' '\\n' < /proc/${pid}/environ 2>/dev/null | grep -qx 'RABBITMQ_NODENAME=${this.node}'`
    const script = [
      `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null; do sleep 2; done`,
      `if ! kill -0 ${process.pid} 2>/dev/null; then ${ours} && kill -9 ${pid}; rm -rf '${this.dir}'; fi`,
    ].join("; ")
    // setsid -f: a process of its own session, which the test runner does not end with its own children.
    Bun.spawn(["setsid", "-f", "sh", "-c", script], { stdio: ["ignore", "ignore", "ignore"] })
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
    this.killNow()
    await this.waitUntil(false)
  }

  /** Join the cluster of `first` (a running node): stop the app, join, start it again. */
  async joinCluster(first: PrivateBroker): Promise<void> {
    this.run(["rabbitmqctl", "-n", this.node, "stop_app"])
    this.run(["rabbitmqctl", "-n", this.node, "join_cluster", first.node])
    this.run(["rabbitmqctl", "-n", this.node, "start_app"])
    await this.waitUntil(true)
  }

  /** A `rabbitmqctl` command run against this node, its JSON output parsed (`--formatter json`). */
  ctlJson<T>(args: string[]): T {
    return JSON.parse(this.run(["rabbitmqctl", "-n", this.node, "-q", "--formatter", "json", ...args])) as T
  }

  /**
   * Stop the node and wait for its VM to end (`stop <pid file>` waits), then make sure it is gone even if the
   * stop failed; remove its data.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    const pid = this.pid()
    this.run(["rabbitmqctl", "-n", this.node, "stop", join(this.dir, "node.pid")], true)
    this.killNow(pid)
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** SIGKILL to the node's VM, if it still runs. */
  killNow(pid = this.pid()): void {
    try {
      // The pid of a node that stopped could in principle be someone else's by now: check it is this node.
      const environment = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
      if (pid && environment.includes(`RABBITMQ_NODENAME=${this.node}`)) process.kill(pid, "SIGKILL")
    } catch {
      // no such process (stopped): nothing to kill
    }
  }

  /** The VM's pid, from the pid file the node writes at start; undefined before. */
  private pid(): number | undefined {
    try {
      return Number(readFileSync(join(this.dir, "node.pid"), "utf8").trim()) || undefined
    } catch {
      return undefined
    }
  }

  /** `rabbitmqctl <args>` against this node; its output. */
  rabbitmqctl(...args: string[]): string {
    return this.run(["rabbitmqctl", "-n", this.node, ...args])
  }

  /** A shell script (e.g. rabbitmqctl lines) against this node: RABBITMQ_NODENAME names it to rabbitmqctl. */
  shell(script: string, env: Record<string, string> = {}): string {
    return this.run(["sh", "-e", "-c", script], false, env)
  }

  private run(command: string[], ignoreFailure = false, env: Record<string, string> = {}): string {
    const result = Bun.spawnSync(command, { env: { ...this.env, ...env }, stdout: "pipe", stderr: "pipe" })
    if (!result.success && !ignoreFailure) {
      throw new Error(`${command.join(" ")} failed: ${result.stderr.toString()}${result.stdout.toString()}`)
    }
    return result.stdout.toString()
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

/**
 * Three private nodes clustered with `join_cluster`, each with its own config file (the machine's rabbitmq.conf
 * names 127.0.0.1:5672 as a listener), which spreads the leaders of new quorum queues over the nodes as
 * docs/deploy.md advises. Disposing it stops every node; should the test process end without that, each node's
 * watcher kills it.
 */
export class PrivateCluster {
  readonly nodes: PrivateBroker[]
  constructor(size = 3) {
    const conf = ["queue_leader_locator = balanced"]
    this.nodes = Array.from({ length: size }, () => new PrivateBroker({ name: "clustertest", conf }))
  }

  /** Start every node, then join the others to the first. On failure, stops what it started. */
  async start(): Promise<void> {
    try {
      await Promise.all(this.nodes.map((node) => node.start()))
      const [first, ...others] = this.nodes
      for (const node of others) if (first) await node.joinCluster(first)
    } catch (err) {
      await this[Symbol.asyncDispose]()
      throw err
    }
  }

  /** Every node's URL, comma-separated: the value of AMQP_URL for a service that should fail over. */
  get urls(): string {
    return this.nodes.map((node) => node.url).join(",")
  }

  /** The running nodes, as the cluster itself reports them (asked of `via`). */
  runningNodes(via: PrivateBroker): string[] {
    return via.ctlJson<{ running_nodes: string[] }>(["cluster_status"]).running_nodes
  }

  /** Stop every node, each even if stopping another failed. */
  async [Symbol.asyncDispose](): Promise<void> {
    const stopped = await Promise.allSettled(this.nodes.map((node) => node[Symbol.asyncDispose]()))
    const failure = stopped.find((result) => result.status === "rejected")
    if (failure) throw failure.reason
  }
}
