// Server: the Lease API (etcd's lessor glue in etcdserver/v3_server.go).
//
// Grant and Revoke go through Raft; so does expiry: the leader's LeaseLoop
// promotes the lessor when this member becomes leader, and proposes a
// revoke for each lease that expired on its clock. KeepAlive and
// TimeToLive are answered by the leader: a follower forwards them over
// the leader's client URL (etcd forwards over its peer URL), KeepAlives
// batched by one forwarding thread, so that no thread waits per stream.
// The forwarded calls carry no token: etcd checks no permission on a
// keepalive. With TLS they use MemberChannel's credentials (the member's
// own certificate, as etcd's internal clients).
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <deque>

#include "api/errors.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "server/server.h"

namespace keel::server {

using namespace std::chrono_literals;

namespace {

Status EtcdErr(const api::EtcdError& e) {
  return Status::FailedPrecondition(e.message);
}

// The Status a forwarded call's gRPC error stands for: etcd's error if
// the leader answered one, else a failure worth retrying (nullopt).
std::optional<Status> FromForwarded(const grpc::Status& g) {
  for (const api::EtcdError& e : api::kAllEtcdErrors) {
    if (g.error_message() == e.message) {
      if (e.message == api::kErrNoLeader.message ||
          e.message == api::kErrStopped.message ||
          e.message == api::kErrNotLeader.message ||
          e.message == api::kErrLeaderChanged.message) {
        return std::nullopt;
      }
      return EtcdErr(e);
    }
  }
  return std::nullopt;
}

// gRPC deadlines are on the system clock.
std::chrono::system_clock::time_point SystemDeadline(
    std::chrono::steady_clock::time_point deadline) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             deadline - std::chrono::steady_clock::now());
}

}  // namespace

struct Server::LeaseWork {
  struct Renewal {
    int64_t id = 0;
    std::chrono::steady_clock::time_point deadline;
    std::function<void(Status, int64_t)> done;
  };

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;         // guarded by mu
  std::deque<Renewal> renewals;  // guarded by mu: to forward to the leader
  std::thread loop;
  std::thread forwarder;
  // Lease ids this member chooses: its id's low 16 bits, then a counter
  // started from the clock (etcd's idutil.Generator), so members and
  // restarts do not collide.
  std::atomic<uint64_t> next_id_suffix{0};
};

Status Server::LoadLeases() {
  if (!lease_work_) {
    lease_work_ = std::make_shared<LeaseWork>();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    lease_work_->next_id_suffix = (static_cast<uint64_t>(ms) << 8);
  }
  auto leases = store_->Leases();
  if (!leases.ok()) return leases.status();
  lessor_->Reset(*leases, Lessor::Clock::now());
  return Status::OK();
}

void Server::StartLeases() {
  lease_work_->loop = std::thread([this] { LeaseLoop(); });
  lease_work_->forwarder = std::thread([this] { LeaseForwardLoop(); });
}

void Server::StopLeases() {
  if (!lease_work_) return;
  {
    std::lock_guard l(lease_work_->mu);
    lease_work_->stopping = true;
  }
  lease_work_->cv.notify_all();
  if (lease_work_->loop.joinable()) lease_work_->loop.join();
  if (lease_work_->forwarder.joinable()) lease_work_->forwarder.join();
  std::deque<LeaseWork::Renewal> left;
  {
    std::lock_guard l(lease_work_->mu);
    left.swap(lease_work_->renewals);
  }
  for (auto& r : left) r.done(EtcdErr(api::kErrStopped), 0);
}

std::shared_ptr<grpc::Channel> Server::LeaderChannel(uint64_t leader) {
  std::string url;
  {
    std::lock_guard lock(state_mu_);
    auto it = cluster_.members.find(leader);
    if (it == cluster_.members.end() || it->second.client_urls.empty()) {
      return nullptr;
    }
    url = it->second.client_urls.front();
  }
  return MemberChannel(url);
}

// ---------------- client requests ----------------

Status Server::LeaseGrant(const etcdserverpb::LeaseGrantRequest& r,
                          etcdserverpb::LeaseGrantResponse* out) {
  // The apply checks again; refusing here saves a Raft round.
  if (r.ttl() > Lessor::kMaxTTL) return EtcdErr(api::kErrLeaseTTLTooLarge);
  KEEL_RETURN_IF_ERROR(CheckSpace());
  internal::Request req;
  auto* g = req.mutable_lease_grant();
  *g = r;
  while (g->id() == 0) {
    const uint64_t id = ((member_id_ & 0xffff) << 48) |
                        (lease_work_->next_id_suffix++ & 0xffffffffffff);
    g->set_id(static_cast<int64_t>(id & 0x7fffffffffffffff));
  }
  return ProposeWrite(std::move(req), &ApplyResult::lease_grant, out);
}

