// The Kubernetes manifests (deploy/k8s) cannot be applied here (no cluster), so check what can be checked
// against the code: each Deployment runs the image of a service that exists, sets only variables that service
// reads and accepts, serves and probes the port its settings give, and the Service and the KEDA ScaledObject
// point at what exists, the latter at the work queues the topology declares under the ConfigMap's prefix.
import { describe, expect, test } from "bun:test"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { GatewayEnv, loadGatewayConfig } from "../services/gateway.ts"
import { loadWorkerConfig, WorkerEnv } from "../services/polarity-worker.ts"
import { loadStoreConfig, StoreEnv } from "../services/status-store.ts"
import { topologyNames } from "../shared/topology.ts"

const DIR = "deploy/k8s"

interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string; labels?: Record<string, string> }
  // biome-ignore lint/suspicious/noExplicitAny: each kind has its own spec; the checks below read what they need
  spec?: any
  data?: Record<string, string>
  resources?: string[]
}
interface EnvVar {
  name: string
  value?: string
  valueFrom?: { secretKeyRef?: { name: string; key: string } }
}
interface Container {
  name: string
  image: string
  command?: string[]
  args?: string[]
  ports: { name: string; containerPort: number }[]
  env?: EnvVar[]
  envFrom?: { configMapRef?: { name: string } }[]
  volumeMounts?: { name: string; mountPath: string }[]
  readinessProbe?: { httpGet?: { path: string; port: string | number } }
  livenessProbe?: { tcpSocket?: { port: string | number } }
}

const yamlFiles = readdirSync(DIR).filter((file) => file.endsWith(".yaml"))
const parse = (file: string): Manifest[] => {
  const parsed = Bun.YAML.parse(readFileSync(join(DIR, file), "utf8")) as Manifest | Manifest[]
  return Array.isArray(parsed) ? parsed : [parsed]
}
const kustomization = parse("kustomization.yaml")[0]
const manifests = yamlFiles.filter((file) => file !== "kustomization.yaml").flatMap(parse)
const find = (kind: string, name: string) =>
  manifests.find((m) => m.kind === kind && m.metadata.name === name)
const configMaps = manifests.filter((m) => m.kind === "ConfigMap")
const packageVersion = (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version

const services = {
  gateway: { entries: GatewayEnv, load: loadGatewayConfig, port: "PORT" },
  "polarity-worker": { entries: WorkerEnv, load: loadWorkerConfig, port: "WORKER_PORT" },
  "status-store": { entries: StoreEnv, load: loadStoreConfig, port: "STATUS_STORE_PORT" },
} as const

/** The container's environment as the service would see it: ConfigMaps first, then its own `env`. */
function environmentOf(container: Container) {
  const literal: Record<string, string> = {}
  for (const { configMapRef } of container.envFrom ?? []) {
    const configMap = configMapRef && find("ConfigMap", configMapRef.name)
    expect({ configMap: configMapRef?.name, exists: Boolean(configMap) }).toEqual({
      configMap: configMapRef?.name,
      exists: true,
    })
    Object.assign(literal, configMap?.data)
  }
  const fromSecrets: string[] = []
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) literal[variable.name] = variable.value
    else if (variable.valueFrom?.secretKeyRef) fromSecrets.push(variable.name)
    else throw new Error(`${variable.name}: neither a value nor a secret`)
  }
  return { literal, fromSecrets }
}

