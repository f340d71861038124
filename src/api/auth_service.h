// etcd's Auth service, and the credential and permission checks the other
// services make with it.
//
// Who a call is (etcd's AuthInfoFromCtx): the user of its "token" metadata
// ("authorization" from the JSON gateway), or, with --client-cert-auth and
// no token, the common name of the client's verified TLS certificate. A
// token that is not valid is etcd's "invalid auth token" even while auth is
// off (as etcd, whose disabled token provider knows no token).
//
// Thread safety: handlers run on gRPC's threads; Server and AuthStore are
// thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "api/call_meta.h"
#include "common/status.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "server/server.h"

namespace keel::api {

// The caller's AuthInfo (revision 0: no credential given; so is a null
// call, one made by keel itself).
Result<server::AuthInfo> CallerOf(const CallMeta* call, server::Server* s);
Result<server::AuthInfo> CallerOf(const grpc::ServerContextBase* ctx,
                                  server::Server* s);

// KV requests: the caller may make `r` as of now; *h is what the proposal
// carries for the check at apply (server_auth.cc).
Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::RangeRequest& r,
                   internal::AuthHeader* h);
Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::PutRequest& r, internal::AuthHeader* h);
Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::DeleteRangeRequest& r,
                   internal::AuthHeader* h);
Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::TxnRequest& r, internal::AuthHeader* h);
Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::CompactionRequest& r,
                   internal::AuthHeader* h);

// A read served from this member's store after AuthorizeKv: if the auth
// revision moved while it ran (a revoke applied before the read finished),
// the check is made again, with the caller's credential as of now (etcd's
// doSerialize loop). Writes need nothing: they are checked at apply.
template <typename Req>
Status RecheckRead(const CallMeta* ctx, server::Server* s, const Req& r,
                   const internal::AuthHeader& h) {
  if (!s->auth()->enabled() || s->auth()->revision() == h.auth_revision()) {
    return Status::OK();
  }
  internal::AuthHeader again;
  return AuthorizeKv(ctx, s, r, &again);
}
// A linearizable read is checked after its read barrier, as etcd checks it
// after linearizableReadNotify: the member's auth state is then at least as
// new as the read, so a revoke (or grant) made before the read started
// counts even on a follower that had not applied it when the call came.
inline bool IsLinearizableRead(const etcdserverpb::RangeRequest& r) {
  return !r.serializable();
}
inline bool IsLinearizableRead(const etcdserverpb::TxnRequest& r) {
  return !server::TxnHasWrites(r);
}
template <typename Req>
bool IsLinearizableRead(const Req&) {
  return false;
}
// Writes are not rechecked here.
inline bool IsServedLocally(const etcdserverpb::RangeRequest&) { return true; }
inline bool IsServedLocally(const etcdserverpb::TxnRequest& r) {
  return !server::TxnHasWrites(r);
}
template <typename Req>
bool IsServedLocally(const Req&) {
  return false;
}

// Root only once auth is on (etcd's IsAdminPermitted). raw: the
// Maintenance service's form of the errors ("auth: permission denied",
// code Unknown), as etcd sends them there.
Status CheckAdmin(const grpc::ServerContextBase* ctx, server::Server* s,
                  bool raw);

class AuthService final : public etcdserverpb::Auth::Service {
 public:
  explicit AuthService(server::Server* s) : s_(s) {}

#define KEEL_AUTH_RPC(Name, Req, Resp)                                    \
  grpc::Status Name(grpc::ServerContext* ctx, const etcdserverpb::Req* r, \
                    etcdserverpb::Resp* out) override;
  KEEL_AUTH_RPC(AuthEnable, AuthEnableRequest, AuthEnableResponse)
  KEEL_AUTH_RPC(AuthDisable, AuthDisableRequest, AuthDisableResponse)
  KEEL_AUTH_RPC(AuthStatus, AuthStatusRequest, AuthStatusResponse)
  KEEL_AUTH_RPC(Authenticate, AuthenticateRequest, AuthenticateResponse)
  KEEL_AUTH_RPC(UserAdd, AuthUserAddRequest, AuthUserAddResponse)
  KEEL_AUTH_RPC(UserGet, AuthUserGetRequest, AuthUserGetResponse)
  KEEL_AUTH_RPC(UserList, AuthUserListRequest, AuthUserListResponse)
  KEEL_AUTH_RPC(UserDelete, AuthUserDeleteRequest, AuthUserDeleteResponse)
  KEEL_AUTH_RPC(UserChangePassword, AuthUserChangePasswordRequest,
                AuthUserChangePasswordResponse)
  KEEL_AUTH_RPC(UserGrantRole, AuthUserGrantRoleRequest,
                AuthUserGrantRoleResponse)
  KEEL_AUTH_RPC(UserRevokeRole, AuthUserRevokeRoleRequest,
                AuthUserRevokeRoleResponse)
  KEEL_AUTH_RPC(RoleAdd, AuthRoleAddRequest, AuthRoleAddResponse)
  KEEL_AUTH_RPC(RoleGet, AuthRoleGetRequest, AuthRoleGetResponse)
  KEEL_AUTH_RPC(RoleList, AuthRoleListRequest, AuthRoleListResponse)
  KEEL_AUTH_RPC(RoleDelete, AuthRoleDeleteRequest, AuthRoleDeleteResponse)
  KEEL_AUTH_RPC(RoleGrantPermission, AuthRoleGrantPermissionRequest,
                AuthRoleGrantPermissionResponse)
  KEEL_AUTH_RPC(RoleRevokePermission, AuthRoleRevokePermissionRequest,
                AuthRoleRevokePermissionResponse)
#undef KEEL_AUTH_RPC

 private:
  // Proposes req as the caller (root needed once auth is on: checked at
  // apply) and fills header.
  grpc::Status Propose(const grpc::ServerContext* ctx, internal::Request req,
                       etcdserverpb::ResponseHeader* header);
  // The caller, after a linearizable barrier, for the auth reads.
  grpc::Status ReadCaller(const grpc::ServerContext* ctx, server::AuthInfo* ai,
                          etcdserverpb::ResponseHeader* header);

  server::Server* s_;
};

}  // namespace keel::api
