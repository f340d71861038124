// How a unary KV call starts, whichever server carries it (gRPC C++ in
// services.cc, keel's HTTP/2 front in h2_front.cc): the leader and learner
// checks, the caller's credentials and permissions, then the Server's
// asynchronous request, with the read rechecks etcd makes.
//
// Thread safety: as the Server's asynchronous requests (server.h): `done`
// runs once, on the calling thread, the Raft loop thread or the reaper.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string_view>
#include <utility>

#include "api/auth_service.h"
#include "api/call_meta.h"
#include "api/errors.h"
#include "server/server.h"

namespace keel::api {

grpc::Status ToGrpc(const Status& s);

// What a request that does not parse is answered (gRPC-Go's words, as
// etcd's server answers it); why: the parser's reason, if it gave one.
inline grpc::Status UnmarshalError(const std::string& why) {
  return grpc::Status(
      grpc::StatusCode::INTERNAL,
      "grpc: error unmarshalling request: " +
          (why.empty()
               ? std::string("proto: cannot parse invalid wire-format data")
               : why));
}

// What a learner serves: serializable reads only.
template <typename Req>
bool LearnerServes(const Req&) {
  return false;
}
inline bool LearnerServes(const etcdserverpb::RangeRequest& r) {
  return r.serializable();
}

// etcd's clients may ask (metadata "hasleader: true", clientv3's
// WithRequireLeader) to fail at once rather than wait when the member has
// no leader.
inline bool LeaderRequiredButMissing(const CallMeta* call,
                                     const server::Server* s) {
  return call != nullptr && call->Metadata("hasleader") == "true" &&
         !s->HasLeader();
}
inline bool LeaderRequiredButMissing(const grpc::ServerContextBase* ctx,
                                     const server::Server* s) {
  if (ctx == nullptr) return false;
  GrpcCallMeta call(ctx);
  return LeaderRequiredButMissing(&call, s);
}

// The Server's asynchronous request for each KV request type.
inline void StartOnServer(server::Server* s,
                          const etcdserverpb::RangeRequest& r,
                          etcdserverpb::RangeResponse* out,
                          server::Server::DoneCallback done) {
  s->RangeAsync(r, out, std::move(done));
}
inline void StartOnServer(server::Server* s, const etcdserverpb::PutRequest& r,
                          etcdserverpb::PutResponse* out,
                          server::Server::DoneCallback done) {
  s->PutAsync(r, out, std::move(done));
}
inline void StartOnServer(server::Server* s,
                          const etcdserverpb::DeleteRangeRequest& r,
                          etcdserverpb::DeleteRangeResponse* out,
                          server::Server::DoneCallback done) {
  s->DeleteRangeAsync(r, out, std::move(done));
}
inline void StartOnServer(server::Server* s, const etcdserverpb::TxnRequest& r,
                          etcdserverpb::TxnResponse* out,
                          server::Server::DoneCallback done) {
  s->TxnAsync(r, out, std::move(done));
}
inline void StartOnServer(server::Server* s,
                          const etcdserverpb::CompactionRequest& r,
                          etcdserverpb::CompactionResponse* out,
                          server::Server::DoneCallback done) {
  s->CompactAsync(r, out, std::move(done));
}

// Starts `req` as `call` asks, on the Server; done(status) is called exactly
// once, with OK after *resp is filled, or with etcd's error. `call`, `req` and
// `resp` must outlive it.
template <typename Req, typename Resp>
void StartKv(const CallMeta* call, server::Server* s, const Req& req,
             Resp* resp, std::function<void(grpc::Status)> done) {
  if (LeaderRequiredButMissing(call, s)) return done(kErrNoLeader.ToStatus());
  // etcd's learners serve only serializable reads and the maintenance and
  // cluster calls; everything else answers "rpc not supported for learner".
  if (s->IsLearner() && !LearnerServes(req)) {
    return done(kErrNotSupportedForLearner.ToStatus());
  }
  // Auth: the caller may make the request as of now; a write carries who
  // made it into the log and is checked again at apply; a read served here
  // is checked again if auth changed while it ran.
  if (IsLinearizableRead(req)) {
    auto ai = CallerOf(call, s);  // an invalid token fails at once
    if (!ai.ok()) return done(ToGrpc(ai.status()));
    StartOnServer(s, req, resp,
                  [call, s, &req, done = std::move(done)](Status st) {
                    internal::AuthHeader now;
                    if (st.ok()) st = AuthorizeKv(call, s, req, &now);
                    done(ToGrpc(st));
                  });
    return;
  }
  internal::AuthHeader h;
  Status st = AuthorizeKv(call, s, req, &h);
  if (!st.ok()) return done(ToGrpc(st));
  server::ScopedRequestAuth scope(&h);
  if (!IsServedLocally(req) || h.auth_revision() == 0) {
    StartOnServer(s, req, resp, [done = std::move(done)](const Status& st) {
      done(ToGrpc(st));
    });
  } else {
    StartOnServer(s, req, resp,
                  [call, s, &req, h, done = std::move(done)](Status st) {
                    if (st.ok()) st = RecheckRead(call, s, req, h);
                    done(ToGrpc(st));
                  });
  }
}

}  // namespace keel::api
