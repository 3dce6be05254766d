#!/usr/bin/env bash
# The README's first command (`make demo`) after building: runs the gateway
# on the default model, classifies the sample images with edge-client so you
# see real answers, then keeps serving until Ctrl-C (SIGINT/SIGTERM drain it).
#
#   tools/demo/demo.sh MODEL_DIR [--once]
#
# --once stops the gateway after the samples (used by the demo smoke test).
# EDGE_DEMO_ADDR (default 127.0.0.1:50051) and EDGE_DEMO_METRICS (default
# 127.0.0.1:9464) choose the ports; BUILD the build directory.
set -euo pipefail
cd "$(dirname "$0")/../.."

model=${1:?usage: tools/demo/demo.sh MODEL_DIR [--once]}
once=${2:-}
build=${BUILD:-build}
addr=${EDGE_DEMO_ADDR:-127.0.0.1:50051}
metrics=${EDGE_DEMO_METRICS:-127.0.0.1:9464}
client="$build/client/edge-client"

"$build/server/edge_gateway" --model_dir "$model" --listen_address "$addr" \
  --metrics_address "$metrics" &
gateway=$!
stop() {
  kill -TERM "$gateway" 2>/dev/null || true
  wait "$gateway"
}
trap 'stop; exit 0' INT TERM

# Wait for SERVING while watching that our own gateway is still alive (it
# exits at once if, say, the port is taken).
healthy=
for _ in $(seq 240); do
  if ! kill -0 "$gateway" 2>/dev/null; then break; fi
  if "$client" health --target "$addr" --wait_ms 500 >/dev/null 2>&1; then
    healthy=1
    break
  fi
done
if [ -z "$healthy" ]; then
  echo "demo: the gateway did not start; see its message above" >&2
  kill -TERM "$gateway" 2>/dev/null || true
  exit 1
fi

echo
echo "== model"
"$client" info --target "$addr" | /usr/bin/python3 -m tools.demo.client_output info

echo
echo "== classifying models/samples/*.png (file name = true label)"
"$client" classify --target "$addr" --top_k 1 models/samples/*.png |
  /usr/bin/python3 -m tools.demo.client_output classify

echo
echo "The gateway is serving on $addr (gRPC) and http://$metrics/metrics."
echo "Try: $client classify --target $addr YOUR.jpg"
echo "     $client stream --target $addr --dir models/samples --fps 5"
if [ "$once" = "--once" ]; then
  stop
  exit 0
fi
echo "Ctrl-C stops it."
wait "$gateway"
