#!/usr/bin/env bash
# Makes a throwaway PKI for trying the gateway's TLS and mutual TLS modes and
# for the deploy.tls test. Not for production: the CA key sits next to the
# certificates it signs and nothing revokes them.
#
#   deploy/tls/make-test-certs.sh OUT_DIR [EXTRA_DNS_NAME ...]
#
# writes, in OUT_DIR (created if missing; existing files are replaced):
#   ca.crt ca.key          a self-signed CA
#   server.crt server.key  the gateway's certificate, signed by the CA, for
#                          localhost, 127.0.0.1 and every EXTRA_DNS_NAME
#                          (e.g. edge-gateway-headless.NS.svc.cluster.local)
#   client.crt client.key  a client certificate (CN edge-client), signed by
#                          the CA, for mutual TLS
#
# Gateway: tls_cert_file=server.crt tls_key_file=server.key, and for mutual
# TLS tls_client_ca_file=ca.crt. Client: edge-client --tls_ca ca.crt, and for
# mutual TLS --tls_cert client.crt --tls_key client.key.
#
# Keys are ECDSA P-256: gRPC's TLS (BoringSSL/OpenSSL) accepts them and they
# take milliseconds to generate, where RSA-2048 takes most of a second.
# The server certificate is also valid for client authentication, so that a
# health probe inside the gateway's own pod can present it when mutual TLS
# is on (deploy/k8s/overlays/tls).
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [EXTRA_DNS_NAME ...]" >&2
  exit 2
fi
out=$1
shift
mkdir -p "$out"
# One year: long enough to try a deployment, short enough to stay a test.
days=365
subject_prefix="/O=edge-gateway test PKI"

san="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
  san="$san,DNS:$name"
done

new_key() {  # FILE
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
  chmod 600 "$1"
}

# Random 128-bit serials, so certificates from two runs never collide in a
# client's view and no serial file is left behind.
serial() { echo "0x$(openssl rand -hex 16)"; }

# sign NAME CN EXTENSIONS: NAME.key -> NAME.crt signed by the CA.
sign() {
  local name=$1 cn=$2 extensions=$3
  new_key "$out/$name.key"
  openssl req -new -key "$out/$name.key" -subj "$subject_prefix/CN=$cn" \
    -out "$out/$name.csr"
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" \
    -CAkey "$out/ca.key" -set_serial "$(serial)" -days "$days" \
    -extfile <(printf '%s\n' "$extensions") -out "$out/$name.crt"
  rm -f "$out/$name.csr"
}

new_key "$out/ca.key"
openssl req -x509 -new -key "$out/ca.key" -days "$days" \
  -subj "$subject_prefix/CN=edge-gateway test CA" -set_serial "$(serial)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$out/ca.crt"

sign server edge-gateway "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"

sign client edge-client "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

echo "make-test-certs: wrote ca, server ($san) and client certificates" \
  "to $out"