describe("deploy/k8s", () => {
  test("the kustomization lists every manifest in the directory, and only those", () => {
    expect(kustomization?.resources?.toSorted()).toEqual(
      yamlFiles.filter((file) => file !== "kustomization.yaml").toSorted(),
    )
  })

  for (const [name, service] of Object.entries(services)) {
    test(`${name}: runs its own image and sets only settings it reads and accepts, on the port it serves`, () => {
      const deployment = find("Deployment", name)
      const pod = deployment?.spec.template
      const [container, ...others] = (pod?.spec.containers ?? []) as Container[]
      expect(others).toEqual([])
      if (!container) throw new Error(`no Deployment ${name} with a container`)

      // The image's entrypoint runs the service (Dockerfile); nothing here overrides it.
      expect(existsSync(`services/${name}.ts`)).toBe(true)
      expect(container.image).toBe(`sentiment-polarity/${name}:${packageVersion}`)
      expect([container.command, container.args]).toEqual([undefined, undefined])

      const { literal, fromSecrets } = environmentOf(container)
      const unknown = [...Object.keys(literal), ...fromSecrets].filter((key) => !(key in service.entries))
      expect(unknown).toEqual([])
      const config = service.load(literal) as Record<string, unknown>
      expect(config.QUEUE_TYPE).toBe("quorum")

      const [port, ...otherPorts] = container.ports
      expect(otherPorts).toEqual([])
      expect(port).toEqual({ name: "http", containerPort: Number(config[service.port]) })
      expect(container.readinessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" })
      expect(container.livenessProbe?.tcpSocket).toEqual({ port: "http" })
      expect(pod?.metadata.annotations["prometheus.io/port"]).toBe(String(config[service.port]))

      expect(deployment?.spec.selector.matchLabels).toEqual({ "app.kubernetes.io/name": name })
      expect(pod?.metadata.labels).toMatchObject(deployment?.spec.selector.matchLabels)
    })
  }

  test("every file a setting names (…_FILE, …_PATH) is on a volume the pod mounts", () => {
    const files = Object.keys(services).flatMap((name) => {
      const pod = find("Deployment", name)?.spec.template.spec
      return ((pod?.containers ?? []) as Container[]).flatMap((container) =>
        Object.entries(environmentOf(container).literal)
          .filter(([key]) => /_(FILE|PATH)$/.test(key))
          .map(([key, path]) => {
            const mount = container.volumeMounts?.find((m) => m.mountPath === dirname(path))
            const volume = pod.volumes?.find((v: { name: string }) => v.name === mount?.name)
            const source = volume?.secret?.secretName ?? volume?.persistentVolumeClaim?.claimName
            return { service: name, key, mounted: Boolean(source) }
          }),
      )
    })
    expect(files.map((f) => f.key).toSorted()).toEqual(["API_KEYS_FILE"])
    expect(files.filter((f) => !f.mounted)).toEqual([])
  })

  test("the status store's replicas share a PostgreSQL database from its Secret, and one always runs", () => {
    const deployment = find("Deployment", "status-store")
    const [container] = (deployment?.spec.template.spec.containers ?? []) as Container[]
    if (!container) throw new Error("no Deployment status-store with a container")
    const { literal, fromSecrets } = environmentOf(container)
    // A SQLite file would be a pod's own: replicas would each keep tasks of their own.
    expect({
      secrets: fromSecrets.toSorted(),
      path: literal.DATABASE_PATH,
      volumes: container.volumeMounts,
    }).toEqual({
      secrets: ["AMQP_URL", "DATABASE_URL"],
      path: undefined,
      volumes: undefined,
    })
    expect(
      loadStoreConfig({ ...literal, DATABASE_URL: "postgres://db/tasks" }).DATABASE_POOL_SIZE,
    ).toBeGreaterThan(0)
    expect(deployment?.spec.replicas).toBeGreaterThan(1)
    expect(deployment?.spec.strategy).toBeUndefined()
    const budget = find("PodDisruptionBudget", "status-store")
    expect(budget?.spec).toEqual({
      minAvailable: 1,
      selector: { matchLabels: deployment?.spec.selector.matchLabels },
    })
  })

  test("the gateway's Service sends its port to the pods' http port", () => {
    const service = find("Service", "gateway")
    expect(service?.spec.selector).toEqual(find("Deployment", "gateway")?.spec.selector.matchLabels)
    expect(service?.spec.ports).toEqual([{ name: "http", port: 80, targetPort: "http" }])
  })

  test("KEDA scales the worker Deployment on the depth of each work queue the topology declares", () => {
    const scaled = manifests.find((m) => m.kind === "ScaledObject")
    expect(scaled?.apiVersion).toBe("keda.sh/v1alpha1")
    expect(find("Deployment", scaled?.spec.scaleTargetRef.name)?.metadata.name).toBe("polarity-worker")
    const prefix = configMaps.map((m) => m.data?.AMQP_PREFIX).find((p) => p !== undefined)
    const workQueues = Object.values(topologyNames(prefix ?? "").taskQueues)
    const triggers = scaled?.spec.triggers as {
      type: string
      metadata: { queueName: string; mode: string; value: string }
      authenticationRef: { name: string }
    }[]
    expect(triggers.map((t) => t.metadata.queueName).toSorted()).toEqual(workQueues.toSorted())
    for (const trigger of triggers) {
      expect(trigger.type).toBe("rabbitmq")
      expect(trigger.metadata.mode).toBe("QueueLength")
      expect(Number(trigger.metadata.value)).toBeGreaterThan(0)
      expect(find("TriggerAuthentication", trigger.authenticationRef.name)).toBeDefined()
    }
  })
})
