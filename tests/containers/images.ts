// The images the container tests run: a Debian base made with debootstrap (cached between runs as a tarball),
// stand-ins tagged with the names the Dockerfile's FROM lines use (no registry is reached: each is the base plus
// this machine's own runtime binary), and the project's images built from the real Dockerfile, unchanged.
import {
  copyFileSync,
  cpSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs"
import { homedir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { DENO, type Runtime } from "../runtimes.ts"
import { type Engine, run } from "./engine.ts"

export const REPO = resolve(import.meta.dir, "../..")
export const SERVICES = ["gateway", "polarity-worker", "status-store"] as const
export type Service = (typeof SERVICES)[number]
/** The file that builds each runtime's images. */
export const DOCKERFILES: Record<Runtime, string> = { bun: "Dockerfile", deno: "Dockerfile.deno" }

const BASE_IMAGE = "local/debian:bookworm-slim"
const CACHE_DIR =
  process.env.CONTAINER_CACHE_DIR ?? join(homedir(), ".cache", "sentiment-polarity", "containers")
const BASE_TARBALL = join(CACHE_DIR, "debian-bookworm-minbase.tar.gz")
/** Made again after this long, so the cached base takes Debian's updates. */
const BASE_MAX_AGE_MS = 30 * 24 * 3600 * 1000

/** How long each step took, for the run's cost report. */
export const timings: Record<string, number> = {}

async function timed<T>(step: string, run: () => Promise<T>): Promise<T> {
  const startedAt = performance.now()
  try {
    return await run()
  } finally {
    timings[step] = Math.round(performance.now() - startedAt)
  }
}

/** The Debian base image: the cached tarball when there is a fresh one, else debootstrap (about 35 s) first. */
export async function loadBaseImage(engine: Engine): Promise<"cached" | "made"> {
  const fresh = existsSync(BASE_TARBALL) && Date.now() - statSync(BASE_TARBALL).mtimeMs < BASE_MAX_AGE_MS
  if (!fresh) await timed("debootstrap", () => makeBaseTarball(engine))
  await timed("base import", () => engine.docker(["import", BASE_TARBALL, BASE_IMAGE]))
  return fresh ? "cached" : "made"
}

async function makeBaseTarball(engine: Engine): Promise<void> {
  const rootfs = join(engine.root, "rootfs")
  await run(["debootstrap", "--variant=minbase", "bookworm", rootfs, debianMirror()])
  // What Debian's own slim images leave out too: package lists and archives, docs, manuals, translations.
  await run([
    "sh",
    "-c",
    `cd ${rootfs} && rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb \
      usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/*`,
  ])
  mkdirSync(CACHE_DIR, { recursive: true })
  // Written aside and renamed, so a run that dies half-way, or one beside it, never reads half a tarball.
  const partial = `${BASE_TARBALL}.${process.pid}.partial`
  await run(["tar", "-C", rootfs, "-I", "gzip -1", "-cf", partial, "."])
  renameSync(partial, BASE_TARBALL)
}

/** The Debian mirror apt uses on this machine. */
function debianMirror(): string {
  for (const file of ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]) {
    if (!existsSync(file)) continue
    const text = readFileSync(file, "utf8")
    const uri = text.match(/^URIs:\s*(\S+)/m)?.[1] ?? text.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/m)?.[1]
    if (uri) return uri
  }
  return "http://deb.debian.org/debian"
}

/** The base images a Dockerfile names (FROM lines that are not its own stages). */
export function dockerfileBases(dockerfile: string): string[] {
  const stages = new Set<string>()
  const bases: string[] = []
  for (const [, image, stage] of dockerfile.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)) {
    if (image && !stages.has(image)) bases.push(image)
    if (stage) stages.add(stage)
  }
  return bases
}

/** The base images of every Dockerfile, each once. */
export function allBases(): string[] {
  const dockerfiles = Object.values(DOCKERFILES).map((file) => readFileSync(join(REPO, file), "utf8"))
  return [...new Set(dockerfiles.flatMap(dockerfileBases))]
}

/**
 * A stand-in for each base image: the Debian base, the runtime from this machine, and what the real image has
 * that the project relies on (its user, paths, entrypoint).
 */
export async function makeStandIns(engine: Engine): Promise<void> {
  for (const image of allBases()) {
    const recipe = STAND_INS.find((candidate) => image.startsWith(candidate.prefix))
    if (!recipe) throw new Error(`no stand-in for FROM ${image}: add one to tests/containers/images.ts`)
    const context = join(engine.root, "stand-ins", image.replaceAll(/[/:]/g, "_"))
    mkdirSync(context, { recursive: true })
    writeFileSync(join(context, "Dockerfile"), recipe.prepare(context))
    await timed(`stand-in ${image}`, () =>
      engine.docker(["build", "-q", "--network", "host", "-t", image, context]),
    )
  }
}

/** A hard link where the file system allows one: the runtimes are large, and the context is only read. */
function placeFile(from: string, to: string): void {
  try {
    linkSync(from, to)
  } catch {
    copyFileSync(from, to)
  }
}

