# syntax=docker/dockerfile:1

# Builder and runtime share one Debian release: a binary linked against a newer glibc than the
# runtime's fails at start with "GLIBC_2.xx not found".
ARG DEBIAN_RELEASE=bookworm
ARG RUST_VERSION=1.95

# The GraphiQL IDE's assets, from the npm registry through the lockfile; the API's build
# script embeds them into the binary.
FROM node:22-${DEBIAN_RELEASE}-slim AS ide
WORKDIR /ide
COPY api/ide/package.json api/ide/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY api/ide/ ./
RUN npm run build

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

# The dependency graph alone, so that the next stage's layer changes only when it does.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
COPY --from=ide /ide/dist api/ide/dist
# The same command CI builds with, so a broken lockfile or a missing file fails CI first.
RUN cargo build --release --locked -p stations-api --bin stations-api

# PgBouncer from the same Debian release, for `docker compose --profile replicas` (the version
# the tests run: api/tests/api/pgbouncer.rs). Its configuration is mounted from config/pgbouncer.
FROM debian:${DEBIAN_RELEASE}-slim AS pgbouncer
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends pgbouncer \
    && rm -rf /var/lib/apt/lists/*
USER 10002:10002
EXPOSE 6432
CMD ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]

# The default target: the API.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# CA certificates for sslmode=verify-full against a managed PostgreSQL. The release is pinned
# above; pinning package versions too would break the build at every Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=builder /app/target/release/stations-api /usr/local/bin/stations-api
COPY config ./config
ENV APP_ENV=production \
    APP_CONFIG_DIR=/app/config \
    APP__SERVER__HOST=0.0.0.0
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["stations-api"]
CMD ["serve"]
