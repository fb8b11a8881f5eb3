#!/bin/sh
# Makes the backends' certificates for the TLS passthrough walk-through (docs/l4.md), in ./certs next
# to this script: a throwaway CA (certs/ca.crt, for clients to trust), a certificate for
# a.example.test and one for *.b.example.test, ECDSA P-256, valid 30 days. The gateway never reads
# them: the backends present them to the clients through the passthrough listener.
set -eu
cd "$(dirname "$0")"
mkdir -p certs
cd certs
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=AGW example CA" -keyout ca.key -out ca.crt 2>/dev/null
for pair in "a:a.example.test" "b:*.b.example.test"; do
  stem=${pair%%:*}
  name=${pair#*:}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$name" -keyout "$stem.key" -out "$stem.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\n' "$name" >"$stem.ext"
  openssl x509 -req -in "$stem.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$stem.ext" -out "$stem.crt" 2>/dev/null
  rm -f "$stem.csr" "$stem.ext"
done
rm -f ca.srl
echo "certificates written to $(pwd): ca.crt (trust this), a.crt/a.key, b.crt/b.key"
