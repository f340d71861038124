// Context: what the transport's internal objects (Peer, Connector,
// SnapshotSender, InboundConn) share: options, the io_context, the snapshot
// worker, the Handler and SnapshotStore, the jitter source and statistics.
//
// Thread safety: opts(), io(), store() are constant after construction.
// Deliver/Unreachable/SnapshotStatus, rng() and inbound() are io-thread
// only. Blocking() and stats() may be used from any thread.
#pragma once

#define ASIO_NO_DEPRECATED
#include <asio.hpp>
#include <atomic>
#include <map>
#include <memory>
#include <utility>

#include "common/rng.h"
#include "transport/thread_annotations.h"
#include "transport/tls.h"
#include "transport/transport.h"

namespace keel::transport {

class InboundConn;

class StatsRegistry {
 public:
  template <typename Fn>
  void Update(NodeId peer, Fn fn) LOCKS_EXCLUDED(mu_) {
    MutexLock l(&mu_);
    fn(peers_[peer]);
  }
  PeerStats Get(NodeId peer) LOCKS_EXCLUDED(mu_);
  std::map<NodeId, PeerStats> All() LOCKS_EXCLUDED(mu_);

 private:
  Mutex mu_;
  std::map<NodeId, PeerStats> peers_ GUARDED_BY(mu_);
};

class Context {
 public:
  Context(Options opts, Handler* handler, SnapshotStore* store);
  // Builds the TLS contexts from opts().tls (files read now); once, before
  // any connection. Without a certificate, only dialling https works (with
  // the system's roots, no client certificate).
  Status InitTls();
  // nullptr before InitTls().
  TlsContext* tls() const { return tls_.get(); }

  const Options& opts() const { return opts_; }
  asio::io_context& io() { return io_; }
  SnapshotStore* store() const { return store_; }
  StatsRegistry& stats() { return stats_; }
  Rng& rng() { return rng_; }
  std::map<uint64_t, std::weak_ptr<InboundConn>>& inbound() { return inbound_; }

  // Handler calls, io thread only; silent once stopping.
  void Deliver(raft::Message m);
  void Unreachable(NodeId peer);
  void SnapshotStatus(NodeId peer, bool ok);

  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  void set_stopping() { stopping_.store(true, std::memory_order_release); }

  // Runs work() on the snapshot worker thread, then done(result) on the io
  // thread. Whatever work touches must be kept alive by its captures.
  template <typename Work, typename Done>
  void Blocking(Work work, Done done) {
    asio::post(worker_, [this, work = std::move(work),
                         done = std::move(done)]() mutable {
      auto result = work();
      asio::post(
          io_, [done = std::move(done), result = std::move(result)]() mutable {
            done(std::move(result));
          });
    });
  }
  // Abandons queued blocking work and waits for the running one.
  void StopWorker() {
    worker_.stop();
    worker_.join();
  }

 private:
  const Options opts_;
  Handler* const handler_;
  SnapshotStore* const store_;
  std::atomic<bool> stopping_{false};
  std::shared_ptr<TlsContext> tls_;  // set once by InitTls()
  StatsRegistry stats_;
  SeededRng rng_;                                           // io thread only
  std::map<uint64_t, std::weak_ptr<InboundConn>> inbound_;  // io thread only
  // Declared before worker_: work abandoned in the pool may own sockets,
  // which must be destroyed while io_ exists.
  asio::io_context io_;
  asio::thread_pool worker_{1};
};

// Sets the options every peer socket gets.
void TuneSocket(asio::ip::tcp::socket& s);

}  // namespace keel::transport
