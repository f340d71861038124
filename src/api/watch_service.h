// The etcd v3 Watch service: one bidirectional stream per client call,
// served with gRPC's callback API (no thread per stream or per watcher).
//
// Each stream is a WatchSink of the member's WatchHub (src/mvcc): the hub
// hands it events, compaction and progress notifications; the stream keeps
// an outgoing queue with one write in flight. When the queue is over its
// limit the hub stops handing it events and the stream's watchers fall
// behind, to catch up from the store's history once the client reads
// again — a client that does not read never holds up writes.
//
// Responses follow etcd 3.4 (server/etcdserver/api/v3rpc/watch.go):
// created (with the store revision), canceled, compact_revision + canceled,
// progress (watch_id -1 for a WatchProgressRequest), and `fragment` splits
// a response over --max-request-bytes.
//
// Thread safety: the service and its streams may be called from any gRPC
// thread; a stream's state is guarded by its mutex. Lock order: hub ->
// stream (the hub calls WatchSink methods under its lock); a stream never
// calls the hub while holding its own lock.
#pragma once

#include <grpcpp/grpcpp.h>

#include <mutex>
#include <set>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "server/server.h"

namespace keel::api {

class WatchStream;

class WatchService final : public etcdserverpb::Watch::CallbackService {
 public:
  explicit WatchService(server::Server* s) : s_(s) {}
  ~WatchService() override;

  grpc::ServerBidiReactor<etcdserverpb::WatchRequest,
                          etcdserverpb::WatchResponse>*
  Watch(grpc::CallbackServerContext* ctx) override;

  // Ends every open stream (the member is stopping); new ones are refused.
  void Shutdown();

 private:
  friend class WatchStream;
  void Forget(WatchStream* s);

  server::Server* const s_;
  std::mutex mu_;
  std::set<WatchStream*> streams_;  // guarded by mu_
  bool shutdown_ = false;           // guarded by mu_
};

}  // namespace keel::api
