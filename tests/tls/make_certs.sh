#!/usr/bin/env bash
# Generates throwaway TLS material for tests into DIR (never for production):
#   ca.{crt,key}                 the test CA
#   <name>.{crt,key}             for each of: m0 m1 m2 m3 (members: serverAuth and
#                                clientAuth, SAN 127.0.0.1 and localhost, CN =
#                                name), client, root (CN=root), alice (CN=alice),
#                                revoked (CN=revoked)
#   rogue-ca.{crt,key}, rogue.{crt,key}   a certificate from another CA
#   nosan.{crt,key}              signed by the CA, SAN names only "example.org"
#   pa, pb                       CN=keel-peer (both), SAN 127.0.0.1 and localhost
#   iponly.{crt,key}             CN=m2, SAN 127.0.0.1 only
#   crl.pem                      the CA's CRL, revoking revoked.crt
# Usage: make_certs.sh DIR
set -euo pipefail
dir="$1"
mkdir -p "$dir"
cd "$dir"
days=2
ossl() { openssl "$@" 2>/dev/null; }

ca() {  # ca NAME CN
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.crt" -days $days -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() {  # leaf NAME CN SAN CA
  cat >"$1.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$3
EXT
  ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  ossl x509 -req -in "$1.csr" -CA "$4.crt" -CAkey "$4.key" \
    -CAcreateserial -out "$1.crt" -days $days -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}

ca ca keel-test-ca
ca rogue-ca rogue-test-ca
local_san="IP:127.0.0.1,DNS:localhost"
for n in m0 m1 m2 m3 client root alice bob revoked; do leaf "$n" "$n" "$local_san" ca; done
leaf rogue m1 "$local_san" rogue-ca
leaf nosan m1 "DNS:example.org" ca
# Peers sharing one common name (--peer-cert-allowed-cn), and a peer
# certificate naming 127.0.0.1 only (--peer-cert-allowed-hostname=localhost).
for n in pa pb; do leaf "$n" keel-peer "$local_san" ca; done
leaf iponly m2 "IP:127.0.0.1" ca

# A CRL revoking revoked.crt, made with a minimal `openssl ca` database.
mkdir -p crldb
: >crldb/index.txt
echo 1000 >crldb/crlnumber
cat >crldb/ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = crldb/index.txt
crlnumber = crldb/crlnumber
default_md = sha256
default_crl_days = $days
CNF
ossl ca -config crldb/ca.cnf -keyfile ca.key -cert ca.crt -revoke revoked.crt
ossl ca -config crldb/ca.cnf -keyfile ca.key -cert ca.crt -gencrl -out crl.pem
chmod 600 ./*.key
