#include "api/auth_service.h"

#include "api/errors.h"
#include "api/services.h"

namespace keel::api {
namespace {

using internal::Request;

// Fills h from the caller; the check runs only when auth is on.
template <typename Check>
Status Authorize(const CallMeta* call, server::Server* s,
                 internal::AuthHeader* h, Check check) {
  auto ai = CallerOf(call, s);
  if (!ai.ok()) return ai.status();
  h->set_username(ai->user);
  h->set_auth_revision(ai->revision);
  if (!s->auth()->enabled()) return Status::OK();
  return check(*ai);
}

}  // namespace

Result<server::AuthInfo> CallerOf(const CallMeta* call, server::Server* s) {
  if (call == nullptr) return server::AuthInfo{};
  std::string_view token = call->Metadata("token");
  if (token.empty()) token = call->Metadata("authorization");
  if (!token.empty()) return s->auth()->InfoFromToken(token);
  if (s->config().security.client.client_cert_auth) {
    std::string cn = call->PeerCommonName();
    if (!cn.empty()) return s->auth()->InfoFromCommonName(cn);
  }
  return server::AuthInfo{};
}

Result<server::AuthInfo> CallerOf(const grpc::ServerContextBase* ctx,
                                  server::Server* s) {
  if (ctx == nullptr) return server::AuthInfo{};
  GrpcCallMeta call(ctx);
  return CallerOf(&call, s);
}

Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::RangeRequest& r,
                   internal::AuthHeader* h) {
  return Authorize(ctx, s, h, [&](const server::AuthInfo& ai) {
    return s->auth()->CheckRange(ai, r);
  });
}

Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::PutRequest& r, internal::AuthHeader* h) {
  return Authorize(ctx, s, h, [&](const server::AuthInfo& ai) {
    return s->auth()->CheckPut(ai, r);
  });
}

Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::DeleteRangeRequest& r,
                   internal::AuthHeader* h) {
  return Authorize(ctx, s, h, [&](const server::AuthInfo& ai) {
    return s->auth()->CheckDeleteRange(ai, r);
  });
}

Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::TxnRequest& r, internal::AuthHeader* h) {
  return Authorize(ctx, s, h, [&](const server::AuthInfo& ai) {
    return s->auth()->CheckTxn(ai, r);
  });
}

Status AuthorizeKv(const CallMeta* ctx, server::Server* s,
                   const etcdserverpb::CompactionRequest&,
                   internal::AuthHeader* h) {
  // etcd lets any user compact.
  return Authorize(ctx, s, h,
                   [](const server::AuthInfo&) { return Status::OK(); });
}

Status CheckAdmin(const grpc::ServerContextBase* ctx, server::Server* s,
                  bool raw) {
  auto ai = CallerOf(ctx, s);
  Status st = ai.ok() ? s->auth()->IsAdminPermitted(*ai) : ai.status();
  return raw ? server::RawAuthError(st) : st;
}

// ---------------- AuthService ----------------

grpc::Status AuthService::Propose(const grpc::ServerContext* ctx, Request req,
                                  etcdserverpb::ResponseHeader* header) {
  auto ai = CallerOf(ctx, s_);
  if (!ai.ok()) return ToGrpc(ai.status());
  // Quick refusal here; the apply checks again as of its place in the log.
  if (Status st = s_->auth()->IsAdminPermitted(*ai); !st.ok()) {
    return ToGrpc(st);
  }
  internal::AuthHeader h;
  h.set_username(ai->user);
  h.set_auth_revision(ai->revision);
  int64_t rev = 0;
  Status st;
  {
    server::ScopedRequestAuth scope(&h);
    st = s_->ProposeAuth(std::move(req), &rev);
  }
  if (!st.ok()) return ToGrpc(st);
  s_->FillHeader(header, rev);
  return grpc::Status::OK;
}

grpc::Status AuthService::ReadCaller(const grpc::ServerContext* ctx,
                                     server::AuthInfo* ai,
                                     etcdserverpb::ResponseHeader* header) {
  auto caller = CallerOf(ctx, s_);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (Status st = s_->AuthReadBarrier(); !st.ok()) return ToGrpc(st);
  *ai = *caller;
  s_->FillHeader(header, s_->CurrentRevision());
  return grpc::Status::OK;
}

