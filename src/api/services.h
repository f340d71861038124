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

#include "api/lease_service.h"
#include "common/status.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "server/server.h"

namespace keel::api {

// Maps a Status from the server or the store to the gRPC status etcd sends.
grpc::Status ToGrpc(const Status& s);

class KvService final : public etcdserverpb::KV::Service {
 public:
  explicit KvService(server::Server* s) : s_(s) {}
  grpc::Status Range(grpc::ServerContext*, const etcdserverpb::RangeRequest*,
                     etcdserverpb::RangeResponse*) override;
  grpc::Status Put(grpc::ServerContext*, const etcdserverpb::PutRequest*,
                   etcdserverpb::PutResponse*) override;
  grpc::Status DeleteRange(grpc::ServerContext*,
                           const etcdserverpb::DeleteRangeRequest*,
                           etcdserverpb::DeleteRangeResponse*) override;
  grpc::Status Txn(grpc::ServerContext*, const etcdserverpb::TxnRequest*,
                   etcdserverpb::TxnResponse*) override;
  grpc::Status Compact(grpc::ServerContext*,
                       const etcdserverpb::CompactionRequest*,
                       etcdserverpb::CompactionResponse*) override;

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

 private:
  server::Server* s_;
};

class ClusterService final : public etcdserverpb::Cluster::Service {
 public:
  explicit ClusterService(server::Server* s) : s_(s) {}
  grpc::Status MemberList(grpc::ServerContext*,
                          const etcdserverpb::MemberListRequest*,
                          etcdserverpb::MemberListResponse*) override;

 private:
  server::Server* s_;
};

// A running gRPC endpoint on the member's client URLs.
class ClientApi {
 public:
  // Listens on every --listen-client-urls address.
  static Result<std::unique_ptr<ClientApi>> Start(server::Server* s);
  ~ClientApi();
  void Shutdown();
  // The ports actually bound (for URLs with port 0), in URL order.
  const std::vector<int>& ports() const { return ports_; }

 private:
  explicit ClientApi(server::Server* s);

  KvService kv_;
  MaintenanceService maintenance_;
  ClusterService cluster_;
  LeaseService lease_;
  std::unique_ptr<grpc::Server> grpc_;
  std::vector<int> ports_;
};

}  // namespace keel::api
