#!/usr/bin/env bash
# Runs a three-node NATS JetStream cluster on this machine (127.0.0.1:4222-4224)
# with the nats-server version pinned in go.mod, locked as in production
# (docs/adr/0027): TLS on clients and routes, nkey users with SPA's
# permissions. The CA, the node certificate and every identity's seed are
# made once in data/cluster/ (go run deploy/nats/localsecrets.go). Ctrl-C
# stops it.
#
#   deploy/local-cluster.sh
#   S=data/cluster; TLS="--nats-ca $S/ca.crt"
#   go run ./cmd/spa-ctl signing-key --out ./data/keys
#   go run ./cmd/spa-ctl init --nats-url nats://127.0.0.1:4222 --nats-nkey $S/admin.nk $TLS --replicas 3
#   go run ./cmd/spa-server --nats-url nats://127.0.0.1:4222,nats://127.0.0.1:4223 --nats-nkey $S/server.nk $TLS --min-replicas 3 --worker=false --data-dir ./data/server --signing-key ./data/keys/signing.key
#   go run ./cmd/spa-worker --nats-url nats://127.0.0.1:4222,nats://127.0.0.1:4224 --nats-nkey $S/worker.nk $TLS --data-dir ./data/worker-1 --signing-key ./data/keys/signing.key
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin data/cluster
go build -o bin/nats-server github.com/nats-io/nats-server/v2
go run deploy/nats/localsecrets.go data/cluster > data/cluster/env
# shellcheck disable=SC1091
source data/cluster/env
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  bin/nats-server -c "deploy/nats/node-$i.conf" &
  pids+=($!)
done
wait