grpc::Status AuthService::AuthEnable(grpc::ServerContext* ctx,
                                     const etcdserverpb::AuthEnableRequest* r,
                                     etcdserverpb::AuthEnableResponse* out) {
  Request req;
  *req.mutable_auth_enable() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::AuthDisable(grpc::ServerContext* ctx,
                                      const etcdserverpb::AuthDisableRequest* r,
                                      etcdserverpb::AuthDisableResponse* out) {
  Request req;
  *req.mutable_auth_disable() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::AuthStatus(grpc::ServerContext*,
                                     const etcdserverpb::AuthStatusRequest*,
                                     etcdserverpb::AuthStatusResponse* out) {
  if (Status st = s_->AuthReadBarrier(); !st.ok()) return ToGrpc(st);
  out->set_enabled(s_->auth()->enabled());
  out->set_authrevision(s_->auth()->revision());
  s_->FillHeader(out->mutable_header(), s_->CurrentRevision());
  return grpc::Status::OK;
}

grpc::Status AuthService::Authenticate(
    grpc::ServerContext*, const etcdserverpb::AuthenticateRequest* r,
    etcdserverpb::AuthenticateResponse* out) {
  std::string token;
  int64_t rev = 0;
  Status st = s_->Authenticate(r->name(), r->password(), &token, &rev);
  if (!st.ok()) return ToGrpc(st);
  out->set_token(token);
  s_->FillHeader(out->mutable_header(), rev);
  return grpc::Status::OK;
}

grpc::Status AuthService::UserAdd(grpc::ServerContext* ctx,
                                  const etcdserverpb::AuthUserAddRequest* r,
                                  etcdserverpb::AuthUserAddResponse* out) {
  if (r->name().empty()) return kErrUserEmpty.ToStatus();
  Request req;
  auto* add = req.mutable_auth_user_add();
  add->set_name(r->name());
  *add->mutable_options() = r->options();
  if (!r->options().no_password()) {
    // Hashed here (not on the Raft loop), never in the log in clear.
    auto h =
        server::HashPassword(r->password(), s_->config().security.bcrypt_cost);
    if (!h.ok()) return ToGrpc(h.status());
    add->set_hashedpassword(*h);
  }
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::UserGet(grpc::ServerContext* ctx,
                                  const etcdserverpb::AuthUserGetRequest* r,
                                  etcdserverpb::AuthUserGetResponse* out) {
  server::AuthInfo ai;
  grpc::Status g = ReadCaller(ctx, &ai, out->mutable_header());
  if (!g.ok()) return g;
  return ToGrpc(s_->auth()->UserGet(ai, r->name(), out));
}

grpc::Status AuthService::UserList(grpc::ServerContext* ctx,
                                   const etcdserverpb::AuthUserListRequest*,
                                   etcdserverpb::AuthUserListResponse* out) {
  server::AuthInfo ai;
  grpc::Status g = ReadCaller(ctx, &ai, out->mutable_header());
  if (!g.ok()) return g;
  return ToGrpc(s_->auth()->UserList(ai, out));
}

grpc::Status AuthService::UserDelete(
    grpc::ServerContext* ctx, const etcdserverpb::AuthUserDeleteRequest* r,
    etcdserverpb::AuthUserDeleteResponse* out) {
  Request req;
  *req.mutable_auth_user_delete() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::UserChangePassword(
    grpc::ServerContext* ctx,
    const etcdserverpb::AuthUserChangePasswordRequest* r,
    etcdserverpb::AuthUserChangePasswordResponse* out) {
  auto h =
      server::HashPassword(r->password(), s_->config().security.bcrypt_cost);
  if (!h.ok()) return ToGrpc(h.status());
  Request req;
  req.mutable_auth_user_change_password()->set_name(r->name());
  req.mutable_auth_user_change_password()->set_hashedpassword(*h);
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::UserGrantRole(
    grpc::ServerContext* ctx, const etcdserverpb::AuthUserGrantRoleRequest* r,
    etcdserverpb::AuthUserGrantRoleResponse* out) {
  Request req;
  *req.mutable_auth_user_grant_role() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::UserRevokeRole(
    grpc::ServerContext* ctx, const etcdserverpb::AuthUserRevokeRoleRequest* r,
    etcdserverpb::AuthUserRevokeRoleResponse* out) {
  Request req;
  *req.mutable_auth_user_revoke_role() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::RoleAdd(grpc::ServerContext* ctx,
                                  const etcdserverpb::AuthRoleAddRequest* r,
                                  etcdserverpb::AuthRoleAddResponse* out) {
  if (r->name().empty()) return kErrRoleEmpty.ToStatus();
  Request req;
  *req.mutable_auth_role_add() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::RoleGet(grpc::ServerContext* ctx,
                                  const etcdserverpb::AuthRoleGetRequest* r,
                                  etcdserverpb::AuthRoleGetResponse* out) {
  server::AuthInfo ai;
  grpc::Status g = ReadCaller(ctx, &ai, out->mutable_header());
  if (!g.ok()) return g;
  return ToGrpc(s_->auth()->RoleGet(ai, r->role(), out));
}

grpc::Status AuthService::RoleList(grpc::ServerContext* ctx,
                                   const etcdserverpb::AuthRoleListRequest*,
                                   etcdserverpb::AuthRoleListResponse* out) {
  server::AuthInfo ai;
  grpc::Status g = ReadCaller(ctx, &ai, out->mutable_header());
  if (!g.ok()) return g;
  return ToGrpc(s_->auth()->RoleList(ai, out));
}

grpc::Status AuthService::RoleDelete(
    grpc::ServerContext* ctx, const etcdserverpb::AuthRoleDeleteRequest* r,
    etcdserverpb::AuthRoleDeleteResponse* out) {
  Request req;
  *req.mutable_auth_role_delete() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::RoleGrantPermission(
    grpc::ServerContext* ctx,
    const etcdserverpb::AuthRoleGrantPermissionRequest* r,
    etcdserverpb::AuthRoleGrantPermissionResponse* out) {
  if (!r->has_perm()) return kErrPermissionNotGiven.ToStatus();
  Request req;
  *req.mutable_auth_role_grant_permission() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

grpc::Status AuthService::RoleRevokePermission(
    grpc::ServerContext* ctx,
    const etcdserverpb::AuthRoleRevokePermissionRequest* r,
    etcdserverpb::AuthRoleRevokePermissionResponse* out) {
  Request req;
  *req.mutable_auth_role_revoke_permission() = *r;
  return Propose(ctx, std::move(req), out->mutable_header());
}

}  // namespace keel::api
