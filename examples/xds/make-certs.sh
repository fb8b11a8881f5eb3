#!/bin/sh
# Makes the certificates of the xDS walk-through (docs/xds.md) in ./certs next to this script: a
# throwaway CA (ca.crt) that signs the control plane's certificate (cp.crt: localhost and
# 127.0.0.1, the address data planes dial) and one client certificate per data plane (edge-1.crt,
# edge-2.crt: the subject CN is the data plane's identity, its node id), and intruder.crt, signed
# by another CA the control plane does not trust. ECDSA P-256, 30 days.
set -eu
cd "$(dirname "$0")"
mkdir -p certs
cd certs
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=AGW xDS example CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=Another CA" -keyout other-ca.key -out other-ca.crt 2>/dev/null
issue() { # name, extensions[, CA]
  ca=${3:-ca}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\n%s\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
issue cp "extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
issue edge-1 "extendedKeyUsage=clientAuth"
issue edge-2 "extendedKeyUsage=clientAuth"
issue intruder "extendedKeyUsage=clientAuth" other-ca
rm -f ca.srl other-ca.srl other-ca.key
echo "certificates written to $(pwd): ca.crt, cp.crt/.key, edge-1.crt/.key, edge-2.crt/.key, intruder.crt/.key"
