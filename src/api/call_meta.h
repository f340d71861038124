// What the credential and permission checks need to know of a call, from
// whichever server carries it: gRPC C++ (a ServerContext) or keel's own
// HTTP/2 front for the unary KV calls (h2_front.h).
//
// Thread safety: read-only once the call has started.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <string_view>

namespace keel::api {

class CallMeta {
 public:
  virtual ~CallMeta() = default;
  // The first value of a request header (metadata) by its lower-case name;
  // empty when absent.
  virtual std::string_view Metadata(std::string_view key) const = 0;
  // The common name of the client's verified TLS certificate; empty when
  // the call came without one (plaintext).
  virtual std::string PeerCommonName() const = 0;
};

// A gRPC C++ call's metadata and peer.
class GrpcCallMeta final : public CallMeta {
 public:
  explicit GrpcCallMeta(const grpc::ServerContextBase* ctx) : ctx_(ctx) {}
  std::string_view Metadata(std::string_view key) const override {
    auto it =
        ctx_->client_metadata().find(grpc::string_ref(key.data(), key.size()));
    if (it == ctx_->client_metadata().end()) return {};
    return {it->second.data(), it->second.size()};
  }
  std::string PeerCommonName() const override {
    auto auth = ctx_->auth_context();
    if (!auth || !auth->IsPeerAuthenticated()) return "";
    auto v = auth->FindPropertyValues("x509_common_name");
    if (v.empty()) return "";
    return std::string(v[0].data(), v[0].size());
  }

 private:
  const grpc::ServerContextBase* ctx_;
};

}  // namespace keel::api
