// What the status store's replicas tell each other after a commit: which tasks ended, which groups they belong
// to, and which read-your-writes barriers went by (barriers.ts). A query held on one replica (`?wait=`, a
// group, a lookup) wakes when any replica applied its task's end. One process (SQLite) tells itself in memory;
// on PostgreSQL the notice goes out by NOTIFY on the shared database, and every replica LISTENs.
//
// The notice is sent after the commit, not inside it: a replica that dies between the two loses it, and a
// listening connection that drops loses whatever was sent meanwhile. So a held query on a replicated store also
// reads again every `recheckMs` without being told, and every held query reads again when the listener reconnects:
// a lost notice costs a waiter that much latency, never a wrong answer.
import postgres from "postgres"
import type { Logger } from "../../shared/log.ts"

export interface Changes {
  /** Tasks that entered a final status (or a higher-ranked one). */
  ended: string[]
  /** Groups one of whose tasks ended. */
  groups: string[]
  /** Read-your-writes barriers this replica committed, in order with what it was given before them (barriers.ts). */
  passed: string[]
  /** Barriers another replica passed, after which this one committed what it had been given before them. */
  flushed: string[]
}

export interface ChangeListener {
  /** `here`: this replica applied them; otherwise another one did. */
  changed(changes: Changes, here: boolean): void
  /** Notices may have been missed (the listening connection came back): every held query reads again. */
  missed(): void
}

export interface ChangeFeed {
  /** Several replicas share the database and the events queue, and tell each other by this feed. */
  readonly shared: boolean
  /**
   * How often a held query reads again without a notice: Infinity where no notice can be lost (one process), a
   * second or so where one can (the notice is sent after the commit, by another process).
   */
  readonly recheckMs: number
  /** Tell this replica's listener at once, and every other replica's. Never throws: a lost notice is covered. */
  publish(changes: Changes): Promise<void>
  close(): Promise<void>
}

type Kind = keyof Changes
const KINDS: Kind[] = ["ended", "groups", "passed", "flushed"]
/** On the wire: short keys, as every byte counts against the payload's limit. */
const WIRE: Record<Kind, string> = { ended: "e", groups: "g", passed: "p", flushed: "f" }

export const noChanges = (changes: Changes) => KINDS.every((kind) => changes[kind].length === 0)

/** One process, one SQLite file: the replica that commits is the only one that holds queries. */
export function inProcessFeed(listener: ChangeListener): ChangeFeed {
  return {
    shared: false,
    recheckMs: Number.POSITIVE_INFINITY,
    async publish(changes) {
      if (!noChanges(changes)) listener.changed(changes, true)
    },
    async close() {},
  }
}

/** PostgreSQL's NOTIFY payloads must be shorter than 8000 bytes; ids are ASCII, so characters are bytes. */
export const MAX_PAYLOAD_BYTES = 7900
/** The LISTEN channel; NOTIFY is scoped to the database, which is one deployment's. */
export const CHANGES_CHANNEL = "status_store_changes"

/** The changes as NOTIFY payloads of at most `maxBytes` each, each naming the replica that sent it. */
export function toPayloads(replica: string, changes: Changes, maxBytes = MAX_PAYLOAD_BYTES): string[] {
  const payloads: string[] = []
  const head = `{"r":${JSON.stringify(replica)}`
  let current = emptyBatch()
  let bytes = head.length + 1
  const flush = () => {
    const parts = KINDS.filter((kind) => current[kind].length > 0).map(
      (kind) => `"${WIRE[kind]}":${JSON.stringify(current[kind])}`,
    )
    if (parts.length > 0) payloads.push(`${head},${parts.join(",")}}`)
    current = emptyBatch()
    bytes = head.length + 1
  }
  for (const kind of KINDS) {
    for (const id of changes[kind]) {
      if (bytes + idCost(id, current[kind].length === 0) > maxBytes) flush()
      bytes += idCost(id, current[kind].length === 0)
      current[kind].push(id)
    }
  }
  flush()
  return payloads
}

/** An id's bytes with its quotes and comma, and, as a kind's first, the kind's `,"e":[]` around it. */
const idCost = (id: string, first: boolean) => id.length + 3 + (first ? 7 : 0)

function emptyBatch(): Changes {
  return { ended: [], groups: [], passed: [], flushed: [] }
}

/** A payload back as changes, with the replica that sent it; null when it is not one of ours. */
export function fromPayload(payload: string): { replica: string; changes: Changes } | null {
  try {
    const parsed = JSON.parse(payload) as Record<string, unknown>
    if (typeof parsed.r !== "string") return null
    const ids = (value: unknown) =>
      Array.isArray(value) ? value.filter((id): id is string => typeof id === "string") : []
    return {
      replica: parsed.r,
      changes: {
        ended: ids(parsed[WIRE.ended]),
        groups: ids(parsed[WIRE.groups]),
        passed: ids(parsed[WIRE.passed]),
        flushed: ids(parsed[WIRE.flushed]),
      },
    }
  } catch {
    return null
  }
}

/**
 * LISTEN on the shared database, on a connection of its own (the driver's, which reconnects by itself), and
 * NOTIFY on another; a replica skips its own notices, as it told its listener already.
 */
export async function postgresFeed(
  url: string,
  replica: string,
  listener: ChangeListener,
  log: Logger,
  recheckMs: number,
): Promise<ChangeFeed> {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  let listening = false
  try {
    await sql.listen(
      CHANGES_CHANNEL,
      (payload) => {
        const notice = fromPayload(payload)
        if (notice && notice.replica !== replica) listener.changed(notice.changes, false)
      },
      () => {
        // Called on the first LISTEN and on every one after a reconnect; only the latter can have missed any.
        if (listening) {
          log.warn("change feed listening again; held queries read again")
          listener.missed()
        }
        listening = true
      },
    )
  } catch (err) {
    await sql.end({ timeout: 1 })
    throw err
  }
  return {
    shared: true,
    recheckMs,
    async publish(changes) {
      if (noChanges(changes)) return
      listener.changed(changes, true)
      try {
        for (const payload of toPayloads(replica, changes)) await sql.notify(CHANGES_CHANNEL, payload)
      } catch (err) {
        log.warn("changes not announced to the other replicas; their held queries read again on their own", {
          err: (err as Error).message,
        })
      }
    },
    async close() {
      await sql.end({ timeout: 5 })
    },
  }
}
