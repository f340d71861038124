#include "transport/transport.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <optional>
#include <set>
#include <thread>

#include "transport/context.h"
#include "transport/inbound.h"
#include "transport/peer.h"
#include "transport/thread_annotations.h"
#include "transport/wire.h"

namespace keel::transport {

using asio::ip::tcp;

class Transport::Impl {
 public:
  Impl(Options opts, Handler* handler, SnapshotStore* store)
      : ctx_(std::move(opts), handler, store),
        acceptor_(ctx_.io()),
        accept_pause_(ctx_.io()) {}

  Status Start() LOCKS_EXCLUDED(mu_);
  void Stop() LOCKS_EXCLUDED(mu_);
  uint16_t port() const { return port_.load(); }
  void AddPeer(NodeId id, std::vector<std::string> urls) LOCKS_EXCLUDED(mu_);
  void UpdatePeer(NodeId id, std::vector<std::string> urls) LOCKS_EXCLUDED(mu_);
  void RemovePeer(NodeId id) LOCKS_EXCLUDED(mu_);
  void Send(std::vector<raft::Message> msgs);
  StatsRegistry& stats() { return ctx_.stats(); }
  asio::io_context& io() { return ctx_.io(); }

 private:
  Status Listen();
  // Marks the transport started; false if it was started or stopped before.
  bool MarkStarted() LOCKS_EXCLUDED(mu_);
  // Marks it stopped; returns whether it had been started (and not stopped).
  bool MarkStopped() LOCKS_EXCLUDED(mu_);
  std::shared_ptr<Peer> FindPeer(NodeId id) LOCKS_EXCLUDED(mu_);
  // The peer now registered under id (created if new), and whether the io
  // side must start it.
  std::pair<std::shared_ptr<Peer>, bool> UpsertPeer(
      NodeId id, std::vector<std::string> urls) LOCKS_EXCLUDED(mu_);
  std::shared_ptr<Peer> ErasePeer(NodeId id) LOCKS_EXCLUDED(mu_);
  std::vector<std::shared_ptr<Peer>> AllPeers() LOCKS_EXCLUDED(mu_);
  // Queues msgs for peer `to`; adds the peer to *unreachable or
  // *snap_failed if some could not be queued.
  void Enqueue(NodeId to, std::vector<raft::Message> msgs,
               std::set<NodeId>* unreachable, std::set<NodeId>* snap_failed);
  // The fault hook's kDelay: queues m after delay (io thread timer).
  void SendLater(raft::Message m, std::chrono::milliseconds delay);
  // Reports the outcome of Enqueue()s on the io thread.
  void PostReports(std::set<NodeId> unreachable, std::set<NodeId> snap_failed);
  void Accept();
  void CloseAll();

  Context ctx_;              // first: everything below uses its io_context
  tcp::acceptor acceptor_;   // io thread once started
  bool listen_tls_ = false;  // set by Listen()
  asio::steady_timer accept_pause_;  // io thread
  std::thread io_thread_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_;
  std::atomic<uint16_t> port_{0};
  uint64_t next_conn_id_ = 1;  // io thread only

  Mutex mu_;
  bool started_ GUARDED_BY(mu_) = false;
  bool stopped_ GUARDED_BY(mu_) = false;
  std::map<NodeId, std::shared_ptr<Peer>> peers_ GUARDED_BY(mu_);
};

bool Transport::Impl::MarkStarted() {
  MutexLock l(&mu_);
  if (started_ || stopped_) return false;
  started_ = true;
  return true;
}

bool Transport::Impl::MarkStopped() {
  MutexLock l(&mu_);
  const bool was_running = started_ && !stopped_;
  stopped_ = true;
  return was_running;
}

Status Transport::Impl::Listen() {
  const Options& o = ctx_.opts();
  auto hp = ParseUrl(o.listen_url);
  if (!hp.ok()) return hp.status();
  KEEL_RETURN_IF_ERROR(ctx_.InitTls());
  if (hp->tls && !o.tls.enabled()) {
    return Status::InvalidArgument("transport: listen URL " + o.listen_url +
                                   " is https but no certificate is given");
  }
  listen_tls_ = hp->tls;
  asio::error_code ec;
  tcp::resolver resolver(ctx_.io());
  auto results = resolver.resolve(hp->host, hp->port, ec);
  if (ec || results.empty()) {
    return Status::InvalidArgument("transport: cannot resolve listen URL " +
                                   o.listen_url + ": " + ec.message());
  }
  const tcp::endpoint ep = results.begin()->endpoint();
  auto fail = [&](const char* what) {
    asio::error_code ignored;
    acceptor_.close(ignored);
    return Status::IOError("transport: cannot listen on " + o.listen_url +
                           " (" + what + "): " + ec.message());
  };
  acceptor_.open(ep.protocol(), ec);
  if (ec) return fail("open");
  // A restarted member must be able to bind while old connections linger
  // in TIME_WAIT.
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) return fail("SO_REUSEADDR");
  acceptor_.bind(ep, ec);
  if (ec) return fail("bind");
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  port_ = acceptor_.local_endpoint(ec).port();
  return Status::OK();
}

