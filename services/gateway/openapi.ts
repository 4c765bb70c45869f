// The gateway's OpenAPI 3.1 document, generated from the same valibot schemas that validate the requests
// (there is no hand-written copy to drift), and the interactive docs: Swagger UI served from node_modules,
// so /docs works offline.
import { STATUS_CODES } from "node:http"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import {
  type ConversionConfig,
  type JsonSchema,
  toJsonSchema,
  toJsonSchemaDefs,
} from "@valibot/to-json-schema"
import type { Context, Hono } from "hono"
import type { H } from "hono/types"
import * as v from "valibot"
import { fileResponse } from "../../shared/runtime.ts"

export type Method = "get" | "post" | "patch" | "delete"
type Schemas = Record<string, v.GenericSchema>
type QuerySchema = v.ObjectSchema<v.ObjectEntries, v.ErrorMessage<v.ObjectIssue> | undefined>

export interface ResponseDoc<TName extends string> {
  description: string
  /** A response schema by its component name; none for an empty or non-JSON body. */
  schema?: TName
  /** Another media type than application/json, e.g. text/event-stream; its body is described in words. */
  mediaType?: string
  headers?: Record<string, string>
}

export interface OperationDoc<TRequest extends string, TResponse extends string> {
  summary: string
  description?: string
  tag: string
  deprecated?: boolean
  /** Path parameters by name (`:name` in the route). */
  path?: Record<string, v.GenericSchema>
  /** The query string as the valibot object schema that parses it: each entry is a parameter. */
  query?: QuerySchema
  headers?: Record<string, v.GenericSchema>
  body?: TRequest
  responses: Partial<Record<number, ResponseDoc<TResponse>>>
  /** Statuses answered with application/problem+json. */
  problems?: readonly number[]
}

/**
 * Request bodies are documented as the client sends them (`input`: before defaults and trimming), responses
 * and parameters as the API hands them over (`output`). `trim` has no JSON Schema keyword; the schemas'
 * descriptions say that lengths count after trimming. A `check` or `raw_check` has none either: the description
 * says it, or metadata states it (`uniqueItems`). Nor has `finite`, which needs none: a JSON number is finite (the
 * check is for what JSON.parse makes of 1e400, which JSON cannot write back).
 */
export const REQUEST_SCHEMA_CONFIG = {
  target: "draft-2020-12",
  typeMode: "input",
  ignoreActions: ["trim", "check", "raw_check", "finite"],
} as const satisfies ConversionConfig
/** A schedule's task is a request body kept in a response: it was trimmed and checked on the way in. */
const OUTPUT_SCHEMA_CONFIG = {
  target: "draft-2020-12",
  typeMode: "output",
  ignoreActions: REQUEST_SCHEMA_CONFIG.ignoreActions,
} as const satisfies ConversionConfig

const componentRef = (name: string) => `#/components/schemas/${name}`

function parameterSchema(schema: v.GenericSchema): JsonSchema {
  const { $schema: _dialect, ...json } = toJsonSchema(schema, OUTPUT_SCHEMA_CONFIG)
  return json
}

function parameter(name: string, where: "path" | "query" | "header", schema: v.GenericSchema) {
  const json = parameterSchema(schema)
  const optional = schema.type === "optional" || schema.type === "nullish"
  return {
    name,
    in: where,
    required: where === "path" || !optional,
    ...(json.description && { description: json.description }),
    schema: json,
  }
}

/** `ApiDocs.route` bound to an app, as a module that registers routes of its own sees it. */
export type Route<TResponse extends string, TRequest extends string = never> = (
  method: Method,
  path: string,
  doc: OperationDoc<TRequest, TResponse>,
  ...handlers: [H, ...H[]]
) => void

export class ApiDocs<TRequests extends Schemas, TResponses extends Schemas> {
  private readonly paths: Record<string, Record<string, unknown>> = {}

  constructor(
    private readonly info: { title: string; version: string; description: string },
    private readonly requests: TRequests,
    private readonly responses: TResponses,
  ) {}

  /** Register a Hono route and its documentation together, so that no route goes undocumented. */
  route(
    app: Hono,
    method: Method,
    path: string,
    doc: OperationDoc<keyof TRequests & string, keyof TResponses & string>,
    ...handlers: [H, ...H[]]
  ): void {
    const openApiPath = path.replace(/:(\w+)/g, "{$1}")
    this.paths[openApiPath] ??= {}
    const pathItem = this.paths[openApiPath]
    pathItem[method] = this.operation(method, path, doc)
    app.on(method.toUpperCase(), path, ...handlers)
  }

