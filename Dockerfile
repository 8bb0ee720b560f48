# syntax=docker/dockerfile:1

# Builder and runtime share one Debian release: a binary linked against a newer glibc than the
# runtime's fails at start with "GLIBC_2.xx not found".
ARG DEBIAN_RELEASE=bookworm
ARG RUST_VERSION=1.95

ARG NODE_MAJOR=22
# sea-orm-cli for the toolbox: the version of sea-orm in Cargo.lock (a test checks).
ARG SEA_ORM_CLI_VERSION=2.0.4

# The GraphiQL IDE's assets are committed in api/ide/dist (CI rebuilds them from the lockfile
# and fails if they differ), so that building the API needs no Node.js.

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
# The same command CI builds with, so a broken lockfile or a missing file fails CI first.
RUN cargo build --release --locked -p stations-api --bin stations-api

# `docker compose watch api-dev`: a debug build, rebuilt on every change. The dependencies are
# cooked once into a cache mount and stay there; each rebuild compiles only what changed,
# incrementally, in the same mount. Line tables only: backtraces keep file and line, and the
# binary is a fifth of the size to link and to copy into the image.
FROM chef AS dev-builder
ENV CARGO_PROFILE_DEV_DEBUG=line-tables-only
COPY --from=planner /app/recipe.json recipe.json
RUN --mount=type=cache,id=stations-api-dev-target,target=/app/target,sharing=locked \
    cargo chef cook --locked --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,id=stations-api-dev-target,target=/app/target,sharing=locked \
    cargo build --locked -p stations-api --bin stations-api \
    && cp target/debug/stations-api /usr/local/bin/stations-api

FROM debian:${DEBIAN_RELEASE}-slim AS dev
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=dev-builder /usr/local/bin/stations-api /usr/local/bin/stations-api
COPY config ./config
# Development settings: the IDE, introspection, and pending migrations applied at start.
ENV APP_ENV=development \
    APP_CONFIG_DIR=/app/config \
    APP__SERVER__HOST=0.0.0.0
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["stations-api"]
CMD ["serve"]

FROM node:${NODE_MAJOR}-${DEBIAN_RELEASE}-slim AS node

# The Dev Container (.devcontainer/): everything the README's commands and the test suite
# need, and nothing from the host. The repository is mounted at /workspace.
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS toolbox
ARG SEA_ORM_CLI_VERSION
# PostgreSQL's server binaries (tests start throwaway clusters) and client, the engines the
# tests drive (nginx, PgBouncer, Chromium), openssl for the JWT tests' keys. policy-rc.d keeps
# their services from starting: nothing listens until a test starts it.
# hadolint ignore=DL3008
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d \
    && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        postgresql postgresql-client nginx pgbouncer chromium openssl sudo \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && rustup component add rustfmt clippy rust-analyzer \
    && cargo install sea-orm-cli --locked --version "${SEA_ORM_CLI_VERSION}" \
        --no-default-features --features codegen,sqlx-postgres,runtime-tokio-rustls \
    && rm -rf /usr/local/cargo/registry
# A user of its own (uid 1000, as on most laptops, so that files written to the mounted
# repository belong to the developer), owning the folders the compose volumes mount: a new
# named volume takes the ownership of the folder it is mounted on.
RUN useradd --create-home --uid 1000 --shell /bin/bash dev \
    && echo 'dev ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/dev \
    && mkdir -p /usr/local/cargo/registry /workspace/target /workspace/api/ide/node_modules \
        /workspace/api/tests/clients/node_modules /workspace/bench/node_modules \
    && chown -R dev:dev /usr/local/cargo /workspace
USER 1000:1000
WORKDIR /workspace

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
