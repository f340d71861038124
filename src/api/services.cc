#include "api/services.h"

#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <climits>
#include <string_view>

#include "api/auth_service.h"
#include "api/client_tls.h"
#include "api/errors.h"
#include "api/grpc_metrics.h"
#include "api/kv_call.h"

namespace keel::api {

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  for (const EtcdError& e : kAllEtcdErrors) {
    if (s.message() == e.message) return e.ToStatus();
  }
  // Not one of etcd's errors: a storage failure or a bug. etcd answers
  // these as Unknown with the error text.
  return grpc::Status(grpc::StatusCode::UNKNOWN, s.message());
}

namespace {

// Whether the KV methods' counters include the latency histogram. They
// are made on a method's first call (function statics), so the first
// member of a process decides (one member per process outside tests).
bool Extensive(const server::Server* s) {
  return s->config().metrics == "extensive";
}

// One unary KV call on the callback API: owns the parsed request and the
// response until gRPC is done with the call.
template <typename Req, typename Resp>
class UnaryCall final : public grpc::ServerUnaryReactor {
 public:
  UnaryCall(const grpc::ServerContextBase* ctx, grpc::ByteBuffer* out,
            const UnaryMethodMetrics* metrics)
      : meta(ctx), out_(out), metrics_(metrics) {
    metrics_->Started();
  }
  void OnDone() override { delete this; }
  // OnDone only frees the call and OnCancel does nothing, so gRPC may run
  // them on the thread that finishes the call. Otherwise it hands each
  // OnDone to its executor threads: two thread switches per request, which
  // perf showed as most of the default-executor's wakeups under range load.
  bool InternalInlineable() override { return true; }
  // Called once, from whichever thread completes the request.
  void Complete(const grpc::Status& st) {
    if (!st.ok()) return End(st);
    bool own = false;
    grpc::Status ser =
        grpc::SerializationTraits<Resp>::Serialize(resp, out_, &own);
    End(ser);
  }
  // Finish, counted in the gRPC metrics (KV calls have no interceptor:
  // grpc_metrics.h).
  void End(const grpc::Status& st) {
    metrics_->Finished(st, start_);
    Finish(st);
  }

  const GrpcCallMeta meta;
  Req req;
  Resp resp;

 private:
  grpc::ByteBuffer* const out_;
  const UnaryMethodMetrics* const metrics_;
  const std::chrono::steady_clock::time_point start_ =
      std::chrono::steady_clock::now();
};

// Parses the request, answers INTERNAL if it is not one (as etcd does),
// then starts it (kv_call.h).
template <typename Req, typename Resp>
grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* ctx,
                                server::Server* s, const grpc::ByteBuffer* in,
                                grpc::ByteBuffer* out,
                                const UnaryMethodMetrics& metrics) {
  auto* call = new UnaryCall<Req, Resp>(ctx, out, &metrics);
  grpc::ByteBuffer bytes(*in);  // shares the slices
  grpc::Status parsed =
      grpc::SerializationTraits<Req>::Deserialize(&bytes, &call->req);
  if (!parsed.ok()) {
    call->End(UnmarshalError(parsed.error_message()));
    return call;
  }
  StartKv(&call->meta, s, call->req, &call->resp,
          [call](const grpc::Status& st) { call->Complete(st); });
  return call;
}

}  // namespace

grpc::ServerUnaryReactor* KvService::Range(grpc::CallbackServerContext* ctx,
                                           const grpc::ByteBuffer* in,
                                           grpc::ByteBuffer* out) {
  static const UnaryMethodMetrics kMetrics("/etcdserverpb.KV/Range",
                                           Extensive(s_));
  return Serve<etcdserverpb::RangeRequest, etcdserverpb::RangeResponse>(
      ctx, s_, in, out, kMetrics);
}

grpc::ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* in,
                                         grpc::ByteBuffer* out) {
  static const UnaryMethodMetrics kMetrics("/etcdserverpb.KV/Put",
                                           Extensive(s_));
  return Serve<etcdserverpb::PutRequest, etcdserverpb::PutResponse>(
      ctx, s_, in, out, kMetrics);
}

grpc::ServerUnaryReactor* KvService::DeleteRange(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
    grpc::ByteBuffer* out) {
  static const UnaryMethodMetrics kMetrics("/etcdserverpb.KV/DeleteRange",
                                           Extensive(s_));
  return Serve<etcdserverpb::DeleteRangeRequest,
               etcdserverpb::DeleteRangeResponse>(ctx, s_, in, out, kMetrics);
}

grpc::ServerUnaryReactor* KvService::Txn(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* in,
                                         grpc::ByteBuffer* out) {
  static const UnaryMethodMetrics kMetrics("/etcdserverpb.KV/Txn",
                                           Extensive(s_));
  return Serve<etcdserverpb::TxnRequest, etcdserverpb::TxnResponse>(
      ctx, s_, in, out, kMetrics);
}