Status Server::LeaseRevoke(const etcdserverpb::LeaseRevokeRequest& r,
                           etcdserverpb::LeaseRevokeResponse* out) {
  internal::Request req;
  *req.mutable_lease_revoke() = r;
  return ProposeWrite(std::move(req), &ApplyResult::lease_revoke, out);
}

Status Server::LeaseLeases(etcdserverpb::LeaseLeasesResponse* out) {
  for (int64_t id : lessor_->Ids()) out->add_leases()->set_id(id);
  FillHeader(out->mutable_header(), store_->CurrentRevision());
  return Status::OK();
}

Status Server::LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& r,
                               etcdserverpb::LeaseTimeToLiveResponse* out) {
  const auto deadline = std::chrono::steady_clock::now() + RequestTimeout();
  while (std::chrono::steady_clock::now() < deadline) {
    const RaftNodeStatus st = node_->GetStatus();
    if (st.leader == 0) {
      node_->WaitForLeader(
          std::chrono::duration_cast<std::chrono::milliseconds>(
              deadline - std::chrono::steady_clock::now()));
      continue;
    }
    if (st.leader == member_id_) {
      if (!lessor_->primary()) {
        // Elected a moment ago; the lease loop promotes the lessor soon.
        std::this_thread::sleep_for(10ms);  // poll within the deadline
        continue;
      }
      out->Clear();
      out->set_id(r.id());
      auto info = lessor_->Lookup(r.id(), Lessor::Clock::now());
      if (!info) {
        out->set_ttl(-1);  // etcd answers an unknown lease so, not an error
      } else {
        out->set_ttl(info->remaining_s);
        out->set_grantedttl(info->granted_ttl);
        if (r.keys()) {
          for (auto& k : store_->LeaseKeys(r.id())) out->add_keys(k);
        }
      }
      FillHeader(out->mutable_header(), store_->CurrentRevision());
      return Status::OK();
    }
    if (auto channel = LeaderChannel(st.leader)) {
      auto stub = etcdserverpb::Lease::NewStub(channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(SystemDeadline(deadline));
      // The attached keys come from this member's store, not the leader's
      // API: with auth on, the leader would check a caller this forwarded
      // call cannot name (the client's permission to read them is checked
      // here, src/api/lease_service.cc).
      etcdserverpb::LeaseTimeToLiveRequest fwd = r;
      fwd.set_keys(false);
      grpc::Status g = stub->LeaseTimeToLive(&ctx, fwd, out);
      if (g.ok()) {
        if (r.keys() && out->ttl() != -1) {
          for (auto& k : store_->LeaseKeys(r.id())) out->add_keys(k);
        }
        FillHeader(out->mutable_header(), store_->CurrentRevision());
        return Status::OK();
      }
      if (auto err = FromForwarded(g)) return *err;
    }
    std::this_thread::sleep_for(50ms);  // throttle retries, as etcd does
  }
  return EtcdErr(api::kErrTimeout);
}

void Server::LeaseRenew(int64_t id, std::function<void(Status, int64_t)> done) {
  if (auto ttl = lessor_->Renew(id, Lessor::Clock::now())) {
    done(Status::OK(), *ttl);
    return;
  }
  {
    std::lock_guard l(lease_work_->mu);
    if (!lease_work_->stopping) {
      lease_work_->renewals.push_back(
          {id, std::chrono::steady_clock::now() + RequestTimeout(),
           std::move(done)});
      lease_work_->cv.notify_all();
      return;
    }
  }
  done(EtcdErr(api::kErrStopped), 0);
}

// Forwards queued renewals to the leader: per batch, one KeepAlive stream
// that carries every renewal queued meanwhile.
void Server::LeaseForwardLoop() {
  LeaseWork& w = *lease_work_;
  while (true) {
    std::deque<LeaseWork::Renewal> batch;
    {
      std::unique_lock l(w.mu);
      w.cv.wait(l, [&] { return w.stopping || !w.renewals.empty(); });
      if (w.stopping) return;
      batch.swap(w.renewals);
    }
    const auto now = std::chrono::steady_clock::now();
    std::deque<LeaseWork::Renewal> retry;
    auto deadline = now + RequestTimeout();
    for (auto& r : batch) {
      if (r.deadline <= now) {
        r.done(EtcdErr(api::kErrTimeout), 0);
      } else {
        deadline = std::min(deadline, r.deadline);
        retry.push_back(std::move(r));
      }
    }
    batch.clear();
    const RaftNodeStatus st = node_->GetStatus();
    const std::shared_ptr<grpc::Channel> channel =
        st.leader == 0 || st.leader == member_id_ ? nullptr
                                                  : LeaderChannel(st.leader);
    if (st.leader == member_id_) {
      // Leader now: renew here once the lessor is promoted.
      for (auto& r : retry) {
        if (auto ttl = lessor_->Renew(r.id, Lessor::Clock::now())) {
          r.done(Status::OK(), *ttl);
        } else {
          batch.push_back(std::move(r));
        }
      }
      retry.swap(batch);
    } else if (channel && !retry.empty()) {
      auto stub = etcdserverpb::Lease::NewStub(channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(SystemDeadline(deadline));
      auto stream = stub->LeaseKeepAlive(&ctx);
      size_t written = 0;
      for (auto& r : retry) {
        etcdserverpb::LeaseKeepAliveRequest req;
        req.set_id(r.id);
        if (!stream->Write(req)) break;
        written++;
      }
      stream->WritesDone();
      size_t answered = 0;
      etcdserverpb::LeaseKeepAliveResponse resp;
      while (answered < written && stream->Read(&resp)) {
        retry[answered].done(Status::OK(), resp.ttl());
        answered++;
      }
      grpc::Status g = stream->Finish();
      if (answered < retry.size()) {
        std::optional<Status> err;
        if (!g.ok()) err = FromForwarded(g);
        if (err) {
          for (size_t i = answered; i < retry.size(); i++) {
            retry[i].done(*err, 0);
          }
          retry.clear();
        } else {
          retry.erase(retry.begin(),
                      retry.begin() + static_cast<ptrdiff_t>(answered));
        }
      } else {
        retry.clear();
      }
    }
    if (retry.empty()) continue;
    // No leader, or it did not answer: try again shortly.
    std::unique_lock l(w.mu);
    for (auto it = retry.rbegin(); it != retry.rend(); ++it) {
      w.renewals.push_front(std::move(*it));
    }
    if (w.cv.wait_for(l, 50ms, [&] { return w.stopping; })) return;
  }
}

// ---------------- expiry (leader) ----------------

void Server::LeaseLoop() {
  LeaseWork& w = *lease_work_;
  const auto period =
      std::chrono::milliseconds(std::clamp(config_.heartbeat_ms, 10, 100));
  uint64_t promoted_term = 0;
  while (true) {
    {
      std::unique_lock l(w.mu);
      if (w.cv.wait_for(l, period, [&] { return w.stopping; })) return;
    }
    const RaftNodeStatus st = node_->GetStatus();
    const auto now = Lessor::Clock::now();
    const bool lead = st.role == raft::StateRole::kLeader;
    if (lead && (!lessor_->primary() || st.term != promoted_term)) {
      // etcd extends by the election timeout: the old leader may have
      // renewed a lease just before it lost its leadership.
      lessor_->Promote(now, std::chrono::milliseconds(config_.election_ms));
      promoted_term = st.term;
      spdlog::info("lessor: leader at term {}, {} leases now expire from now",
                   st.term, lessor_->Ids().size());
    } else if (!lead && lessor_->primary()) {
      lessor_->Demote();
    }
    if (!lead) continue;
    // etcd revokes at most leaseRevokeRate (1000) leases a second.
    const size_t max = std::max<size_t>(1, 1000 * period.count() / 1000);
    for (int64_t id : lessor_->Expired(now, max, RequestTimeout())) {
      internal::Request req;
      req.mutable_lease_revoke()->set_id(id);
      req.set_member_id(member_id_);
      req.set_id(next_request_id_++);
      // Not waited for: the apply removes the lease; a lost proposal is
      // retried by Expired() after the request timeout.
      (void)node_->Propose(req.SerializeAsString());
    }
  }
}

// ---------------- applying ----------------

void Server::ApplyLease(const internal::Request& req, mvcc::ConsistentIndex ci,
                        ApplyResult* result) {
  auto record_index = [&] {
    Status st = store_->SetConsistentIndex(ci);
    KEEL_CHECK(st.ok()) << "recording applied index: " << st.ToString();
  };
  if (req.has_lease_grant()) {
    const auto& g = req.lease_grant();
    bool nospace;
    {
      std::lock_guard lock(state_mu_);
      nospace = cluster_.HasAlarm(AlarmType::kNoSpace);
    }
    auto ttl = nospace ? Result<int64_t>(EtcdErr(api::kErrNoSpace))
                       : lessor_->CheckGrant(g.id(), g.ttl());
    if (!ttl.ok()) {
      result->status = ttl.status();
      record_index();
      return;
    }
    const mvcc::LeaseRecord rec{g.id(), *ttl, 0};
    Status st = store_->PutLeases({rec}, ci);
    if (!st.ok()) {
      result->status = st;
      return;
    }
    lessor_->Add(rec, Lessor::Clock::now());
    result->lease_grant.set_id(g.id());
    result->lease_grant.set_ttl(*ttl);
    result->lease_grant.mutable_header()->set_revision(
        store_->CurrentRevision());
    return;
  }
  const int64_t id = req.lease_revoke().id();
  if (!lessor_->Exists(id)) {
    result->status = EtcdErr(api::kErrLeaseNotFound);
    record_index();
    return;
  }
  auto r = store_->RevokeLease(id, ci);
  if (!r.ok()) {
    result->status = r.status();
    return;
  }
  lessor_->Remove(id);
  result->lease_revoke.mutable_header()->set_revision(
      store_->CurrentRevision());
}

}  // namespace keel::server
