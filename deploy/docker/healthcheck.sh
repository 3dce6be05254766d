#!/bin/sh
# The container's health check (Dockerfile HEALTHCHECK, and the exec probes
# of deploy/k8s/overlays/tls): asks the gateway's grpc.health.v1 service,
# through `edge-client health`, whether it is SERVING. Exit 0 iff it is.
#
# Plaintext by default. With TLS, set EDGE_HEALTHCHECK_TLS_CA (the CA of the
# gateway's certificate, which must be valid for the target's host, or for
# EDGE_HEALTHCHECK_TLS_SERVER_NAME); with mutual TLS also
# EDGE_HEALTHCHECK_TLS_CERT and EDGE_HEALTHCHECK_TLS_KEY.
set -eu

set -- health \
  --target "${EDGE_HEALTHCHECK_TARGET:-127.0.0.1:50051}" \
  --timeout_ms "${EDGE_HEALTHCHECK_TIMEOUT_MS:-3000}"
if [ -n "${EDGE_HEALTHCHECK_TLS_CA:-}" ]; then
  set -- "$@" --tls_ca "$EDGE_HEALTHCHECK_TLS_CA"
fi
if [ -n "${EDGE_HEALTHCHECK_TLS_CERT:-}" ]; then
  set -- "$@" --tls_cert "$EDGE_HEALTHCHECK_TLS_CERT" \
    --tls_key "${EDGE_HEALTHCHECK_TLS_KEY:-}"
fi
if [ -n "${EDGE_HEALTHCHECK_TLS_SERVER_NAME:-}" ]; then
  set -- "$@" --tls_server_name "$EDGE_HEALTHCHECK_TLS_SERVER_NAME"
fi
exec edge-client "$@"
