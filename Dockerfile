# syntax=docker/dockerfile:1
# pullchat: build with `docker build -t pullchat .`, run with
#   docker run -p 8080:8080 -v pullchat-data:/data pullchat
# or the whole stack (pullchat + Prometheus + Grafana) with `docker compose up --build`.
#
# Debian (glibc), not Alpine: uWebSockets.js (@trufflesuite/uws-js-unofficial) ships prebuilt
# binaries for glibc only.

# --- build: compile TypeScript, then drop the dev dependencies ---------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime --------------------------------------------------------------------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data
WORKDIR /app
# The app's files stay root-owned and read-only to the server; only /data is its to write.
COPY --from=build /build/package.json ./package.json
COPY --from=build /build/node_modules ./node_modules
COPY --from=build /build/dist ./dist
# The image's unprivileged `node` user (uid 1000) runs the server and owns the data volume.
# /data is created and chowned before VOLUME, so that a new named volume starts owned by it.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
EXPOSE 8080
# No curl in the slim image: node itself asks GET /ping (on $PORT, 8080 unless overridden).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "require('http').get({host:'127.0.0.1',port:process.env.PORT||8080,path:'/ping',timeout:2000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
# SIGTERM: the workers stop listening and answer what is in flight (SHUTDOWN_TIMEOUT_MS,
# 10 s by default), shards flush, exit 0. Give `docker stop` more than that (compose: 15 s).
STOPSIGNAL SIGTERM
# --v8-pool-size=1 --initial-old-space-size=64: as `npm start` (package.json; README "Threads").
CMD ["node", "--v8-pool-size=1", "--initial-old-space-size=64", "dist/cluster.js"]
