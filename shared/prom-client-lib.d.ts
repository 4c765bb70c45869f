// prom-client's metric classes from their own modules (shared/metrics.ts says why), typed as the package's
// entry point types them: each module's `module.exports` is the class, its default export under ESM.
declare module "prom-client/lib/counter.js" {
  import { Counter } from "prom-client"
  export default Counter
}
declare module "prom-client/lib/gauge.js" {
  import { Gauge } from "prom-client"
  export default Gauge
}
declare module "prom-client/lib/histogram.js" {
  import { Histogram } from "prom-client"
  export default Histogram
}
declare module "prom-client/lib/registry.js" {
  import { Registry } from "prom-client"
  export default Registry
}
