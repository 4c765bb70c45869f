# One image per service: docker build --build-arg SERVICE=gateway|polarity-worker|status-store .
# Dependencies are installed by npm from the lockfile (the same one CI uses); Bun runs the TypeScript as is.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM oven/bun:1.4.5-slim
ARG SERVICE
RUN test -n "$SERVICE" || (echo "build with --build-arg SERVICE=<gateway|polarity-worker|status-store>" && false)
# JavaScriptCore sizes its heap from the machine's RAM; told 128 MiB, and to grow a small heap by 1.6 rather than
# 2 times, it collects sooner. Without its top tier (FTL), no compile competes with the pipeline for the CPU or
# spikes the memory. Each service stays under 80 MB of RSS at full load (docs/performance.md).
ENV SERVICE=${SERVICE} NODE_ENV=production BUN_JSC_forceRAMSize=134217728 BUN_JSC_smallHeapGrowthFactor=1.6 \
    BUN_JSC_useFTLJIT=0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY shared ./shared
COPY services ./services
# The status store's volume mounts here; a new named volume takes this directory's owner.
RUN mkdir -p /data && chown bun:bun /data
USER bun
# Exec form through sh so SIGTERM reaches bun directly (exec), for a graceful stop.
CMD ["sh", "-c", "exec bun services/${SERVICE}.ts"]
