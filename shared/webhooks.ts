// Completion webhooks, what the gateway and the worker both need: whether a callback URL may be called at all.
// A URL is refused when its host is, or resolves to, an address the service's own network can reach and the
// outside cannot (loopback, private, link-local, unique-local, CGNAT, the cloud metadata address), unless
// WEBHOOK_ALLOW_HOSTS names it: otherwise anyone could make our workers call an internal service (SSRF).
import { BlockList, isIP } from "node:net"

/** Addresses no callback may reach unless allowed. */
const INTERNAL = new BlockList()
for (const [network, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  INTERNAL.addSubnet(network, prefix, "ipv4")
}
for (const [network, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["::ffff:0:0", 96],
  ["64:ff9b::", 96],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
] as const) {
  INTERNAL.addSubnet(network, prefix, "ipv6")
}

/** WEBHOOK_ALLOW_HOSTS, parsed: host names (exact, any case), addresses, and networks as address/prefix. */
export class AllowedHosts {
  private readonly names = new Set<string>()
  private readonly addresses = new BlockList()

  constructor(list: string) {
    for (const entry of list.split(",").map((item) => item.trim().toLowerCase())) {
      if (!entry) continue
      const [address, prefix] = entry.split("/")
      const family = isIP(address ?? "")
      if (family === 0) this.names.add(entry)
      else if (prefix === undefined) this.addresses.addAddress(address ?? "", family === 4 ? "ipv4" : "ipv6")
      else this.addresses.addSubnet(address ?? "", Number(prefix), family === 4 ? "ipv4" : "ipv6")
    }
  }

  /** Whether this host name, or this address, was named. */
  allows(host: string): boolean {
    const bare = bareHost(host)
    const family = isIP(bare)
    return (
      this.names.has(bare) || (family !== 0 && this.addresses.check(bare, family === 4 ? "ipv4" : "ipv6"))
    )
  }
}

/** A URL's host without the brackets of an IPv6 literal, lower-cased. */
export function bareHost(host: string): string {
  return host.replace(/^\[(.*)\]$/, "$1").toLowerCase()
}

/** Whether an address (IPv4 or IPv6) is one only an internal network reaches. */
export function isInternalAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return false
  return INTERNAL.check(address, family === 4 ? "ipv4" : "ipv6")
}

/**
 * Why a callback URL is refused before anything is resolved, or null: not http(s), credentials in it, or a host
 * that is internal by its name alone (`localhost`, an internal address literal) and not allowed.
 */
export function callbackUrlProblem(raw: string, allowed: AllowedHosts): string | null {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return `callback_url: "${raw}" is not a URL`
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `callback_url: ${url.protocol} is not http: or https:`
  }
  if (url.username || url.password) return "callback_url: a callback URL must not hold credentials"
  const host = bareHost(url.hostname)
  const internal = host === "localhost" || host.endsWith(".localhost") || isInternalAddress(host)
  if (internal && !allowed.allows(host)) {
    return `callback_url: ${host} is a loopback or private address; WEBHOOK_ALLOW_HOSTS must name it to be called`
  }
  return null
}
