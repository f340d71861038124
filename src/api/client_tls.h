// gRPC server credentials for https client URLs, from etcd's client TLS
// flags (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth,
// --client-crl-file, --client-cert-allowed-hostname, --auto-tls,
// --cipher-suites).
//
// gRPC terminates TLS itself (its TlsServerCredentials over OpenSSL): the
// bytes go from the socket to gRPC's HTTP/2 parser with no extra hop, and the
// client certificate's common name is on each call's AuthContext (etcd's
// user name under --client-cert-auth). Chain verification is gRPC's;
// what etcd checks beyond it (a revoked serial from the CRL, the allowed
// hostname) runs in a certificate verifier here.
//
// Thread safety: ClientCredentials is called once, before serving; the
// verifier it installs is called by gRPC's threads and is immutable.
#pragma once

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "server/config.h"

namespace keel::api {

// Credentials for the https client URLs (built once, shared by them).
Result<std::shared_ptr<grpc::ServerCredentials>> ClientTlsCredentials(
    const server::ServerConfig& config);

// The client certificate's common name on a call over TLS, "" otherwise.
std::string PeerCommonName(const grpc::ServerContext* ctx);

}  // namespace keel::api
