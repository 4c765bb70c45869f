// A PostgreSQL database of a test's own on the machine's server (127.0.0.1:5432, trust auth), created for it and
// dropped afterwards, even when services still hold connections to it.
import postgres from "postgres"

/** The local server (trust auth, user postgres), without a database: the tests make theirs on it. */
export const POSTGRES_SERVER = process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432"
/** Its maintenance database, from which test databases are created and dropped. */
const POSTGRES_ADMIN_URL = `${POSTGRES_SERVER}/postgres`

export interface TestDatabase extends AsyncDisposable {
  name: string
  /** What a service is given as DATABASE_URL. */
  url: string
}

/** A new, empty database named after the test: `t_<topic>_<pid>_<random>`. */
export async function createTestDatabase(topic: string): Promise<TestDatabase> {
  const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`
  const name = `t_${topic.toLowerCase().replace(/[^a-z0-9]+/g, "_")}_${suffix}`.slice(0, 63)
  await withAdmin((sql) => sql.unsafe(`CREATE DATABASE "${name}"`))
  return {
    name,
    url: `${POSTGRES_SERVER}/${name}`,
    [Symbol.asyncDispose]: () =>
      withAdmin((sql) => sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)),
  }
}

async function withAdmin(use: (sql: postgres.Sql) => PromiseLike<unknown>): Promise<void> {
  const sql = postgres(POSTGRES_ADMIN_URL, { max: 1, onnotice: () => {} })
  try {
    await use(sql)
  } finally {
    await sql.end({ timeout: 5 })
  }
}