grpc::ServerUnaryReactor* KvService::Compact(grpc::CallbackServerContext* ctx,
                                             const grpc::ByteBuffer* in,
                                             grpc::ByteBuffer* out) {
  static const UnaryMethodMetrics kMetrics("/etcdserverpb.KV/Compact",
                                           Extensive(s_));
  return Serve<etcdserverpb::CompactionRequest,
               etcdserverpb::CompactionResponse>(ctx, s_, in, out, kMetrics);
}

grpc::Status MaintenanceService::Status(grpc::ServerContext*,
                                        const etcdserverpb::StatusRequest*,
                                        etcdserverpb::StatusResponse* out) {
  return ToGrpc(s_->MemberStatus(out));
}

grpc::Status MaintenanceService::Alarm(grpc::ServerContext*,
                                       const etcdserverpb::AlarmRequest* r,
                                       etcdserverpb::AlarmResponse* out) {
  return ToGrpc(s_->Alarm(*r, out));
}

grpc::Status MaintenanceService::HashKV(grpc::ServerContext* ctx,
                                        const etcdserverpb::HashKVRequest* r,
                                        etcdserverpb::HashKVResponse* out) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/true); !a.ok())
    return ToGrpc(a);
  return ToGrpc(s_->HashKV(*r, out));
}

grpc::Status MaintenanceService::Defragment(
    grpc::ServerContext* ctx, const etcdserverpb::DefragmentRequest*,
    etcdserverpb::DefragmentResponse* out) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/true); !a.ok())
    return ToGrpc(a);
  return ToGrpc(s_->Defragment(out));
}

grpc::Status ClusterService::MemberList(
    grpc::ServerContext*, const etcdserverpb::MemberListRequest* r,
    etcdserverpb::MemberListResponse* out) {
  return ToGrpc(s_->MemberList(*r, out));
}

grpc::Status MaintenanceService::Hash(grpc::ServerContext* ctx,
                                      const etcdserverpb::HashRequest*,
                                      etcdserverpb::HashResponse* out) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/true); !a.ok())
    return ToGrpc(a);
  return ToGrpc(s_->Hash(out));
}

grpc::Status MaintenanceService::MoveLeader(
    grpc::ServerContext* ctx, const etcdserverpb::MoveLeaderRequest* r,
    etcdserverpb::MoveLeaderResponse* out) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/true); !a.ok())
    return ToGrpc(a);
  return ToGrpc(s_->MoveLeader(*r, out));
}

grpc::Status MaintenanceService::Snapshot(
    grpc::ServerContext* ctx, const etcdserverpb::SnapshotRequest*,
    grpc::ServerWriter<etcdserverpb::SnapshotResponse>* w) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/true); !a.ok())
    return ToGrpc(a);
  // etcd sends the file in pieces, each with the bytes still to come, and
  // the file's SHA-256 as the last 32 bytes of the stream.
  uint64_t sent = 0;
  etcdserverpb::SnapshotResponse resp;
  return ToGrpc(s_->Snapshot([&](std::string_view piece, uint64_t total) {
    if (ctx->IsCancelled()) return false;
    sent += piece.size();
    resp.Clear();
    s_->FillHeader(resp.mutable_header(), 0);
    resp.set_remaining_bytes(total - sent);
    resp.set_blob(piece.data(), piece.size());
    return w->Write(resp);
  }));
}

grpc::Status ClusterService::MemberAdd(grpc::ServerContext* ctx,
                                       const etcdserverpb::MemberAddRequest* r,
                                       etcdserverpb::MemberAddResponse* out) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/false); !a.ok())
    return ToGrpc(a);
  return ToGrpc(s_->MemberAdd(*r, out));
}

grpc::Status ClusterService::MemberRemove(
    grpc::ServerContext* ctx, const etcdserverpb::MemberRemoveRequest* r,
    etcdserverpb::MemberRemoveResponse* out) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/false); !a.ok())
    return ToGrpc(a);
  return ToGrpc(s_->MemberRemove(*r, out));
}

grpc::Status ClusterService::MemberUpdate(
    grpc::ServerContext* ctx, const etcdserverpb::MemberUpdateRequest* r,
    etcdserverpb::MemberUpdateResponse* out) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/false); !a.ok())
    return ToGrpc(a);
  return ToGrpc(s_->MemberUpdate(*r, out));
}

grpc::Status ClusterService::MemberPromote(
    grpc::ServerContext* ctx, const etcdserverpb::MemberPromoteRequest* r,
    etcdserverpb::MemberPromoteResponse* out) {
  if (keel::Status a = CheckAdmin(ctx, s_, /*raw=*/false); !a.ok())
    return ToGrpc(a);
  grpc::Status st = ToGrpc(s_->MemberPromote(*r, out));
  if (st.error_message() != kErrNotLeader.message) return st;
  auto urls = s_->LeaderClientUrls();
  if (urls.empty()) return kErrNoLeader.ToStatus();
  auto channel = s_->MemberChannel(urls[0]);
  if (!channel) return kErrNoLeader.ToStatus();
  auto stub = etcdserverpb::Cluster::NewStub(channel);
  grpc::ClientContext fwd;
  fwd.set_deadline(ctx->deadline());
  ForwardAuthMetadata(*ctx, &fwd);
  return stub->MemberPromote(&fwd, *r, out);
}

