#include "transport/context.h"

#include <chrono>

namespace keel::transport {
namespace {

uint64_t JitterSeed(const Options& o) {
  if (o.jitter_seed != 0) return o.jitter_seed;
  // Jitter only spreads reconnection storms; it needs no reproducibility,
  // but members must not share a seed.
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return (o.local_id * 0x9e3779b97f4a7c15ULL) ^ static_cast<uint64_t>(now);
}

}  // namespace

PeerStats StatsRegistry::Get(NodeId peer) {
  MutexLock l(&mu_);
  auto it = peers_.find(peer);
  return it == peers_.end() ? PeerStats{} : it->second;
}

std::map<NodeId, PeerStats> StatsRegistry::All() {
  MutexLock l(&mu_);
  return peers_;
}

Context::Context(Options opts, Handler* handler, SnapshotStore* store)
    : opts_(std::move(opts)),
      handler_(handler),
      store_(store),
      rng_(JitterSeed(opts_)) {
  KEEL_CHECK(handler_ != nullptr);
  KEEL_CHECK(store_ != nullptr);
}

Status Context::InitTls() {
  auto t = TlsContext::Create(opts_.tls);
  if (!t.ok()) return t.status();
  tls_ = std::move(t).value();
  return Status::OK();
}

void Context::Deliver(raft::Message m) {
  if (!stopping()) handler_->OnMessage(std::move(m));
}

void Context::Unreachable(NodeId peer) {
  if (!stopping()) handler_->OnUnreachable(peer);
}

void Context::SnapshotStatus(NodeId peer, bool ok) {
  if (!stopping()) handler_->OnSnapshotStatus(peer, ok);
}

void TuneSocket(asio::ip::tcp::socket& s) {
  asio::error_code ignored;
  // Batches are built by us; Nagle would only add latency to heartbeats.
  s.set_option(asio::ip::tcp::no_delay(true), ignored);
  s.set_option(asio::socket_base::keep_alive(true), ignored);
}

}  // namespace keel::transport
