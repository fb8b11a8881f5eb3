#!/bin/sh
# Makes the certificates config.yaml reads, in ./certs next to this script: a throwaway CA
# (certs/ca.crt, for clients to trust) and an ECDSA P-256 certificate for localhost and 127.0.0.1
# signed by it, valid 30 days. Running it again replaces them (the running gateway picks them up).
set -eu
cd "$(dirname "$0")"
mkdir -p certs
cd certs
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=AGW example CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout localhost.key -out localhost.csr 2>/dev/null
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >localhost.ext
openssl x509 -req -in localhost.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
  -extfile localhost.ext -out localhost.crt 2>/dev/null
rm -f localhost.csr localhost.ext ca.srl
echo "certificates written to $(pwd): ca.crt (trust this), localhost.crt, localhost.key"
