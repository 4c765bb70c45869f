// API keys: who a request comes from. A key is a random token the gateway never keeps: API_KEYS_FILE and API_KEYS
// hold one line per key, `<name> <role> sha256:<hex digest of the key>`. The name owns what the key submits (give a
// replacement key the same name to rotate it); `admin` sees every task. The file is read again when it changes, so
// keys are added and revoked without a restart. Run as a program, this module mints a key:
//   npm run api-key -- <name> [admin]
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { readFileSync, statSync } from "node:fs"
import { ConfigError } from "../../shared/config.ts"
import type { Logger } from "../../shared/log.ts"

export interface ApiKey {
  /** Owns the tasks and groups the key submits; several keys may share a name (a key being rotated). */
  name: string
  admin: boolean
}

export const KEY_NAME = /^[A-Za-z0-9_.-]{1,64}$/
const LINE = /^(\S+)\s+(\S+)\s+sha256:([0-9a-f]{64})$/

/** The SHA-256 of a key: keys are 256 random bits, so a fast hash is enough (nothing to guess, no salt needed). */
export const digestOf = (key: string): Buffer => createHash("sha256").update(key).digest()

/** Equal secrets, compared in constant time (digests first, so that their lengths say nothing either). */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHmac("sha256", "compare").update(text).digest()
  return timingSafeEqual(digest(given), digest(expected))
}

/** A new key: 256 random bits, base64url, with a prefix that secret scanners and people recognise. */
export const mintKey = (): string => `spk_${randomBytes(32).toString("base64url")}`

/** One line of API_KEYS_FILE or API_KEYS. */
export const keyLine = (name: string, admin: boolean, key: string): string =>
  `${name} ${admin ? "admin" : "user"} sha256:${digestOf(key).toString("hex")}`

/** The keys of a file's text (or API_KEYS, lines or `;`-separated), by hex digest. A bad line names itself. */
export function parseKeys(text: string, source: string): Map<string, ApiKey> {
  const keys = new Map<string, ApiKey>()
  text.split(/[\n;]/).forEach((raw, index) => {
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) return
    const [, name = "", role = "", digest = ""] = LINE.exec(line) ?? []
    const where = `${source} line ${index + 1}`
    if (!digest) throw new ConfigError(`${where}: expected "<name> <user|admin> sha256:<64 hex digits>"`)
    if (!KEY_NAME.test(name)) throw new ConfigError(`${where}: a name is 1-64 letters, digits, '_', '.', '-'`)
    if (role !== "user" && role !== "admin") throw new ConfigError(`${where}: the role is user or admin`)
    if (keys.has(digest)) throw new ConfigError(`${where}: this key is listed twice`)
    keys.set(digest, { name, admin: role === "admin" })
  })
  return keys
}

interface KeySources {
  API_KEYS_FILE?: string | undefined
  API_KEYS?: string | undefined
  API_KEYS_RELOAD_MS: number
}

export class ApiKeys {
  private keys: { digest: Buffer; key: ApiKey }[]
  private fileStamp: string | undefined
  private readonly timer: ReturnType<typeof setInterval> | undefined

  private constructor(
    private readonly sources: KeySources,
    private readonly log: Logger,
  ) {
    this.fileStamp = this.stamp()
    this.keys = this.read()
    if (sources.API_KEYS_FILE) {
      this.timer = setInterval(() => this.reloadIfChanged(), sources.API_KEYS_RELOAD_MS)
      this.timer.unref?.()
    }
  }

  /** The keys, or undefined when none are configured: the API is then open to anyone who reaches it. */
  static load(sources: KeySources, log: Logger): ApiKeys | undefined {
    // An empty API_KEYS is unset (compose files pass `${API_KEYS:-}`); an empty file is keys mode with no key.
    if (sources.API_KEYS_FILE === undefined && !sources.API_KEYS?.trim()) return undefined
    return new ApiKeys(sources, log)
  }

  get size(): number {
    return this.keys.length
  }

  /**
   * The key a request presents, or undefined. Its digest is compared with every key's, in constant time and
   * without stopping at a match, so the time taken says nothing about which keys exist (a few µs per 100 keys).
   */
  verify(presented: string): ApiKey | undefined {
    const digest = digestOf(presented)
    let found: ApiKey | undefined
    for (const entry of this.keys) {
      if (timingSafeEqual(entry.digest, digest)) found = entry.key
    }
    return found
  }

  close(): void {
    clearInterval(this.timer)
  }

  private read(): { digest: Buffer; key: ApiKey }[] {
    const { API_KEYS_FILE: file, API_KEYS: inline } = this.sources
    const keys = inline ? parseKeys(inline, "API_KEYS") : new Map<string, ApiKey>()
    if (file) {
      let text: string
      try {
        text = readFileSync(file, "utf8")
      } catch (err) {
        throw new ConfigError(`API_KEYS_FILE: cannot read ${file} (${(err as Error).message})`)
      }
      for (const [digest, key] of parseKeys(text, file)) keys.set(digest, key)
    }
    return [...keys].map(([digest, key]) => ({ digest: Buffer.from(digest, "hex"), key }))
  }

  /** Size and modification time: a change of either is read again. */
  private stamp(): string | undefined {
    if (!this.sources.API_KEYS_FILE) return undefined
    try {
      const { size, mtimeMs } = statSync(this.sources.API_KEYS_FILE)
      return `${size}:${mtimeMs}`
    } catch {
      return undefined
    }
  }

  /** A file that became unreadable or wrong keeps the keys read before: a typo must not lock everyone out. */
  private reloadIfChanged(): void {
    const stamp = this.stamp()
    if (stamp === this.fileStamp) return
    this.fileStamp = stamp
    try {
      this.keys = this.read()
      this.log.info("api keys reloaded", { keys: this.keys.length })
    } catch (err) {
      this.log.error("api keys not reloaded; the keys read before stay in force", {
        err: (err as Error).message,
        keys: this.keys.length,
      })
    }
  }
}

if (import.meta.main) {
  const [name, role = "user"] = process.argv.slice(2)
  if (!name || !KEY_NAME.test(name) || (role !== "user" && role !== "admin")) {
    console.error("usage: npm run api-key -- <name: 1-64 of A-Z a-z 0-9 _ . -> [user|admin]")
    process.exit(2)
  }
  const key = mintKey()
  console.log(`key (give it to the client; it is kept nowhere else): ${key}`)
  console.log(`line for API_KEYS_FILE (or API_KEYS):                 ${keyLine(name, role === "admin", key)}`)
}
