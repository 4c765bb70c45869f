// A private Docker engine for the container tests: Debian's dockerd with its own socket, data root and exec
// root under /tmp, no bridge and no iptables rules (every container uses the host's network, on loopback).
// It is stopped and its directory removed at the end, and a run that died before that is cleaned up by the
// next one, so nothing is left behind on a shared machine.
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const DOCKERD = "/usr/sbin/dockerd"
/** The engine's own client (Debian's docker.io); another docker on the PATH may expect a newer engine. */
const DOCKER = "/usr/bin/docker"
const STATE_PREFIX = "polarity-docker-"

/** Why the engine cannot run here, or undefined when it can. */
export function engineUnavailable(): string | undefined {
  if (process.env.CONTAINER_TESTS === "0") return "CONTAINER_TESTS=0"
  if (process.platform !== "linux") return `the Docker engine runs on Linux, not ${process.platform}`
  if (process.getuid?.() !== 0)
    return "the private Docker engine needs root (dockerd mounts and makes cgroups)"
  const missing = [DOCKERD, DOCKER, "/usr/sbin/debootstrap"].filter((path) => !existsSync(path))
  if (missing.length > 0)
    return `${missing.join(", ")} missing: run tests/containers/ensure-engine.sh as root (apt-get install docker.io debootstrap)`
  return undefined
}

export interface Engine {
  /** The engine's own directory: data root, exec root, socket, log, and scratch space for builds. */
  root: string
  /** Run the docker client against this engine; resolves with its trimmed stdout, rejects with its stderr. */
  docker(args: string[]): Promise<string>
  stop(): Promise<void>
}

export async function startEngine(): Promise<Engine> {
  cleanUpDeadRuns()
  const root = join(tmpdir(), `${STATE_PREFIX}${process.pid}-${Math.random().toString(36).slice(2, 8)}`)
  mkdirSync(root, { recursive: true })
  writeFileSync(join(root, "owner"), String(process.pid))
  const socket = join(root, "docker.sock")
  const log = openSync(join(root, "dockerd.log"), "a")
  const args = [
    `--host=unix://${socket}`,
    `--data-root=${join(root, "data")}`,
    `--exec-root=${join(root, "exec")}`,
    `--pidfile=${join(root, "dockerd.pid")}`,
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
  ]
  // A session of its own, so a Ctrl-C meant for the tests reaches the engine only through stop().
  const dockerd = spawn(DOCKERD, args, { detached: true, stdio: ["ignore", log, log] })
  dockerd.unref()
  const exited = new Promise<number | null>((resolve) => dockerd.once("exit", resolve))
  // If the test process ends without stop() (a crash, a timeout), the engine must not outlive it.
  const killOnExit = () => dockerd.pid && tryKill(dockerd.pid, "SIGTERM")
  process.once("exit", killOnExit)

  const docker = (cmd: string[]) => runDocker(socket, cmd)
  const engine: Engine = {
    root,
    docker,
    async stop() {
      process.off("exit", killOnExit)
      const containers = await docker(["ps", "-aq"]).catch(() => "")
      if (containers) await docker(["rm", "-f", "-v", ...containers.split("\n")]).catch(() => "")
      if (dockerd.exitCode === null && dockerd.pid) {
        tryKill(dockerd.pid, "SIGTERM")
        const timer = setTimeout(() => dockerd.pid && tryKill(dockerd.pid, "SIGKILL"), 20_000)
        await exited
        clearTimeout(timer)
      }
      removeRunDirectory(root)
    },
  }
  try {
    await untilAnswers(engine, exited)
  } catch (err) {
    await engine.stop()
    throw err
  }
  return engine
}

/** Run a command; resolves with its trimmed stdout, rejects with its exit code and stderr. */
export async function run(command: string[], env: Record<string, string> = {}): Promise<string> {
  const proc = Bun.spawn(command, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" })
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  if (code !== 0)
    throw new Error(`${command.join(" ")} failed (exit ${code}): ${(stderr || stdout).trim().slice(-2000)}`)
  return stdout.trim()
}

const runDocker = (socket: string, args: string[]) =>
  run([DOCKER, ...args], { DOCKER_HOST: `unix://${socket}` })

/** The engine answers within seconds; give up (with its log) if it exits or takes over a minute. */
async function untilAnswers(engine: Engine, exited: Promise<number | null>): Promise<void> {
  let gone = false
  void exited.then(() => {
    gone = true
  })
  const deadline = Date.now() + 60_000
  for (;;) {
    const answered = await engine.docker(["version", "--format", "{{.Server.Version}}"]).then(
      () => true,
      () => false,
    )
    if (answered) return
    if (gone || Date.now() > deadline) {
      const log = readFileSync(join(engine.root, "dockerd.log"), "utf8").split("\n").slice(-15).join("\n")
      throw new Error(`the private Docker engine did not start; its log ends:\n${log}`)
    }
    await Bun.sleep(200)
  }
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch {
    // Already gone.
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The directories of runs whose test process is gone: stop their engine (and its containerd) and remove them. */
function cleanUpDeadRuns(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(STATE_PREFIX)) continue
    const root = join(tmpdir(), entry)
    const owner = Number(readIfExists(join(root, "owner")))
    if (owner && alive(owner)) continue
    for (const pidfile of ["dockerd.pid", "exec/containerd/containerd.pid"]) {
      const pid = Number(readIfExists(join(root, pidfile)))
      // Only a process that is this run's (its command line names the run's directory), never a reused pid.
      if (pid && readIfExists(`/proc/${pid}/cmdline`).includes(root)) tryKill(pid, "SIGKILL")
    }
    removeRunDirectory(root)
  }
}

/** Unmount what the engine left mounted under the run's directory (deepest first), then remove it. */
function removeRunDirectory(root: string): void {
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((point) => point.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length)
  for (const point of mounts) Bun.spawnSync(["umount", "-l", point])
  rmSync(root, { recursive: true, force: true })
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, "utf8").trim()
  } catch {
    return ""
  }
}