void ForwardAuthMetadata(const grpc::ServerContext& in,
                         grpc::ClientContext* out) {
  // etcd's clients send their token as "token"; the JSON gateway passes
  // the Authorization header as "authorization". Tokens are replicated
  // (simple ones through the log, JWTs are signed), so the leader knows it.
  for (const char* key : {"token", "authorization"}) {
    auto [b, e] = in.client_metadata().equal_range(key);
    for (auto it = b; it != e; ++it) {
      out->AddMetadata(key, std::string(it->second.data(), it->second.size()));
    }
  }
}

ClientApi::ClientApi(server::Server* s)
    : kv_(s),
      maintenance_(s),
      cluster_(s),
      lease_(s),
      lock_(&recipes_),
      election_(&recipes_),
      watch_(s),
      keel_membership_(s),
      auth_(s) {}

ClientApi::~ClientApi() { Shutdown(); }

void ClientApi::Shutdown() {
  // Stop taking connections, end the HTTP ones (their streaming calls
  // cancel), then gRPC.
  if (metrics_listener_) metrics_listener_->Stop();
  if (metrics_http_) metrics_http_->Shutdown();
  if (listener_) listener_->Stop();
  if (http_) http_->Shutdown();
  // Before gRPC: relayed streams end with their client connections.
  if (h2_) h2_->Stop();
  if (grpc_) {
    // Watch streams never end by themselves: end them first, so that the
    // shutdown does not wait out its deadline.
    watch_.Shutdown();
    grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc_.reset();
  }
}

Result<std::unique_ptr<ClientApi>> ClientApi::Start(server::Server* s) {
  std::unique_ptr<ClientApi> api(new ClientApi(s));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder b;
  const auto& urls = s->config().listen_client_urls;
  api->ports_.assign(urls.size(), 0);
  std::shared_ptr<grpc::ServerCredentials> tls;
  for (size_t i = 0; i < urls.size(); i++) {
    if (urls[i].scheme != "http" && urls[i].scheme != "https") {
      return Status::InvalidArgument(
          "--listen-client-urls " + urls[i].String() +
          ": only http:// and https:// are supported");
    }
    if (urls[i].scheme != "https" || tls) continue;
    // https: keel accepts (ServeClientUrls) and relays gRPC connections,
    // still encrypted, to a loopback port where gRPC terminates TLS itself
    // (client_tls.h says why).
    auto creds = ClientTlsCredentials(s->config());
    if (!creds.ok()) return creds.status();
    tls = std::move(creds).value();
    b.AddListeningPort("127.0.0.1:0", tls, &api->tls_grpc_port_);
  }
  // http: keel accepts client connections itself and hands gRPC's to it
  // (ServeClientUrls).
  // etcd lets a request be this much larger than --max-request-bytes at the
  // gRPC layer, so that its own check answers with its own message.
  constexpr int kGrpcOverheadBytes = 512 * 1024;
  api->max_recv_message_bytes_ = static_cast<size_t>(std::min<uint64_t>(
      s->config().max_request_bytes + kGrpcOverheadBytes, INT_MAX));
  b.SetMaxReceiveMessageSize(static_cast<int>(api->max_recv_message_bytes_));
  b.SetMaxSendMessageSize(INT_MAX);
  // channelz (gRPC's introspection service, which keel does not serve)
  // counts every call's start and end in shared atomics.
  b.AddChannelArgument(GRPC_ARG_ENABLE_CHANNELZ, 0);
  // Metrics for every RPC (go-grpc-prometheus's names, as etcd's).
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<GrpcMetricsFactory>(
      std::vector<std::string>{"etcdserverpb.KV", "etcdserverpb.Watch",
                               "etcdserverpb.Lease", "etcdserverpb.Cluster",
                               "etcdserverpb.Maintenance", "etcdserverpb.Auth",
                               "grpc.health.v1.Health"},
      s->config().metrics == "extensive"));
  b.experimental().SetInterceptorCreators(std::move(interceptors));
  b.RegisterService(&api->kv_);
  b.RegisterService(&api->maintenance_);
  b.RegisterService(&api->cluster_);
  b.RegisterService(&api->lease_);
  b.RegisterService(&api->lock_);
  b.RegisterService(&api->election_);
  b.RegisterService(&api->watch_);
  b.RegisterService(&api->keel_membership_);
  b.RegisterService(&api->auth_);
  api->grpc_ = b.BuildAndStart();
  if (!api->grpc_) return Status::IOError("cannot start the gRPC server");
  // Election and Lock call this member's own services in-process.
  api->recipes_.Connect(api->grpc_->InProcessChannel(grpc::ChannelArguments()));
  if (tls && api->tls_grpc_port_ == 0) {
    return Status::IOError(
        "cannot listen on 127.0.0.1 for gRPC over TLS (client traffic)");
  }
  KEEL_RETURN_IF_ERROR(api->ServeClientUrls(s));
  KEEL_RETURN_IF_ERROR(api->ServeMetricsUrls(s));
  return api;
}

}  // namespace keel::api
