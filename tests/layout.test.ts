// The code's layout as docs/development.md describes it: files import downwards (an entry → its folder →
// shared/), never in a circle, and shared/ never reaches into a service.
import { describe, expect, test } from "bun:test"
import { readdirSync, readFileSync } from "node:fs"
import { dirname, join, normalize } from "node:path"

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return entry.name.endsWith(".ts") ? [path] : []
  })
}

/** Each file's relative imports (`import … from "./x.ts"`, `export … from`, `import("./x.ts")`), resolved. */
function importGraph(files: string[]): Map<string, string[]> {
  const specifier = /(?:from|import\()\s*"(\.{1,2}\/[^"]+\.ts)"/g
  return new Map(
    files.map((file) => {
      const source = readFileSync(file, "utf8")
      const targets = [...source.matchAll(specifier)].map((match) =>
        normalize(join(dirname(file), match[1] ?? "")),
      )
      return [file, [...new Set(targets)]]
    }),
  )
}

/** Every cycle found by a depth-first walk, each as the files around it. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, "open" | "done">()
  const stack: string[] = []
  const visit = (file: string) => {
    state.set(file, "open")
    stack.push(file)
    for (const target of graph.get(file) ?? []) {
      if (state.get(target) === "open") found.push([...stack.slice(stack.indexOf(target)), target])
      else if (!state.has(target)) visit(target)
    }
    stack.pop()
    state.set(file, "done")
  }
  for (const file of graph.keys()) if (!state.has(file)) visit(file)
  return found
}

const graph = importGraph([...sourceFiles("services"), ...sourceFiles("shared")])

describe("the code's layout", () => {
  test("reads the services and shared/ (the walk is not empty)", () => {
    expect(graph.size).toBeGreaterThan(40)
    expect(graph.get("services/gateway.ts")).toContain("shared/contracts.ts")
  })

  test("no module imports itself through others", () => {
    expect(cycles(graph)).toEqual([])
  })

  test("shared/ imports nothing from services/", () => {
    const upward = [...graph].flatMap(([file, targets]) =>
      file.startsWith("shared/") ? targets.filter((target) => target.startsWith("services/")) : [],
    )
    expect(upward).toEqual([])
  })

  test("a service's folder is imported by that service only", () => {
    const crossing = [...graph].flatMap(([file, targets]) => {
      const owner = file.match(/^services\/([^/.]+)/)?.[1]
      return targets
        .filter((target) => /^services\/[^/]+\//.test(target))
        .filter((target) => target.split("/")[1] !== owner)
        .map((target) => `${file} → ${target}`)
    })
    expect(crossing).toEqual([])
  })
})
