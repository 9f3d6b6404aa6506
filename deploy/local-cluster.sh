#!/usr/bin/env bash
# Runs a three-node NATS JetStream cluster on this machine (127.0.0.1:4222-4224)
# with the nats-server version pinned in go.mod. Ctrl-C stops it.
#
#   deploy/local-cluster.sh
#   go run ./cmd/spa-ctl signing-key --out ./data/keys
#   go run ./cmd/spa-server --nats-url nats://127.0.0.1:4222,nats://127.0.0.1:4223 --replicas 3 --worker=false --data-dir ./data/server --signing-key ./data/keys/signing.key
#   go run ./cmd/spa-worker --nats-url nats://127.0.0.1:4222,nats://127.0.0.1:4224 --data-dir ./data/worker-1 --signing-key ./data/keys/signing.key
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/nats-server github.com/nats-io/nats-server/v2
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  bin/nats-server -c "deploy/nats/node-$i.conf" &
  pids+=($!)
done
wait