Status Transport::Impl::Start() {
  if (!MarkStarted()) {
    return Status::FailedPrecondition("transport: Start() called twice");
  }
  Status s = Listen();
  if (!s.ok()) {
    MarkStopped();
    return s;
  }
  spdlog::info("transport: member {} of cluster {:x} listening on {} (port {})",
               ctx_.opts().local_id, ctx_.opts().cluster_id,
               ctx_.opts().listen_url, port_.load());
  work_.emplace(ctx_.io().get_executor());
  asio::post(ctx_.io(), [this] {
    Accept();
    for (auto& p : AllPeers()) p->Start();
  });
  if (!ctx_.opts().external_io) {
    io_thread_ = std::thread([this] { ctx_.io().run(); });
  }
  return Status::OK();
}

void Transport::Impl::Accept() {
  acceptor_.async_accept([this](asio::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // EMFILE and the like: the listener stays up, and pauses rather than
      // spinning on an error that will repeat at once.
      spdlog::warn("transport: accept: {}", ec.message());
      accept_pause_.expires_after(std::chrono::milliseconds(100));
      accept_pause_.async_wait([this](asio::error_code ec) {
        if (!ec) Accept();
      });
      return;
    }
    std::make_shared<InboundConn>(&ctx_, std::move(socket), next_conn_id_++,
                                  listen_tls_)
        ->Start();
    Accept();
  });
}

void Transport::Impl::CloseAll() {
  asio::error_code ignored;
  acceptor_.close(ignored);
  accept_pause_.cancel();
  for (auto& p : AllPeers()) p->Close();
  // Close() erases from the map: iterate over a copy.
  auto inbound = ctx_.inbound();
  for (auto& [id, weak] : inbound) {
    if (auto conn = weak.lock()) conn->Close();
  }
}

void Transport::Impl::Stop() {
  if (!MarkStopped()) return;
  KEEL_CHECK(std::this_thread::get_id() != io_thread_.get_id())
      << "Transport::Stop() called from a Handler callback";
  ctx_.set_stopping();  // no Handler call from here on
  asio::post(ctx_.io(), [this] {
    CloseAll();
    ctx_.io().stop();
  });
  if (io_thread_.joinable()) {
    io_thread_.join();
  } else {
    // external_io: the owner no longer drives the io; close here.
    ctx_.io().run();
  }
  ctx_.StopWorker();
  work_.reset();
  spdlog::info("transport: member {} stopped", ctx_.opts().local_id);
}

