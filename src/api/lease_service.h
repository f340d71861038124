// The etcd v3 Lease service. LeaseKeepAlive uses gRPC's callback API: a
// stream costs no thread while it waits for the client or for a renewal
// forwarded to the leader (many clients keep leases alive at once). The
// unary RPCs are synchronous.
//
// Thread safety: handlers run on gRPC's threads; the Server is thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "server/server.h"

namespace keel::api {

class LeaseService final
    : public etcdserverpb::Lease::WithCallbackMethod_LeaseKeepAlive<
          etcdserverpb::Lease::Service> {
 public:
  explicit LeaseService(server::Server* s) : s_(s) {}
  grpc::Status LeaseGrant(grpc::ServerContext*,
                          const etcdserverpb::LeaseGrantRequest*,
                          etcdserverpb::LeaseGrantResponse*) override;
  grpc::Status LeaseRevoke(grpc::ServerContext*,
                           const etcdserverpb::LeaseRevokeRequest*,
                           etcdserverpb::LeaseRevokeResponse*) override;
  grpc::Status LeaseTimeToLive(grpc::ServerContext*,
                               const etcdserverpb::LeaseTimeToLiveRequest*,
                               etcdserverpb::LeaseTimeToLiveResponse*) override;
  grpc::Status LeaseLeases(grpc::ServerContext*,
                           const etcdserverpb::LeaseLeasesRequest*,
                           etcdserverpb::LeaseLeasesResponse*) override;
  grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                          etcdserverpb::LeaseKeepAliveResponse>*
  LeaseKeepAlive(grpc::CallbackServerContext* ctx) override;

 private:
  server::Server* s_;
};

}  // namespace keel::api
