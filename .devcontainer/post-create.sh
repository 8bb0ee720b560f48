#!/usr/bin/env bash
# The Dev Container's postCreateCommand: afterwards `cargo test --workspace --locked`,
# `cargo run` and `sea-orm-cli migrate up` work at once, with nothing installed on the host.
set -euo pipefail
cd "$(dirname "$0")/.."

# The named volumes take uid 1000 from the image; VS Code may have given `dev` the host user's
# uid instead, to keep the mounted repository's files theirs.
for cache in target api/ide/node_modules api/tests/clients/node_modules bench/node_modules \
    /usr/local/cargo/registry; do
    [ -w "$cache" ] || sudo chown -R "$(id -u):$(id -g)" "$cache"
done

bash .devcontainer/provision-database.sh
# The IDE's build tools and browser driver, the real GraphQL clients the tests run, and the
# benchmarks' WebSocket client, from the lockfiles.
npm --prefix api/ide ci --no-audit --no-fund
npm --prefix api/tests/clients ci --no-audit --no-fund
npm --prefix bench ci --no-audit --no-fund
cargo fetch --locked