std::shared_ptr<Peer> Transport::Impl::FindPeer(NodeId id) {
  MutexLock l(&mu_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second;
}

std::pair<std::shared_ptr<Peer>, bool> Transport::Impl::UpsertPeer(
    NodeId id, std::vector<std::string> urls) {
  MutexLock l(&mu_);
  if (stopped_) return {nullptr, false};
  auto it = peers_.find(id);
  if (it != peers_.end()) {
    it->second->SetUrls(std::move(urls));
    return {it->second, false};
  }
  auto peer = std::make_shared<Peer>(&ctx_, id, std::move(urls));
  peers_[id] = peer;
  return {peer, started_};
}

std::shared_ptr<Peer> Transport::Impl::ErasePeer(NodeId id) {
  MutexLock l(&mu_);
  auto it = peers_.find(id);
  if (it == peers_.end()) return nullptr;
  auto peer = std::move(it->second);
  peers_.erase(it);
  return peer;
}

std::vector<std::shared_ptr<Peer>> Transport::Impl::AllPeers() {
  MutexLock l(&mu_);
  std::vector<std::shared_ptr<Peer>> all;
  for (auto& [id, p] : peers_) all.push_back(p);
  return all;
}

void Transport::Impl::AddPeer(NodeId id, std::vector<std::string> urls) {
  KEEL_CHECK(id != raft::kNone && id != ctx_.opts().local_id)
      << "AddPeer(" << id << ")";
  // Named variables, not a structured binding: lambdas capture them.
  auto upserted = UpsertPeer(id, std::move(urls));
  std::shared_ptr<Peer> peer = std::move(upserted.first);
  const bool start = upserted.second;
  if (!peer) return;
  // A known peer gets its new URLs as UpdatePeer would; a new one is
  // started only if the io thread runs (Start() starts the others).
  asio::post(ctx_.io(), [peer, start] {
    if (start) {
      peer->Start();
    } else {
      peer->Redial();
    }
  });
}

void Transport::Impl::UpdatePeer(NodeId id, std::vector<std::string> urls) {
  auto peer = FindPeer(id);
  if (!peer) {
    spdlog::warn("transport: UpdatePeer({}) for an unknown peer; adding it",
                 id);
    AddPeer(id, std::move(urls));
    return;
  }
  peer->SetUrls(std::move(urls));
  asio::post(ctx_.io(), [peer] { peer->Redial(); });
}

void Transport::Impl::RemovePeer(NodeId id) {
  auto peer = ErasePeer(id);
  if (!peer) return;
  spdlog::info("transport: removed peer {}", id);
  asio::post(ctx_.io(), [peer] { peer->Close(); });
}

void Transport::Impl::Enqueue(NodeId to, std::vector<raft::Message> msgs,
                              std::set<NodeId>* unreachable,
                              std::set<NodeId>* snap_failed) {
  Peer::Dropped dropped;
  if (auto peer = FindPeer(to)) {
    dropped = peer->Enqueue(std::move(msgs));
  } else {
    spdlog::debug("transport: {} messages to unknown peer {} dropped",
                  msgs.size(), to);
    for (const auto& m : msgs) {
      (m.type == raft::MessageType::kSnap ? dropped.snaps : dropped.msgs)++;
    }
  }
  if (dropped.msgs + dropped.snaps == 0) return;
  ctx_.stats().Update(to, [&dropped](PeerStats& s) {
    s.msgs_dropped += dropped.msgs + dropped.snaps;
  });
  if (dropped.msgs > 0) unreachable->insert(to);
  if (dropped.snaps > 0) snap_failed->insert(to);
}

void Transport::Impl::PostReports(std::set<NodeId> unreachable,
                                  std::set<NodeId> snap_failed) {
  if (unreachable.empty() && snap_failed.empty()) return;
  asio::post(ctx_.io(), [this, unreachable = std::move(unreachable),
                         snap_failed = std::move(snap_failed)] {
    for (NodeId id : unreachable) ctx_.Unreachable(id);
    for (NodeId id : snap_failed) ctx_.SnapshotStatus(id, false);
  });
}

void Transport::Impl::Send(std::vector<raft::Message> msgs) {
  if (ctx_.stopping()) return;
  // Per peer, in order: each peer's share is queued under one lock.
  std::map<NodeId, std::vector<raft::Message>> by_peer;
  const FaultHook& hook = ctx_.opts().fault_hook;
  for (auto& m : msgs) {
    if (hook) {
      FaultDecision d = hook(m);
      if (d.kind == FaultDecision::Kind::kDrop) continue;
      if (d.kind == FaultDecision::Kind::kDelay) {
        SendLater(std::move(m), d.delay);
        continue;
      }
    }
    const NodeId to = m.to;
    by_peer[to].push_back(std::move(m));
  }
  std::set<NodeId> unreachable;
  std::set<NodeId> snap_failed;
  for (auto& [to, batch] : by_peer) {
    Enqueue(to, std::move(batch), &unreachable, &snap_failed);
  }
  PostReports(std::move(unreachable), std::move(snap_failed));
}

void Transport::Impl::SendLater(raft::Message m,
                                std::chrono::milliseconds delay) {
  auto timer = std::make_shared<asio::steady_timer>(ctx_.io(), delay);
  timer->async_wait(
      [this, timer, m = std::move(m)](asio::error_code ec) mutable {
        if (ec) return;
        std::set<NodeId> unreachable;
        std::set<NodeId> snap_failed;
        const NodeId to = m.to;
        std::vector<raft::Message> one;
        one.push_back(std::move(m));
        Enqueue(to, std::move(one), &unreachable, &snap_failed);
        PostReports(std::move(unreachable), std::move(snap_failed));
      });
}

Transport::Transport(Options opts, Handler* handler, SnapshotStore* store)
    : impl_(std::make_unique<Impl>(std::move(opts), handler, store)) {}

Transport::~Transport() { Stop(); }

Status Transport::Start() { return impl_->Start(); }
void Transport::Stop() { impl_->Stop(); }
uint16_t Transport::port() const { return impl_->port(); }

void Transport::AddPeer(NodeId id, std::vector<std::string> urls) {
  impl_->AddPeer(id, std::move(urls));
}
void Transport::UpdatePeer(NodeId id, std::vector<std::string> urls) {
  impl_->UpdatePeer(id, std::move(urls));
}
void Transport::RemovePeer(NodeId id) { impl_->RemovePeer(id); }
void Transport::Send(std::vector<raft::Message> msgs) {
  impl_->Send(std::move(msgs));
}
void Transport::Poll() { impl_->io().poll(); }
void Transport::RunOneUntil(std::chrono::steady_clock::time_point deadline) {
  impl_->io().run_one_until(deadline);
}
void Transport::Wake() {
  asio::post(impl_->io(), [] {});
}
PeerStats Transport::Stats(NodeId peer) const {
  return impl_->stats().Get(peer);
}
std::map<NodeId, PeerStats> Transport::AllStats() const {
  return impl_->stats().All();
}

}  // namespace keel::transport