  private operation(
    method: Method,
    path: string,
    doc: OperationDoc<keyof TRequests & string, keyof TResponses & string>,
  ) {
    const pathNames = [...path.matchAll(/:(\w+)/g)].map((match) => match[1] ?? "")
    const parameters = [
      ...pathNames.map((name) => parameter(name, "path", doc.path?.[name] ?? v.string())),
      ...Object.entries(doc.query?.entries ?? {}).map(([name, schema]) => parameter(name, "query", schema)),
      ...Object.entries(doc.headers ?? {}).map(([name, schema]) => parameter(name, "header", schema)),
    ]
    const responses: Record<string, unknown> = {}
    for (const [status, response] of Object.entries(doc.responses)) {
      if (response) responses[status] = this.response(response)
    }
    for (const status of doc.problems ?? []) {
      responses[String(status)] = {
        description: STATUS_CODES[status] ?? "Error",
        content: { "application/problem+json": { schema: { $ref: componentRef("ProblemDetails") } } },
      }
    }
    return {
      operationId: `${method}${path.replace(/[^\w]+(\w)?/g, (_, c: string | undefined) => c?.toUpperCase() ?? "")}`,
      summary: doc.summary,
      ...(doc.description && { description: doc.description }),
      tags: [doc.tag],
      ...(doc.deprecated && { deprecated: true }),
      ...(parameters.length > 0 && { parameters }),
      ...(doc.body && {
        requestBody: {
          required: true,
          content: { "application/json": { schema: { $ref: componentRef(doc.body) } } },
        },
      }),
      responses,
    }
  }

  private response(response: ResponseDoc<keyof TResponses & string>) {
    const headers = Object.entries(response.headers ?? {}).map(([name, description]) => [
      name,
      { description, schema: { type: "string" } },
    ])
    const content = response.schema
      ? { [response.mediaType ?? "application/json"]: { schema: { $ref: componentRef(response.schema) } } }
      : response.mediaType && { [response.mediaType]: { schema: { type: "string" } } }
    return {
      description: response.description,
      ...(headers.length > 0 && { headers: Object.fromEntries(headers) }),
      ...(content && { content }),
    }
  }

  document() {
    const overrideRef = ({ referenceId }: { referenceId: string }) => componentRef(referenceId)
    return {
      openapi: "3.1.0",
      info: this.info,
      paths: this.paths,
      components: {
        schemas: {
          ...toJsonSchemaDefs(this.requests, { ...REQUEST_SCHEMA_CONFIG, overrideRef }),
          ...toJsonSchemaDefs(this.responses, { ...OUTPUT_SCHEMA_CONFIG, overrideRef }),
        },
      },
    }
  }
}

// --- /docs: Swagger UI's own files, read from the package; the page and its start script are ours.

const SWAGGER_UI_DIR = dirname(fileURLToPath(import.meta.resolve("swagger-ui-dist/package.json")))
export const DOCS_ASSETS = [
  "swagger-ui.css",
  "swagger-ui-bundle.js",
  "favicon-32x32.png",
  "favicon-16x16.png",
  "start.js",
] as const

// Relative URLs, so that the page also works behind a proxy that mounts the API under a path.
const DOCS_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Sentiment polarity API</title>
    <link rel="stylesheet" href="docs/swagger-ui.css">
    <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="docs/swagger-ui-bundle.js"></script>
    <script src="docs/start.js"></script>
  </body>
</html>
`

// A file rather than an inline script, so that a strict Content-Security-Policy can forbid inline scripts.
const START_SCRIPT = `window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
})
`

const DOCS_CSP =
  "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"

export function docsPage(c: Context): Response {
  return c.html(DOCS_PAGE, 200, { "content-security-policy": DOCS_CSP })
}

const DOCS_ASSET_TYPES: Record<string, string> = {
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  png: "image/png",
}

export function docsAsset(name: (typeof DOCS_ASSETS)[number]): Response | Promise<Response> {
  const headers = {
    "cache-control": "public, max-age=3600",
    "content-type": DOCS_ASSET_TYPES[name.split(".").at(-1) ?? ""] ?? "application/octet-stream",
  }
  if (name === "start.js") return new Response(START_SCRIPT, { headers })
  return fileResponse(join(SWAGGER_UI_DIR, name), { headers })
}
