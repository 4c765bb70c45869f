// The benchmark's HTTP client against a real Bun.serve: what it reads must be what the server sent.
import { afterAll, describe, expect, test } from "bun:test"
import { HttpClient } from "../bench/http-client.ts"

const connections = new Set<unknown>()
const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(req, srv) {
    connections.add(srv.requestIP(req)?.port)
    const url = new URL(req.url)
    if (url.pathname === "/echo") {
      const body = await req.text()
      return Response.json(
        { method: req.method, type: req.headers.get("content-type"), body },
        { status: 201 },
      )
    }
    if (url.pathname === "/big") return new Response("é".repeat(200_000))
    if (url.pathname === "/close") return new Response("bye", { headers: { connection: "close" } })
    return Response.json({ missing: url.pathname }, { status: 404 })
  },
})
const client = new HttpClient(`http://127.0.0.1:${server.port}`)

afterAll(() => {
  client.close()
  server.stop(true)
})

describe("bench HTTP client", () => {
  test("sends a JSON body and reads the status and the JSON answer", async () => {
    const res = await client.request("POST", "/echo", JSON.stringify({ review: "naïve ✓" }))
    expect(res.status).toBe(201)
    expect(res.json()).toEqual({
      method: "POST",
      type: "application/json",
      body: JSON.stringify({ review: "naïve ✓" }),
    })
  })

  test("reads a body that arrives in many chunks, multi-byte characters included", async () => {
    const res = await client.request("GET", "/big")
    expect(res.status).toBe(200)
    expect(res.body).toBe("é".repeat(200_000))
  })

  test("keeps connections: sequential requests share one", async () => {
    connections.clear()
    for (let i = 0; i < 20; i++) expect((await client.request("GET", "/nowhere")).status).toBe(404)
    expect(connections.size).toBe(1)
  })

  test("opens a new connection after the server closed one", async () => {
    expect((await client.request("GET", "/close")).body).toBe("bye")
    connections.clear()
    expect((await client.request("GET", "/nowhere")).status).toBe(404)
    expect(connections.size).toBe(1)
  })

  test("concurrent requests each get their own answer", async () => {
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.request("POST", "/echo", JSON.stringify({ i }))),
    )
    expect(answers.map((res) => JSON.parse(res.json<{ body: string }>().body).i)).toEqual(
      Array.from({ length: 50 }, (_, i) => i),
    )
  })
})
