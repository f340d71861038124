#include "api/keel_services.h"

#include "api/errors.h"
#include "api/services.h"

namespace keel::api {

grpc::Status KeelMembershipService::MemberReplace(
    grpc::ServerContext* ctx, const keelpb::MemberReplaceRequest* r,
    keelpb::MemberReplaceResponse* out) {
  std::vector<std::string> add(r->add_peer_urls().begin(),
                               r->add_peer_urls().end());
  std::vector<uint64_t> promote(r->promote_ids().begin(),
                                r->promote_ids().end());
  std::vector<uint64_t> remove(r->remove_ids().begin(), r->remove_ids().end());
  std::vector<uint64_t> added;
  grpc::Status st = ToGrpc(s_->MemberReplace(add, promote, remove, &added));
  if (st.error_message() == kErrNotLeader.message) {
    auto urls = s_->LeaderClientUrls();
    if (urls.empty()) return kErrNoLeader.ToStatus();
    auto channel = s_->MemberChannel(urls[0]);
    if (!channel) return kErrNoLeader.ToStatus();
    auto stub = keelpb::Membership::NewStub(channel);
    grpc::ClientContext fwd;
    fwd.set_deadline(ctx->deadline());
    ForwardAuthMetadata(*ctx, &fwd);
    return stub->MemberReplace(&fwd, *r, out);
  }
  if (!st.ok()) return st;
  for (uint64_t id : added) out->add_added_ids(id);
  etcdserverpb::MemberListResponse list;
  etcdserverpb::MemberListRequest req;
  (void)s_->MemberList(req, &list);
  *out->mutable_members() = list.members();
  *out->mutable_header() = list.header();
  return grpc::Status::OK;
}

}  // namespace keel::api