/** The official Deno image's entrypoint runs `deno` when its first argument is an option or one of these. */
const DENO_SUBCOMMANDS = (
  "bench bundle cache check compile completions coverage doc eval fmt help info init install jupyter lint lsp " +
  "publish repl run serve task test types uninstall upgrade vendor"
).split(" ")

const STAND_INS: { prefix: string; prepare(context: string): string }[] = [
  {
    // oven/bun's slim image: Debian slim, bun in /usr/local/bin, user bun (1000), an entrypoint that execs.
    prefix: "oven/bun:",
    prepare(context) {
      placeFile(process.execPath, join(context, "bun"))
      writeFileSync(
        join(context, "docker-entrypoint.sh"),
        `#!/bin/sh\nset -e\nif [ "\${1#-}" != "\${1}" ] || [ -z "$(command -v "\${1}")" ]; then\n  set -- /usr/local/bin/bun "$@"\nfi\nexec "$@"\n`,
        { mode: 0o755 },
      )
      return `FROM ${BASE_IMAGE}
COPY bun docker-entrypoint.sh /usr/local/bin/
RUN ln -s bun /usr/local/bin/bunx && groupadd --gid 1000 bun \\
  && useradd --uid 1000 --gid bun --shell /bin/sh --create-home bun && install -d -o bun -g bun /home/bun/app
WORKDIR /home/bun/app
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["/usr/local/bin/bun"]
`
    },
  },
  {
    // denoland/deno's Debian image: deno in /usr/bin, user deno (1993), DENO_DIR /deno-dir owned by it, an
    // entrypoint that puts `deno` before a subcommand. The real one runs that entrypoint under tini; the
    // project's images replace the entrypoint, so tini is left out. Deno is the npm package's binary, the
    // version the lockfile installs.
    prefix: "denoland/deno:",
    prepare(context) {
      placeFile(DENO, join(context, "deno"))
      writeFileSync(
        join(context, "docker-entrypoint.sh"),
        `#!/bin/sh\nset -e\ncase "$1" in\n  -*|${DENO_SUBCOMMANDS.join("|")}) exec deno "$@" ;;\nesac\nexec "$@"\n`,
        { mode: 0o755 },
      )
      return `FROM ${BASE_IMAGE}
COPY deno /usr/bin/deno
COPY docker-entrypoint.sh /usr/local/bin/
RUN useradd --uid 1993 --user-group deno && install -d -o deno -g deno /deno-dir
ENV DENO_DIR=/deno-dir/ DENO_INSTALL_ROOT=/usr/local
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["eval", "console.log('Welcome to Deno!')"]
`
    },
  },
  {
    // node's slim image, used to run npm ci: node and npm from this machine, and its certificate authorities,
    // since this machine reaches the npm registry through one of its own.
    prefix: "node:",
    prepare(context) {
      const node = Bun.which("node")
      if (!node) throw new Error("node is not on the PATH")
      const real = realpathSync(node)
      placeFile(real, join(context, "node"))
      cpSync(join(dirname(dirname(real)), "lib", "node_modules", "npm"), join(context, "npm"), {
        recursive: true,
      })
      copyFileSync("/etc/ssl/certs/ca-certificates.crt", join(context, "ca-certificates.crt"))
      return `FROM ${BASE_IMAGE}
COPY node /usr/local/bin/
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /usr/local/share/stand-in-ca.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && groupadd --gid 1000 node \\
  && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/stand-in-ca.crt npm_config_cafile=/usr/local/share/stand-in-ca.crt
CMD ["node"]
`
    },
  },
]

/** The labels each test build gets, as a release build would pass them. */
export function buildLabels(version: string): Record<string, string> {
  const git = (...args: string[]) =>
    Bun.spawnSync(["git", "-C", REPO, ...args])
      .stdout.toString()
      .trim()
  return { VERSION: version, REVISION: git("rev-parse", "HEAD") || "unknown", SOURCE: `file://${REPO}` }
}

/** `sentiment-polarity/gateway:1`, or `sentiment-polarity/gateway-deno:1` from Dockerfile.deno. */
export const imageName = (service: Service, version: string, runtime: Runtime = "bun") =>
  `sentiment-polarity/${service}${runtime === "bun" ? "" : `-${runtime}`}:${version}`

/** Build one service's image from the runtime's real Dockerfile, with the build arguments a release would use. */
export async function buildServiceImage(
  engine: Engine,
  service: Service,
  version: string,
  runtime: Runtime = "bun",
): Promise<string> {
  const name = imageName(service, version, runtime)
  const args = Object.entries({ SERVICE: service, ...buildLabels(version) }).flatMap(([key, value]) => [
    "--build-arg",
    `${key}=${value}`,
  ])
  await timed(`build ${name}`, () =>
    engine.docker([
      "build",
      "-q",
      "--network",
      "host",
      "-f",
      join(REPO, DOCKERFILES[runtime]),
      ...args,
      "-t",
      name,
      REPO,
    ]),
  )
  return name
}

/** An image's size in bytes, as `docker images` shows it (all its layers, the base's included). */
export async function imageSize(engine: Engine, image: string): Promise<number> {
  return Number(await engine.docker(["image", "inspect", "--format", "{{.Size}}", image]))
}
