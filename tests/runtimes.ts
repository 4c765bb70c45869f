// How the tests and the benchmark start a service as a process of its own under Bun or Deno: Deno with the
// permissions `npm run start:deno:<service>` grants (read from package.json, so that the tests run what a
// user runs), plus the test's own data directory.
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"

export const RUNTIMES = ["bun", "deno"] as const
export type Runtime = (typeof RUNTIMES)[number]
export type ServiceName = "gateway" | "worker" | "store"
/** Which runtime runs each service; Bun where not said. */
export type Runtimes = Partial<Record<ServiceName, Runtime>>

export const ROOT = join(import.meta.dir, "..")
export const SERVICE_FILES: Record<ServiceName, string> = {
  gateway: "services/gateway.ts",
  worker: "services/polarity-worker.ts",
  store: "services/status-store.ts",
}

const PACKAGE = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  config: Record<string, string>
  scripts: Record<string, string>
}

/**
 * The Deno executable itself, not npm's `node_modules/.bin/deno` (which may be a Node wrapper when install
 * scripts did not run): a kill -9 and a reading of RSS must reach Deno.
 */
export const DENO: string = createRequire(import.meta.url)("deno/install_api.cjs").runInstall()

/** The environment `npm run start:deno:*` gives Deno (glibc's settings): package.json's `config.denoEnv`. */
export const DENO_ENV: string[] = (PACKAGE.config.denoEnv ?? "").split(/\s+/).filter(Boolean)

/**
 * The flags `npm run start:deno:<service>` runs the service with: its permissions. The store on PostgreSQL has a
 * script of its own (`start:deno:store:postgres`), which reads and writes no file.
 */
export function denoFlags(service: ServiceName, postgres = false): string[] {
  const name = `start:deno:${service}${postgres && service === "store" ? ":postgres" : ""}`
  const script = PACKAGE.scripts[name] ?? ""
  const expanded = script.replace(
    /\$npm_package_config_(\w+)/g,
    (_, name: string) => PACKAGE.config[name] ?? "",
  )
  const words = expanded.split(/\s+/).filter(Boolean)
  const environment = words.slice(1, 1 + DENO_ENV.length).join(" ")
  const [command, subcommand, ...args] = words.slice(1 + DENO_ENV.length)
  if (
    words[0] !== "env" ||
    environment !== DENO_ENV.join(" ") ||
    command !== "deno" ||
    subcommand !== "run" ||
    args.pop() !== SERVICE_FILES[service]
  ) {
    throw new Error(
      `${name} is not "env $npm_package_config_denoEnv deno run <flags> ${SERVICE_FILES[service]}": ${script}`,
    )
  }
  return args
}

/**
 * The command that runs `service` under `runtime`, with the service's environment. A Deno status store on SQLite
 * may also read and write the directory of its `DATABASE_PATH`; on PostgreSQL (`DATABASE_URL`) it touches no file.
 */
export function serviceCommand(
  service: ServiceName,
  runtime: Runtime,
  env: Record<string, string> = {},
): string[] {
  if (runtime === "bun") return [process.execPath, SERVICE_FILES[service]]
  const postgres = Boolean(env.DATABASE_URL)
  const dataDir = env.DATABASE_PATH && !postgres ? dirname(env.DATABASE_PATH) : undefined
  const data = service === "store" && dataDir ? [`--allow-read=${dataDir}`, `--allow-write=${dataDir}`] : []
  // `env` execs Deno in its place: the process, and its pid, are Deno's.
  return ["env", ...DENO_ENV, DENO, "run", ...denoFlags(service, postgres), ...data, SERVICE_FILES[service]]
}
