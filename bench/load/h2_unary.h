// keel-bench's own client for the unary KV workloads (put, range, txn-put):
// gRPC's wire protocol (HTTP/2 via libnghttp2, length-prefixed protobuf
// messages, grpc-status trailers) without gRPC's client stack.
//
// Why: keel-bench shares the machine's cores with the servers it measures,
// so every microsecond it spends per request is taken from them. gRPC C++'s
// client costs ~30 µs of CPU per unary call even when trimmed (call object,
// filter stack, combiners, completion queue, a thread hand-off per batch);
// this client does the same exchange on the same connections in a fraction
// of that. The requests are the same bytes (same protobuf messages, same
// keys and values, a grpc-timeout header from --timeout), so etcd and keel
// see the same load; `--transport grpc` keeps gRPC's client for comparison.
//
// Design: --threads event loops (epoll), each owning its share of the
// --conns TCP connections (one nghttp2 session each) and of the closed-loop
// clients (each bound to one connection, one request in flight). A loop
// reads every ready connection, completes the requests whose streams
// closed, issues each client's next request and writes each connection's
// frames once per turn, so requests that finish together share a write.
// Deadlines are enforced here too: a request older than --timeout is reset
// (RST_STREAM CANCEL) and counted as DeadlineExceeded, as gRPC would.
//
// Thread safety: each loop runs on one thread and touches only its own
// connections and clients; the shared counters are atomics (Shared).
#pragma once

#include <memory>
#include <vector>

#include "bench_common.h"
#include "stats.h"

namespace keel::bench {

class H2Loop;

class H2Unary {
 public:
  // seeds[i] seeds client i's key generator.
  H2Unary(Shared* s, const std::vector<uint64_t>& seeds);
  ~H2Unary();

  // Opens every connection; false (with a message on stderr) if one fails.
  bool Connect();
  int loops() const { return static_cast<int>(loops_.size()); }
  // Runs loop i until its clients are done; call once per loop, each on its
  // own thread.
  void Run(int i);
  // Every loop's samples and errors, after Run returned on each.
  std::unique_ptr<Recorder> MergeAll();

 private:
  Shared* const s_;
  std::vector<std::unique_ptr<H2Loop>> loops_;
};

}  // namespace keel::bench
