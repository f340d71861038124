// H2Front: keel's own HTTP/2 server for the plaintext gRPC connections of
// the client URLs.
//
// The unary KV calls etcd's clients make most (Range, Put, DeleteRange,
// Txn) are served here natively: gRPC's wire format (length-prefixed
// protobuf in DATA, status in the trailers) over libnghttp2, started with
// the same checks as gRPC C++'s path (kv_call.h). gRPC C++'s server stack
// cost ~40 us of a member's CPU per put on 2 cores (perf: call setup,
// its executor's thread hand-offs, metadata maps), more than the Raft,
// WAL and store work of the put itself.
//
// Every other stream (Watch, LeaseKeepAlive, Compact, Cluster,
// Maintenance, Auth, health, anything unusual such as a compressed request)
// is relayed, frame by frame, to the gRPC C++ server in process: each
// client connection has one HTTP/2 connection to it over a socketpair,
// opened on the first such stream. Relaying is flow controlled end to end
// (a stream's bytes are acknowledged to the sender only once the other side
// took them), so a slow watcher holds at most its windows in memory.
//
// Threads: connections are spread over a few io threads, each connection
// on one of them; a native call's completion (on the Raft loop thread, say)
// is handed to its connection's thread, many at a time under load.
//
// Thread safety: Adopt from any thread; Stop once, not from an io thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <memory>

namespace keel::server {
class Server;
}

namespace keel::api {

struct H2FrontOptions {
  server::Server* server = nullptr;
  // Where the other streams go (grpc::AddInsecureChannelFromFd).
  grpc::Server* grpc = nullptr;
  // The largest request message taken (gRPC's max receive size): a larger
  // one is answered RESOURCE_EXHAUSTED.
  size_t max_recv_message_bytes = 4 << 20;
  // 0: one per core, at most 4.
  int io_threads = 0;
};

class H2Front {
 public:
  explicit H2Front(H2FrontOptions options);
  ~H2Front();
  H2Front(const H2Front&) = delete;
  H2Front& operator=(const H2Front&) = delete;

  // Serves a connected socket whose first bytes are the HTTP/2 client
  // preface; takes ownership of fd.
  void Adopt(int fd);
  // Sends GOAWAY on every connection, closes them and joins the io threads.
  // Calls still in flight on the Server complete into nothing.
  void Stop();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::api
