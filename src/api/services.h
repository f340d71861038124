// The etcd v3 gRPC services over a keel Server: KV, Maintenance, Cluster.
//
// Handlers translate between protobuf and the Server's calls and map the
// Server's errors (which carry etcd's exact messages) to etcd's gRPC status
// codes. RPCs not listed in a service answer UNIMPLEMENTED (the generated
// base class does that).
//
// Thread safety: handlers run on gRPC's threads; the Server is thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <vector>

#include "api/auth_service.h"
#include "api/concurrency_services.h"
#include "api/h2_front.h"
#include "api/keel_services.h"
#include "api/lease_service.h"
#include "api/watch_service.h"
#include "common/status.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "http/listener.h"
#include "http/server.h"
#include "server/server.h"

namespace keel::transport {
class TlsContext;
}

namespace keel::api {

// Maps a Status from the server or the store to the gRPC status etcd sends.
grpc::Status ToGrpc(const Status& s);

// KV uses gRPC's callback API: a handler returns at once and the call
// finishes when the Server's asynchronous request completes, so requests in
// flight do not each hold a thread (src/server/server_async.cc). The
// methods are "raw" (bytes in and out) so that an unparsable request gets
// INTERNAL as from etcd; gRPC 1.51's typed callback handler answers it with
// UNIMPLEMENTED.
class KvService final
    : public etcdserverpb::KV::WithRawCallbackMethod_Range<
          etcdserverpb::KV::WithRawCallbackMethod_Put<
              etcdserverpb::KV::WithRawCallbackMethod_DeleteRange<
                  etcdserverpb::KV::WithRawCallbackMethod_Txn<
                      etcdserverpb::KV::WithRawCallbackMethod_Compact<
                          etcdserverpb::KV::Service>>>>> {
 public:
  explicit KvService(server::Server* s) : s_(s) {}
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext*,
                                  const grpc::ByteBuffer*,
                                  grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext*,
                                const grpc::ByteBuffer*,
                                grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext*,
                                        const grpc::ByteBuffer*,
                                        grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext*,
                                const grpc::ByteBuffer*,
                                grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext*,
                                    const grpc::ByteBuffer*,
                                    grpc::ByteBuffer*) override;

 private:
  server::Server* s_;
};

class MaintenanceService final : public etcdserverpb::Maintenance::Service {
 public:
  explicit MaintenanceService(server::Server* s) : s_(s) {}
  grpc::Status Status(grpc::ServerContext*, const etcdserverpb::StatusRequest*,
                      etcdserverpb::StatusResponse*) override;
  grpc::Status Alarm(grpc::ServerContext*, const etcdserverpb::AlarmRequest*,
                     etcdserverpb::AlarmResponse*) override;
  grpc::Status HashKV(grpc::ServerContext*, const etcdserverpb::HashKVRequest*,
                      etcdserverpb::HashKVResponse*) override;
  grpc::Status Defragment(grpc::ServerContext*,
                          const etcdserverpb::DefragmentRequest*,
                          etcdserverpb::DefragmentResponse*) override;
  grpc::Status Hash(grpc::ServerContext*, const etcdserverpb::HashRequest*,
                    etcdserverpb::HashResponse*) override;
  grpc::Status MoveLeader(grpc::ServerContext*,
                          const etcdserverpb::MoveLeaderRequest*,
                          etcdserverpb::MoveLeaderResponse*) override;
  grpc::Status Snapshot(
      grpc::ServerContext*, const etcdserverpb::SnapshotRequest*,
      grpc::ServerWriter<etcdserverpb::SnapshotResponse>*) override;

 private:
  server::Server* s_;
};

class ClusterService final : public etcdserverpb::Cluster::Service {
 public:
  explicit ClusterService(server::Server* s) : s_(s) {}
  grpc::Status MemberList(grpc::ServerContext*,
                          const etcdserverpb::MemberListRequest*,
                          etcdserverpb::MemberListResponse*) override;
  grpc::Status MemberAdd(grpc::ServerContext*,
                         const etcdserverpb::MemberAddRequest*,
                         etcdserverpb::MemberAddResponse*) override;
  grpc::Status MemberRemove(grpc::ServerContext*,
                            const etcdserverpb::MemberRemoveRequest*,
                            etcdserverpb::MemberRemoveResponse*) override;
  grpc::Status MemberUpdate(grpc::ServerContext*,
                            const etcdserverpb::MemberUpdateRequest*,
                            etcdserverpb::MemberUpdateResponse*) override;
  // Only the leader can tell whether a learner caught up: a follower
  // forwards the call to it, as etcd's does.
  grpc::Status MemberPromote(grpc::ServerContext*,
                             const etcdserverpb::MemberPromoteRequest*,
                             etcdserverpb::MemberPromoteResponse*) override;

 private:
  server::Server* s_;
};

// Copies the caller's credentials (etcd's "token" metadata, the gateway's
// "authorization") onto a call this member forwards to the leader for it.
void ForwardAuthMetadata(const grpc::ServerContext& in,
                         grpc::ClientContext* out);

// The member's client URLs: gRPC and, on the same ports, HTTP/1.1 (etcd's
// JSON gateway, /health, /livez, /readyz, /version; see client_http.cc).
class ClientApi {
 public:
  // Listens on every --listen-client-urls address.
  static Result<std::unique_ptr<ClientApi>> Start(server::Server* s);
  ~ClientApi();
  void Shutdown();
  // The ports actually bound (for URLs with port 0), in URL order.
  const std::vector<int>& ports() const { return ports_; }
  // The HTTP/1.1 routes of the client URLs; add more (e.g. /metrics) with
  // router()->Handle(...) at any time (src/http/server.h).
  http::Router* router() { return &router_; }
  // A channel to this member's gRPC services, in process: HTTP handlers
  // call the API through it, with the same semantics and errors.
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  explicit ClientApi(server::Server* s);
  // Routes, and serves gRPC and HTTP/1.1 on the client URLs
  // (client_http.cc).
  Status ServeClientUrls(server::Server* s);
  // /metrics on the client URLs, and --listen-metrics-urls
  // (metrics_http.cc).
  Status ServeMetricsUrls(server::Server* s);

  KvService kv_;
  MaintenanceService maintenance_;
  ClusterService cluster_;
  LeaseService lease_;
  Recipes recipes_;
  LockService lock_;
  ElectionService election_;
  WatchService watch_;
  KeelMembershipService keel_membership_;
  AuthService auth_;
  std::unique_ptr<grpc::Server> grpc_;
  std::vector<int> ports_;
  // https client URLs: gRPC's own TLS port on 127.0.0.1 (0: none), and the
  // TLS settings of the HTTP/1.1 side (client_http.cc).
  int tls_grpc_port_ = 0;
  std::shared_ptr<transport::TlsContext> http_tls_;
  std::shared_ptr<grpc::Channel> channel_;
  http::Router router_;
  std::unique_ptr<http::Server> http_;
  std::unique_ptr<http::Listener> listener_;
  // Plaintext gRPC connections (--experimental-grpc-front).
  std::unique_ptr<H2Front> h2_;
  size_t max_recv_message_bytes_ = 0;
  http::Router metrics_router_;
  std::unique_ptr<http::Server> metrics_http_;
  std::unique_ptr<http::Listener> metrics_listener_;
};

}  // namespace keel::api
