// keel's own gRPC services (proto/keelpb/keel.proto), served beside etcd's.
//
// Thread safety: handlers run on gRPC's threads; the Server is thread-safe.
#pragma once

#include "keelpb/keel.grpc.pb.h"
#include "server/server.h"

namespace keel::api {

class KeelMembershipService final : public keelpb::Membership::Service {
 public:
  explicit KeelMembershipService(server::Server* s) : s_(s) {}
  // Step 2 needs the leader's view of the learners: a follower forwards.
  grpc::Status MemberReplace(grpc::ServerContext*,
                             const keelpb::MemberReplaceRequest*,
                             keelpb::MemberReplaceResponse*) override;

 private:
  server::Server* s_;
};

}  // namespace keel::api
