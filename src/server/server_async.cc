// The asynchronous request path of Server: the same KV requests as the
// blocking forms in server.cc, completed by callback, so that a thousand
// requests in flight cost a thousand small records rather than a thousand
// parked threads (the blocking path's thread switches were most of a loaded
// member's CPU in perf).
//
// A write registers a callback Waiter and hands its entry to the RaftNode
// loop; Apply completes the waiter on the loop thread. A linearizable read
// joins the next ReadIndex round and reads the local store on the loop
// thread once the round is applied. ReapLoop times out writes that never
// apply (a lost proposal) and retries reads that found no leader.
#include <spdlog/spdlog.h>

#include "api/errors.h"
#include "mvcc/request_check.h"
#include "server/convert.h"
#include "server/request_checks.h"
#include "server/server.h"
#include "server/server_metrics.h"

namespace keel::server {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

Status EtcdErr(const api::EtcdError& e) {
  return Status::FailedPrecondition(e.message);
}

std::shared_ptr<ApplyResult> Failed(Status s) {
  auto r = std::make_shared<ApplyResult>();
  r->status = std::move(s);
  return r;
}

}  // namespace

void Server::ProposeAsync(internal::Request req, Waiter::Callback done) {
  // etcd_server_proposals_pending until the waiter completes; a proposal
  // that never applied (timed out, member stopping) counts as failed.
  ServerMetrics& metrics = ServerMetrics::Get();
  metrics.proposals_pending.Inc();
  done = [&metrics, done = std::move(done)](std::shared_ptr<ApplyResult> r) {
    metrics.proposals_pending.Dec();
    const std::string& msg = r->status.message();
    if (msg == api::kErrTimeout.message || msg == api::kErrStopped.message) {
      metrics.proposals_failed.Inc();
    }
    done(std::move(r));
  };
  uint64_t id = next_request_id_++;
  StampRequestAuth(&req);
  req.set_id(id);
  req.set_member_id(member_id_);
  std::string data = req.SerializeAsString();
  if (data.size() > config_.max_request_bytes) {
    return done(Failed(EtcdErr(api::kErrRequestTooLarge)));
  }
  auto deadline = Clock::now() + RequestTimeout();
  {
    std::lock_guard lock(wait_mu_);
    waiters_.emplace(id, Waiter(std::move(done), deadline));
  }
  node_->ProposeAsync(std::move(data), deadline, [this, id](Status st) {
    if (st.ok()) return;  // Apply completes the waiter
    std::unique_lock lock(wait_mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    Waiter w = std::move(it->second);
    waiters_.erase(it);
    lock.unlock();
    // Held until the deadline without a leader: etcd's request timeout,
    // as the blocking path answers.
    w.set_value(Failed(st.IsProposalDropped() ? EtcdErr(api::kErrTimeout)
                                              : std::move(st)));
  });
}

template <typename Resp>
void Server::ProposeWriteAsync(internal::Request req, Resp ApplyResult::*field,
                               Resp* out, DoneCallback done) {
  ProposeAsync(std::move(req), [this, field, out, done = std::move(done)](
                                   std::shared_ptr<ApplyResult> r) {
    if (!r->status.ok()) return done(r->status);
    *out = std::move((*r).*field);
    FillHeader(out->mutable_header(), out->header().revision());
    done(Status::OK());
  });
}

void Server::ReadIndexAsync(Clock::time_point deadline, DoneCallback done) {
  // Test only (the jepsen runner's unsafe mode), as in WaitReadIndex.
  if (config_.unsafe_skip_read_index) return done(Status::OK());
  node_->ReadIndexAsync(
      [this, deadline, done = std::move(done)](Status st) mutable {
        if (st.ok()) return done(Status::OK());
        ServerMetrics::Get().read_indexes_failed.Inc();
        if (st.message() != api::kErrNoLeader.message) {
          return done(EtcdErr(api::kErrStopped));
        }
        // No leader: like the blocking path, wait out the election (up to the
        // request timeout) rather than fail; ReapLoop asks again.
        std::lock_guard lock(wait_mu_);
        held_reads_.push_back({deadline, std::move(done)});
      });
}

void Server::ReapLoop() {
  // Held reads are retried every 50 ms (a new leader serves them soon), but
  // the waiters are scanned for expired deadlines only every 500 ms: the
  // scan walks every write in flight under wait_mu_ (a thousand of them
  // under load was ~2% of a loaded leader's CPU), and a request timeout of
  // seconds does not need a finer grain.
  constexpr int kScanEvery = 10;
  int round = 0;
  while (true) {
    {
      std::unique_lock lock(publish_mu_);
      if (publish_cv_.wait_for(lock, 50ms, [this] { return stopping_; })) {
        return;
      }
    }
    const auto now = Clock::now();
    std::vector<Waiter> expired;
    std::vector<HeldRead> reads;
    {
      std::lock_guard lock(wait_mu_);
      const bool scan = ++round % kScanEvery == 0;
      for (auto it = waiters_.begin(); scan && it != waiters_.end();) {
        if (it->second.is_async() && it->second.deadline() <= now) {
          expired.push_back(std::move(it->second));
          it = waiters_.erase(it);
        } else {
          ++it;
        }
      }
      reads.swap(held_reads_);
    }
    for (Waiter& w : expired) w.set_value(Failed(EtcdErr(api::kErrTimeout)));
    const bool has_leader = HasLeader();
    for (HeldRead& h : reads) {
      if (h.deadline <= now) {
        h.done(EtcdErr(api::kErrTimeout));
      } else if (has_leader) {
        ReadIndexAsync(h.deadline, std::move(h.done));
      } else {
        std::lock_guard lock(wait_mu_);
        held_reads_.push_back(std::move(h));
      }
    }
  }
}

void Server::RangeAsync(const etcdserverpb::RangeRequest& r,
                        etcdserverpb::RangeResponse* out, DoneCallback done) {
  Status st = CheckRangeKey(r.key());
  if (!st.ok() || r.serializable()) {
    return done(st.ok() ? RangeLocal(r, out) : st);
  }
  ReadIndexAsync(Clock::now() + RequestTimeout(),
                 [this, &r, out, done = std::move(done)](Status st) {
                   if (!st.ok()) return done(st);
                   // Past the barrier: the rest is the serializable read
                   // (no copy of the request to mark it so).
                   done(RangeLocal(r, out));
                 });
}

void Server::PutAsync(const etcdserverpb::PutRequest& r,
                      etcdserverpb::PutResponse* out, DoneCallback done) {
  Status st = CheckRangeKey(r.key());
  if (st.ok()) st = mvcc::ValidatePut(FromPb(r));
  if (st.ok()) st = CheckSpace();
  if (!st.ok()) return done(st);
  internal::Request req;
  *req.mutable_put() = r;
  ProposeWriteAsync(std::move(req), &ApplyResult::put, out, std::move(done));
}

void Server::DeleteRangeAsync(const etcdserverpb::DeleteRangeRequest& r,
                              etcdserverpb::DeleteRangeResponse* out,
                              DoneCallback done) {
  Status st = CheckRangeKey(r.key());
  if (!st.ok()) return done(st);
  internal::Request req;
  *req.mutable_delete_range() = r;
  ProposeWriteAsync(std::move(req), &ApplyResult::delete_range, out,
                    std::move(done));
}

void Server::TxnAsync(const etcdserverpb::TxnRequest& r,
                      etcdserverpb::TxnResponse* out, DoneCallback done) {
  Status st = CheckTxn(r, config_.max_txn_ops);
  mvcc::TxnRequest m;
  if (st.ok()) {
    m = FromPb(r);
    st = mvcc::ValidateTxn(m);
  }
  if (!st.ok()) return done(st);
  if (IsReadOnly(r)) {
    ReadIndexAsync(
        Clock::now() + RequestTimeout(),
        [this, m = std::move(m), out, done = std::move(done)](Status st) {
          if (!st.ok()) return done(st);
          auto res = store_->ReadTxn(m);
          if (!res.ok()) return done(res.status());
          ToPb(*res, out);
          FillHeader(out->mutable_header(), res->header.revision);
          done(Status::OK());
        });
    return;
  }
  st = CheckSpace();
  if (!st.ok()) return done(st);
  internal::Request req;
  *req.mutable_txn() = r;
  ProposeWriteAsync(std::move(req), &ApplyResult::txn, out, std::move(done));
}

void Server::CompactAsync(const etcdserverpb::CompactionRequest& r,
                          etcdserverpb::CompactionResponse* out,
                          DoneCallback done) {
  internal::Request req;
  *req.mutable_compaction() = r;
  ProposeAsync(std::move(req), [this, out, done = std::move(done)](
                                   std::shared_ptr<ApplyResult> res) {
    if (!res->status.ok()) return done(res->status);
    FillHeader(out->mutable_header(), res->revision);
    done(Status::OK());
  });
}

}  // namespace keel::server
