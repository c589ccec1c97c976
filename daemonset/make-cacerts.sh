#!/usr/bin/env bash
# Makes the CA material `ambient ca` signs with, in Istio's cacerts layout: an
# offline root and an intermediate under it (ECDSA P-256: ambient ca signs with
# nothing else). Keep root-key.pem offline; give the cluster only the rest:
#
#   bash daemonset/make-cacerts.sh DIR [TRUST_DOMAIN]
#   kubectl -n ambient-system create secret generic cacerts \
#     --from-file=DIR/ca-cert.pem --from-file=DIR/ca-key.pem \
#     --from-file=DIR/root-cert.pem --from-file=DIR/cert-chain.pem
set -euo pipefail
dir=${1:?usage: make-cacerts.sh DIR [TRUST_DOMAIN]}
td=${2:-cluster.local}
if [ -e "$dir/ca-key.pem" ] || [ -e "$dir/root-key.pem" ]; then
  echo "make-cacerts: $dir already holds keys; not overwriting them" >&2
  exit 1
fi
mkdir -p "$dir"
umask 077
cd "$dir"
ext() { printf '%s\n' "basicConstraints=critical,CA:TRUE$1" 'keyUsage=critical,keyCertSign,cRLSign' 'subjectKeyIdentifier=hash' "$2"; }
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out root-key.pem
openssl req -new -key root-key.pem -subj "/O=ambient/CN=ambient root ($td)" -out root.csr
ext '' '' > root.ext
openssl x509 -req -in root.csr -signkey root-key.pem -days 3650 -sha256 -extfile root.ext -out root-cert.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca-key.pem
openssl req -new -key ca-key.pem -subj "/O=ambient/CN=ambient intermediate ($td)" -out ca.csr
ext ',pathlen:0' 'authorityKeyIdentifier=keyid' > ca.ext
openssl x509 -req -in ca.csr -CA root-cert.pem -CAkey root-key.pem -CAcreateserial -days 730 -sha256 -extfile ca.ext -out ca-cert.pem 2>/dev/null
cat ca-cert.pem root-cert.pem > cert-chain.pem
rm -f root.csr ca.csr root.ext ca.ext root-cert.srl
chmod 0644 ca-cert.pem root-cert.pem cert-chain.pem
echo "make-cacerts: $dir/{ca-cert.pem,ca-key.pem,root-cert.pem,cert-chain.pem} (root-key.pem: keep it offline)"
