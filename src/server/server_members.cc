// Server: membership changes (etcd's Cluster service and keel's joint
// replacement), joining an existing cluster, --force-new-cluster, leader
// transfer, and the maintenance calls that read the whole store (Hash,
// Snapshot) or compare members (the corruption check).
//
// A membership change travels as a raft ConfChange whose context (an
// internal::MemberContext) names the members and the proposer's request.
// Every member validates it against the replicated membership when it
// applies it (AcceptConfChange, as etcd's ValidateConfigurationChange):
// all come to the same verdict, a refused change leaves the core's
// configuration alone, and the proposer's waiter gets etcd's error.
// The strict reconfiguration checks (quorum of started and connected
// members) run before proposing, on the member that got the request, as
// etcd does.
#include <grpcpp/grpcpp.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "api/errors.h"
#include "common/coding.h"
#include "common/log.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "raft/codec.h"
#include "server/server.h"
#include "server/tls_setup.h"
#include "transport/membership_query.h"
#include "transport/tls.h"

namespace keel::server {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Snapshot files are padded to a multiple of this before the SHA-256.
constexpr uint64_t kSnapshotAlign = 512;

Status EtcdErr(const api::EtcdError& e) {
  return Status::FailedPrecondition(e.message);
}

// The context entry describing node `id`, if any.
const internal::MemberContext* FindCtx(const internal::MemberContext& ctx,
                                       uint64_t id) {
  if (ctx.id() == id) return &ctx;
  for (const auto& m : ctx.members()) {
    if (m.id() == id) return &m;
  }
  return nullptr;
}

// URLs compared after normalisation ("http://h:1/" == "http://h:1").
std::string NormUrl(const std::string& u) {
  auto p = ParseUrl(u);
  return p.ok() ? p->String() : u;
}

std::set<std::string> NormUrls(const std::vector<std::string>& urls) {
  std::set<std::string> out;
  for (const auto& u : urls) out.insert(NormUrl(u));
  return out;
}

// etcd derives a new member's id from its URLs and the time, so that a
// member re-added with the same URLs gets a fresh id.
uint64_t NewMemberId(const std::vector<Url>& urls, const std::string& token) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  uint64_t id = ComputeMemberId(
      urls,
      token + std::to_string(
                  std::chrono::duration_cast<std::chrono::nanoseconds>(now)
                      .count()));
  return id == 0 ? 1 : id;
}

Result<std::vector<Url>> ParseMemberUrls(
    const google::protobuf::RepeatedPtrField<std::string>& in) {
  std::vector<Url> out;
  for (const auto& u : in) {
    auto p = ParseUrl(u);
    if (!p.ok() || (p->scheme != "http" && p->scheme != "https")) {
      return EtcdErr(api::kErrMemberBadURLs);
    }
    out.push_back(*p);
  }
  if (out.empty()) return EtcdErr(api::kErrMemberBadURLs);
  return out;
}

// "5s", "1m", "500ms", "1h"; 0 or empty: off.
std::chrono::milliseconds ParseDuration(const std::string& s) {
  if (s.empty()) return 0ms;
  size_t i = 0;
  while (i < s.size() && (std::isdigit(s[i]) || s[i] == '.')) i++;
  double v = 0;
  try {
    v = std::stod(s.substr(0, i));
  } catch (...) {
    return 0ms;
  }
  std::string unit = s.substr(i);
  double ms = unit == "ms"  ? v
              : unit == "m" ? v * 60000
              : unit == "h" ? v * 3600000
                            : v * 1000;  // "s" or none
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

}  // namespace

// ---------------- joining, forced new cluster ----------------

Status Server::DiscoverCluster(ClusterState* out, uint64_t* cluster_id,
                               uint64_t* member_id) {
  std::vector<std::string> mine_v;
  for (const Url& u : config_.initial_advertise_peer_urls) {
    mine_v.push_back(u.String());
  }
  const std::set<std::string> mine = NormUrls(mine_v);
  std::string errors;
  // https peer URLs: the same TLS settings as the peer transport's dialer.
  std::shared_ptr<transport::TlsContext> tls;
  {
    auto opts = MakeTlsOptions(config_, config_.security.peer, "peer",
                               config_.listen_peer_urls);
    if (!opts.ok()) return opts.status();
    if (opts->enabled()) {
      auto ctx = transport::TlsContext::Create(*opts);
      if (!ctx.ok()) return ctx.status();
      tls = std::move(ctx).value();
    }
  }
  // The peers may be starting too: a few rounds before giving up.
  for (int round = 0; round < 5; round++) {
    for (const auto& [name, urls] : config_.initial_cluster) {
      for (const Url& u : urls) {
        if (mine.count(u.String())) continue;
        auto a = transport::QueryMembership(u.String(), 2000ms, tls.get());
        if (!a.ok()) {
          if (round == 0)
            errors += "; " + u.String() + ": " + a.status().message();
          continue;
        }
        ClusterState cs;
        if (!cs.Decode(a->membership)) {
          errors += "; " + u.String() + ": undecodable membership";
          continue;
        }
        for (const auto& [id, m] : cs.members) {
          if (NormUrls(m.peer_urls) == mine) {
            *cluster_id = a->cluster_id;
            *member_id = id;
            cs.cluster_id = a->cluster_id;
            *out = std::move(cs);
            spdlog::info(
                "joining cluster {:x} as member {:x} (membership from {})",
                *cluster_id, *member_id, u.String());
            return Status::OK();
          }
        }
        std::string list;
        for (const auto& p : mine_v) list += (list.empty() ? "" : ",") + p;
        return Status::FailedPrecondition(
            "cannot join cluster " + HexId(a->cluster_id) +
            ": no member has the peer URLs " + list +
            " (add it first with `etcdctl member add`)");
      }
    }
    std::this_thread::sleep_for(500ms);  // peers starting: retry
  }
  return Status::Unavailable(
      "cannot fetch the cluster's membership from the peers in "
      "--initial-cluster" +
      errors);
}

Status Server::ForceNewCluster() {
  raft::HardState hs = storage_->GetHardState();
  const uint64_t first = storage_->FirstIndex();
  const uint64_t commit = std::max<uint64_t>(hs.commit, first - 1);
  // Apply everything committed, as a restart would; what is not committed
  // is dropped (etcd does the same).
  for (uint64_t i = first; i <= commit;) {
    auto ents = storage_->Entries(i, commit + 1, 16 << 20);
    if (!ents.ok()) return ents.status();
    if (ents->empty()) break;
    for (const raft::Entry& e : *ents) {
      if (e.type == raft::EntryType::kConfChange) {
        raft::ConfChange cc;
        if (raft::DecodeConfChange(e.data, &cc) && AcceptConfChange(e, cc)) {
          ApplyConfChange(e, cc, raft::ConfState{});
        }
      } else {
        Apply(e);
      }
      i = e.index + 1;
    }
  }
  ClusterState cs;
  {
    std::lock_guard lock(state_mu_);
    for (auto it = cluster_.members.begin(); it != cluster_.members.end();) {
      it = it->first == member_id_ ? std::next(it) : cluster_.members.erase(it);
    }
    MemberInfo& self = cluster_.members[member_id_];
    self.id = member_id_;
    self.is_learner = false;
    if (self.name.empty()) self.name = config_.name;
    if (self.peer_urls.empty()) {
      for (const Url& u : config_.initial_advertise_peer_urls) {
        self.peer_urls.push_back(u.String());
      }
    }
    cs = cluster_;
  }
  // A snapshot one past the commit index stands for the change to a
  // one-member configuration; the store is marked as having applied it.
  const uint64_t index = commit + 1;
  const uint64_t term = std::max<uint64_t>(hs.term, 1);
  KEEL_RETURN_IF_ERROR(store_->SetConsistentIndex({index, term}));
  KEEL_RETURN_IF_ERROR(store_->ForceCommit());
  raft::Snapshot snap;
  snap.data = cs.Encode();
  snap.metadata.index = index;
  snap.metadata.term = term;
  snap.metadata.conf_state.voters = {member_id_};
  KEEL_RETURN_IF_ERROR(storage_->ApplySnapshot(snap));
  KEEL_RETURN_IF_ERROR(storage_->SetHardState({term, raft::kNone, index}));
  spdlog::warn(
      "--force-new-cluster: member {:x} is now the only member of cluster "
      "{:x} (applied index {}, revision {}); add members back with `etcdctl "
      "member add`",
      member_id_, cluster_id_, index, store_->CurrentRevision());
  return Status::OK();
}

// ---------------- applying membership changes ----------------

bool Server::AcceptConfChange(const raft::Entry& entry,
                              const raft::ConfChange& cc) {
  if (cc.changes.empty()) return true;  // leaves a joint configuration
  internal::MemberContext ctx;
  const bool has_ctx = !cc.context.empty() && ctx.ParseFromString(cc.context);
  ClusterState cs;
  {
    std::lock_guard lock(state_mu_);
    cs = cluster_;
  }
  Status st;
  for (const auto& ch : cc.changes) {
    const internal::MemberContext* m =
        has_ctx ? FindCtx(ctx, ch.node_id) : nullptr;
    auto it = cs.members.find(ch.node_id);
    auto urls_taken = [&](const internal::MemberContext* m) {
      if (m == nullptr) return false;
      for (const auto& [id, other] : cs.members) {
        if (id == ch.node_id) continue;
        auto theirs = NormUrls(other.peer_urls);
        for (const auto& u : m->peer_urls()) {
          if (theirs.count(NormUrl(u))) return true;
        }
      }
      return false;
    };
    switch (ch.type) {
      case raft::ConfChangeType::kAddNode:
      case raft::ConfChangeType::kAddLearnerNode: {
        if (m != nullptr && m->promote()) {
          if (it == cs.members.end()) {
            st = EtcdErr(api::kErrMemberNotFound);
          } else if (!it->second.is_learner) {
            st = EtcdErr(api::kErrMemberNotLearner);
          } else {
            it->second.is_learner = false;
          }
          break;
        }
        if (it != cs.members.end()) {
          st = EtcdErr(api::kErrMemberExist);
        } else if (urls_taken(m)) {
          st = EtcdErr(api::kErrPeerURLExist);
        } else {
          bool learner = ch.type == raft::ConfChangeType::kAddLearnerNode;
          if (learner && !(m != nullptr && m->replace())) {
            int n = 0;
            for (const auto& [id, o] : cs.members) n += o.is_learner;
            if (n + 1 > 1) st = EtcdErr(api::kErrTooManyLearners);
          }
          MemberInfo& mi = cs.members[ch.node_id];
          mi.id = ch.node_id;
          mi.is_learner = learner;
          if (m)
            mi.peer_urls.assign(m->peer_urls().begin(), m->peer_urls().end());
        }
        break;
      }
      case raft::ConfChangeType::kRemoveNode:
        if (it == cs.members.end()) {
          st = EtcdErr(api::kErrMemberNotFound);
        } else {
          cs.members.erase(it);
        }
        break;
      case raft::ConfChangeType::kUpdateNode:
        if (it == cs.members.end()) {
          st = EtcdErr(api::kErrMemberNotFound);
        } else if (urls_taken(m)) {
          st = EtcdErr(api::kErrPeerURLExist);
        } else if (m) {
          it->second.peer_urls.assign(m->peer_urls().begin(),
                                      m->peer_urls().end());
        }
        break;
    }
    if (!st.ok()) break;
  }
  if (st.ok()) return true;
  spdlog::warn("refused the membership change at index {}: {}", entry.index,
               st.message());
  if (entry.index > AppliedIndex()) {
    Status s = store_->SetConsistentIndex({entry.index, entry.term});
    KEEL_CHECK(s.ok()) << s.ToString();
  }
  if (has_ctx) AnswerConfChange(ctx, st);
  return false;
}

void Server::ApplyConfChange(const raft::Entry& entry,
                             const raft::ConfChange& cc,
                             const raft::ConfState& conf) {
  internal::MemberContext ctx;
  const bool has_ctx = !cc.context.empty() && ctx.ParseFromString(cc.context);
  bool removed_self = false;
  {
    std::lock_guard lock(state_mu_);
    for (const auto& ch : cc.changes) {
      const internal::MemberContext* m =
          has_ctx ? FindCtx(ctx, ch.node_id) : nullptr;
      switch (ch.type) {
        case raft::ConfChangeType::kAddNode:
        case raft::ConfChangeType::kAddLearnerNode: {
          MemberInfo& mi = cluster_.members[ch.node_id];
          mi.id = ch.node_id;
          mi.is_learner = ch.type == raft::ConfChangeType::kAddLearnerNode;
          if (m != nullptr) {
            if (mi.name.empty()) mi.name = m->name();
            if (m->peer_urls_size() > 0) {
              mi.peer_urls.assign(m->peer_urls().begin(), m->peer_urls().end());
            }
          }
          if (transport_ && ch.node_id != member_id_) {
            transport_->AddPeer(ch.node_id, mi.peer_urls);
          }
          KEEL_LOG_INFO("added member", log::Id("cluster-id", cluster_id_),
                        log::Id("local-member-id", member_id_),
                        log::Id("added-peer-id", ch.node_id),
                        log::F("added-peer-peer-urls", mi.peer_urls),
                        log::F("added-peer-is-learner", mi.is_learner));
          break;
        }
        case raft::ConfChangeType::kRemoveNode: {
          auto gone = cluster_.members.find(ch.node_id);
          std::vector<std::string> urls;
          if (gone != cluster_.members.end()) urls = gone->second.peer_urls;
          KEEL_LOG_INFO("removed member", log::Id("cluster-id", cluster_id_),
                        log::Id("local-member-id", member_id_),
                        log::Id("removed-remote-peer-id", ch.node_id),
                        log::F("removed-remote-peer-urls", urls));
          cluster_.members.erase(ch.node_id);
          // A removed member's alarms go with it (etcd's do).
          std::erase_if(cluster_.alarms,
                        [&](const auto& a) { return a.first == ch.node_id; });
          // Still reachable until out of every configuration: in a joint
          // change it votes in the outgoing half until that is left.
          if (ch.node_id != member_id_) leaving_.insert(ch.node_id);
          break;
        }
        case raft::ConfChangeType::kUpdateNode: {
          auto it = cluster_.members.find(ch.node_id);
          if (m != nullptr && it != cluster_.members.end()) {
            it->second.peer_urls.assign(m->peer_urls().begin(),
                                        m->peer_urls().end());
            if (transport_ && ch.node_id != member_id_) {
              transport_->UpdatePeer(ch.node_id, it->second.peer_urls);
            }
          }
          break;
        }
      }
    }
  }
  if (entry.index > AppliedIndex() && store_) {
    Status st = store_->SetConsistentIndex({entry.index, entry.term});
    KEEL_CHECK(st.ok()) << st.ToString();
  }
  if (has_ctx) AnswerConfChange(ctx, Status::OK());
  // A removed member stops once it is out of every configuration: in a
  // joint change it still votes in the outgoing half until that is left.
  auto in = [this](const std::vector<raft::NodeId>& v) {
    return std::find(v.begin(), v.end(), member_id_) != v.end();
  };
  auto in_conf = [&](uint64_t id) {
    for (const auto* v : {&conf.voters, &conf.voters_outgoing, &conf.learners,
                          &conf.learners_next}) {
      if (std::find(v->begin(), v->end(), id) != v->end()) return true;
    }
    return false;
  };
  for (auto it = leaving_.begin(); it != leaving_.end();) {
    if (in_conf(*it) || conf.voters.empty()) {
      ++it;
      continue;
    }
    if (transport_) transport_->RemovePeer(*it);
    it = leaving_.erase(it);
  }
  removed_self = !in(conf.voters) && !in(conf.voters_outgoing) &&
                 !in(conf.learners) && !in(conf.learners_next);
  if (removed_self && node_ && !conf.voters.empty()) {
    spdlog::warn(
        "member {:x}: the member has been permanently removed from the "
        "cluster",
        member_id_);
    if (on_removed_) on_removed_();
  }
}

void Server::AnswerConfChange(const internal::MemberContext& ctx, Status st) {
  if (ctx.proposer() != member_id_ || ctx.request_id() == 0) return;
  std::lock_guard lock(wait_mu_);
  auto it = waiters_.find(ctx.request_id());
  if (it == waiters_.end()) return;
  auto r = std::make_shared<ApplyResult>();
  r->status = std::move(st);
  it->second.set_value(std::move(r));
  waiters_.erase(it);
}

// ---------------- proposing membership changes ----------------

bool Server::PeerConnected(uint64_t id) const {
  return id == member_id_ || (transport_ && transport_->Stats(id).connected);
}

Status Server::MayAddMember(bool is_learner) {
  if (!config_.strict_reconfig_check) return Status::OK();
  ClusterState cs;
  {
    std::lock_guard lock(state_mu_);
    cs = cluster_;
  }
  if (!is_learner) {
    // etcd's IsReadyToAddVotingMember.
    int nmembers = 1, nstarted = 0;
    for (const auto& [id, m] : cs.members) {
      if (m.is_learner) continue;
      nmembers++;
      if (!m.name.empty()) nstarted++;
    }
    if (!(nstarted == 1 && nmembers == 2) && nstarted < nmembers / 2 + 1) {
      return EtcdErr(api::kErrMemberNotEnoughStarted);
    }
  }
  for (const auto& [id, m] : cs.members) {
    if (!m.is_learner && !PeerConnected(id)) {
      return EtcdErr(api::kErrUnhealthy);
    }
  }
  return Status::OK();
}

Status Server::MayRemoveMember(uint64_t id) {
  if (!config_.strict_reconfig_check) return Status::OK();
  ClusterState cs;
  {
    std::lock_guard lock(state_mu_);
    cs = cluster_;
  }
  auto it = cs.members.find(id);
  if (it != cs.members.end() && it->second.is_learner) return Status::OK();
  int nmembers = 0, nstarted = 0, voters = 0, active = 0;
  for (const auto& [mid, m] : cs.members) {
    if (m.is_learner) continue;
    voters++;
    if (PeerConnected(mid)) active++;
    if (mid == id) continue;
    nmembers++;
    if (!m.name.empty()) nstarted++;
  }
  if (nstarted < nmembers / 2 + 1) {
    return EtcdErr(api::kErrMemberNotEnoughStarted);
  }
  // A member that is down is not part of the active quorum: safe.
  if (id != member_id_ && !PeerConnected(id)) return Status::OK();
  if (active - 1 < 1 + (voters - 1) / 2) return EtcdErr(api::kErrUnhealthy);
  return Status::OK();
}

Status Server::MayPromoteMember(uint64_t id) {
  RaftNodeStatus s = node_->GetStatus();
  if (s.leader != member_id_ || s.progress.empty()) {
    return EtcdErr(api::kErrNotLeader);
  }
  bool learner;
  {
    std::lock_guard lock(state_mu_);
    auto m = cluster_.members.find(id);
    learner = m != cluster_.members.end() && m->second.is_learner;
  }
  auto it = s.progress.find(id);
  if (learner && it == s.progress.end()) {
    // Just added: the published progress does not show it yet.
    return EtcdErr(api::kErrLearnerNotReady);
  }
  if (it != s.progress.end()) {
    // etcd: the learner's match index within 90% of the leader's.
    // (The leader's own match may lag its log in the core's tracker: the
    // commit index is a floor for it.)
    double leader_match = static_cast<double>(
        std::max<uint64_t>(s.progress[member_id_].match, s.commit));
    if (static_cast<double>(it->second.match) < leader_match * 0.9) {
      return EtcdErr(api::kErrLearnerNotReady);
    }
  }
  if (!config_.strict_reconfig_check) return Status::OK();
  ClusterState cs;
  {
    std::lock_guard lock(state_mu_);
    cs = cluster_;
  }
  int nmembers = 1, nstarted = 1;
  for (const auto& [mid, m] : cs.members) {
    if (m.is_learner) continue;
    nmembers++;
    if (!m.name.empty()) nstarted++;
  }
  if (nstarted < nmembers / 2 + 1) {
    return EtcdErr(api::kErrMemberNotEnoughStarted);
  }
  return Status::OK();
}

Status Server::ProposeConfChangeAndWait(raft::ConfChange cc,
                                        internal::MemberContext ctx) {
  const uint64_t id = next_request_id_++;
  ctx.set_request_id(id);
  ctx.set_proposer(member_id_);
  cc.context = ctx.SerializeAsString();
  const auto deadline = std::chrono::steady_clock::now() + RequestTimeout();
  const auto poll = std::chrono::milliseconds(config_.heartbeat_ms);
  // The core takes one change at a time and refuses a new one while a
  // joint configuration is being left: wait for that to finish first.
  while (!node_->GetStatus().conf_state.voters_outgoing.empty()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return EtcdErr(api::kErrTimeout);
    }
    std::this_thread::sleep_for(poll);
  }
  std::future<std::shared_ptr<ApplyResult>> done;
  {
    std::lock_guard lock(wait_mu_);
    done = waiters_[id].get_future();
  }
  auto forget = [&] {
    std::lock_guard lock(wait_mu_);
    waiters_.erase(id);
  };
  while (true) {
    Status st = node_->ProposeConfChange(cc).get();
    if (st.ok()) break;
    if (!st.IsProposalDropped() ||
        std::chrono::steady_clock::now() >= deadline) {
      forget();
      return st.IsProposalDropped() ? EtcdErr(api::kErrTimeout) : st;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    node_->WaitForLeader(left);
    std::this_thread::sleep_for(poll);  // a transfer may be in progress
  }
  if (done.wait_until(deadline) != std::future_status::ready) {
    forget();
    return EtcdErr(api::kErrTimeout);
  }
  return done.get()->status;
}

void Server::FillMembers(
    google::protobuf::RepeatedPtrField<etcdserverpb::Member>* out) const {
  std::lock_guard lock(state_mu_);
  for (const auto& [id, m] : cluster_.members) {
    auto* pm = out->Add();
    pm->set_id(id);
    pm->set_name(m.name);
    for (const auto& u : m.peer_urls) pm->add_peerurls(u);
    for (const auto& u : m.client_urls) pm->add_clienturls(u);
    pm->set_islearner(m.is_learner);
  }
}

Status Server::MemberAdd(const etcdserverpb::MemberAddRequest& r,
                         etcdserverpb::MemberAddResponse* out) {
  auto urls = ParseMemberUrls(r.peerurls());
  if (!urls.ok()) return urls.status();
  KEEL_RETURN_IF_ERROR(MayAddMember(r.islearner()));
  const uint64_t id = NewMemberId(*urls, config_.initial_cluster_token);
  internal::MemberContext ctx;
  ctx.set_id(id);
  for (const auto& u : r.peerurls()) ctx.add_peer_urls(u);
  ctx.set_is_learner(r.islearner());
  raft::ConfChange cc;
  cc.changes.push_back({r.islearner() ? raft::ConfChangeType::kAddLearnerNode
                                      : raft::ConfChangeType::kAddNode,
                        id});
  KEEL_RETURN_IF_ERROR(ProposeConfChangeAndWait(std::move(cc), ctx));
  auto* m = out->mutable_member();
  m->set_id(id);
  for (const auto& u : r.peerurls()) m->add_peerurls(u);
  m->set_islearner(r.islearner());
  FillMembers(out->mutable_members());
  FillHeader(out->mutable_header(), store_->CurrentRevision());
  return Status::OK();
}

Status Server::MemberRemove(const etcdserverpb::MemberRemoveRequest& r,
                            etcdserverpb::MemberRemoveResponse* out) {
  KEEL_RETURN_IF_ERROR(MayRemoveMember(r.id()));
  internal::MemberContext ctx;
  ctx.set_id(r.id());
  raft::ConfChange cc;
  cc.changes.push_back({raft::ConfChangeType::kRemoveNode, r.id()});
  KEEL_RETURN_IF_ERROR(ProposeConfChangeAndWait(std::move(cc), ctx));
  FillMembers(out->mutable_members());
  FillHeader(out->mutable_header(), store_->CurrentRevision());
  return Status::OK();
}

Status Server::MemberUpdate(const etcdserverpb::MemberUpdateRequest& r,
                            etcdserverpb::MemberUpdateResponse* out) {
  auto urls = ParseMemberUrls(r.peerurls());
  if (!urls.ok()) return urls.status();
  internal::MemberContext ctx;
  ctx.set_id(r.id());
  for (const auto& u : r.peerurls()) ctx.add_peer_urls(u);
  raft::ConfChange cc;
  cc.changes.push_back({raft::ConfChangeType::kUpdateNode, r.id()});
  KEEL_RETURN_IF_ERROR(ProposeConfChangeAndWait(std::move(cc), ctx));
  FillMembers(out->mutable_members());
  FillHeader(out->mutable_header(), store_->CurrentRevision());
  return Status::OK();
}

Status Server::MemberPromote(const etcdserverpb::MemberPromoteRequest& r,
                             etcdserverpb::MemberPromoteResponse* out) {
  KEEL_RETURN_IF_ERROR(MayPromoteMember(r.id()));
  internal::MemberContext ctx;
  ctx.set_id(r.id());
  ctx.set_promote(true);
  raft::ConfChange cc;
  cc.changes.push_back({raft::ConfChangeType::kAddNode, r.id()});
  KEEL_RETURN_IF_ERROR(ProposeConfChangeAndWait(std::move(cc), ctx));
  FillMembers(out->mutable_members());
  FillHeader(out->mutable_header(), store_->CurrentRevision());
  return Status::OK();
}

Status Server::MemberReplace(const std::vector<std::string>& add,
                             const std::vector<uint64_t>& promote,
                             const std::vector<uint64_t>& remove,
                             std::vector<uint64_t>* added_ids) {
  if (!add.empty()) {
    if (!promote.empty() || !remove.empty()) {
      return Status::InvalidArgument(
          "keel: MemberReplace adds learners alone (step 1), then promotes "
          "and removes (step 2)");
    }
    KEEL_RETURN_IF_ERROR(MayAddMember(/*is_learner=*/true));
    for (const std::string& list : add) {
      auto urls = ParseUrls(list);
      if (!urls.ok()) return EtcdErr(api::kErrMemberBadURLs);
      const uint64_t id = NewMemberId(*urls, config_.initial_cluster_token);
      internal::MemberContext ctx;
      ctx.set_id(id);
      ctx.set_is_learner(true);
      ctx.set_replace(true);
      for (const Url& u : *urls) ctx.add_peer_urls(u.String());
      raft::ConfChange cc;
      cc.changes.push_back({raft::ConfChangeType::kAddLearnerNode, id});
      KEEL_RETURN_IF_ERROR(ProposeConfChangeAndWait(std::move(cc), ctx));
      added_ids->push_back(id);
    }
    return Status::OK();
  }
  if (promote.empty() && remove.empty()) {
    return Status::InvalidArgument("keel: MemberReplace with nothing to do");
  }
  // Every learner to promote must have caught up (the leader knows).
  for (uint64_t id : promote) KEEL_RETURN_IF_ERROR(MayPromoteMember(id));
  if (config_.strict_reconfig_check) {
    // Both halves of the joint configuration need a quorum of members that
    // are up, or the change could not commit (or leave the joint state).
    ClusterState cs;
    {
      std::lock_guard lock(state_mu_);
      cs = cluster_;
    }
    std::set<uint64_t> gone(remove.begin(), remove.end());
    std::set<uint64_t> joining(promote.begin(), promote.end());
    int old_voters = 0, old_up = 0, new_voters = 0, new_up = 0;
    for (const auto& [id, m] : cs.members) {
      const bool up = PeerConnected(id);
      if (!m.is_learner) {
        old_voters++;
        old_up += up;
      }
      if ((!m.is_learner && !gone.count(id)) || joining.count(id)) {
        new_voters++;
        new_up += up;
      }
    }
    if (new_voters == 0 || old_up < old_voters / 2 + 1 ||
        new_up < new_voters / 2 + 1) {
      return EtcdErr(api::kErrUnhealthy);
    }
  }
  internal::MemberContext ctx;
  raft::ConfChange cc;
  // Joint consensus, left automatically once the joint configuration is
  // committed: no decision is ever taken by the old or the new voters
  // alone while the change is under way.
  cc.transition = raft::ConfChangeTransition::kJointImplicit;
  for (uint64_t id : promote) {
    auto* m = ctx.add_members();
    m->set_id(id);
    m->set_promote(true);
    cc.changes.push_back({raft::ConfChangeType::kAddNode, id});
  }
  for (uint64_t id : remove) {
    ctx.add_members()->set_id(id);
    cc.changes.push_back({raft::ConfChangeType::kRemoveNode, id});
  }
  spdlog::info(
      "replacing members: promoting {} learner(s), removing {} "
      "voter(s) in one joint change",
      promote.size(), remove.size());
  return ProposeConfChangeAndWait(std::move(cc), ctx);
}

std::vector<std::string> Server::LeaderClientUrls() const {
  uint64_t leader = node_ ? node_->GetStatus().leader : 0;
  std::lock_guard lock(state_mu_);
  auto it = cluster_.members.find(leader);
  if (it == cluster_.members.end()) return {};
  return it->second.client_urls;
}

Status Server::MoveLeader(const etcdserverpb::MoveLeaderRequest& r,
                          etcdserverpb::MoveLeaderResponse* out) {
  if (!IsLeader()) return EtcdErr(api::kErrNotLeader);
  {
    std::lock_guard lock(state_mu_);
    auto it = cluster_.members.find(r.targetid());
    if (it == cluster_.members.end() || it->second.is_learner) {
      return EtcdErr(api::kErrBadLeaderTransferee);
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + RequestTimeout();
  const auto retry = std::chrono::milliseconds(config_.election_ms);
  auto next_ask = std::chrono::steady_clock::now();
  spdlog::info("moving leadership from {:x} to {:x}", member_id_, r.targetid());
  while (node_->GetStatus().leader != r.targetid()) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return EtcdErr(api::kErrTimeoutLeaderTransfer);
    // The core abandons a transfer after an election timeout: ask again.
    if (now >= next_ask && IsLeader()) {
      node_->TransferLeader(r.targetid());
      next_ask = now + retry;
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(config_.heartbeat_ms));
  }
  FillHeader(out->mutable_header(), store_->CurrentRevision());
  return Status::OK();
}

// ---------------- whole-store maintenance ----------------

Status Server::Hash(etcdserverpb::HashResponse* out) {
  auto h = store_->Hash();
  if (!h.ok()) return h.status();
  out->set_hash(*h);
  FillHeader(out->mutable_header(), store_->CurrentRevision());
  return Status::OK();
}

Status Server::Snapshot(
    const std::function<bool(std::string_view, uint64_t)>& write) {
  static std::atomic<uint64_t> seq{0};
  const std::string path =
      (fs::path(SnapDir()) / ("client-" + std::to_string(seq++) + ".snap"))
          .string();
  auto info = store_->ExportSnapshot(path);
  if (!info.ok()) return info.status();
  struct Remove {
    std::string p;
    ~Remove() {
      std::error_code ec;
      fs::remove(p, ec);
    }
  } remove{path};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open " + path);
  spdlog::info("sending a client snapshot at revision {} ({} bytes)",
               info->revision, info->size_bytes);
  SHA256_CTX sha;
  SHA256_Init(&sha);
  // etcdctl insists that the file's size modulo 512 is the trailer's 32
  // (etcd's database is made of pages): pad with zeros, then the length
  // of the store's part (fixed64), so that restore finds where it ends.
  const uint64_t pad =
      (kSnapshotAlign - (info->size_bytes + 8) % kSnapshotAlign) %
      kSnapshotAlign;
  const uint64_t total = info->size_bytes + pad + 8 + SHA256_DIGEST_LENGTH;
  uint64_t sent = 0;
  std::string buf(1 << 20, '\0');
  while (true) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    size_t n = static_cast<size_t>(in.gcount());
    if (n == 0) break;
    SHA256_Update(&sha, buf.data(), n);
    sent += n;
    if (!write(std::string_view(buf.data(), n), total)) {
      return Status::Aborted("the client went away");
    }
  }
  if (in.bad() || sent != info->size_bytes) {
    return Status::IOError("reading " + path);
  }
  std::string tail(pad, '\0');
  PutFixed64(&tail, info->size_bytes);
  SHA256_Update(&sha, tail.data(), tail.size());
  if (!write(tail, total)) return Status::Aborted("the client went away");
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256_Final(digest, &sha);
  if (!write(std::string_view(reinterpret_cast<char*>(digest),
                              SHA256_DIGEST_LENGTH),
             total)) {
    return Status::Aborted("the client went away");
  }
  return Status::OK();
}

// ---------------- corruption check ----------------

bool Server::CheckHashes(bool raise_alarm) {
  auto mine = store_->HashKV(0);
  if (!mine.ok()) return true;
  std::map<uint64_t, std::vector<std::string>> peers;
  {
    std::lock_guard lock(state_mu_);
    for (const auto& [id, m] : cluster_.members) {
      if (id != member_id_ && !m.client_urls.empty()) peers[id] = m.client_urls;
    }
  }
  bool ok = true;
  size_t compared = 0;
  for (const auto& [id, urls] : peers) {
    auto channel = MemberChannel(urls[0]);
    if (!channel) continue;
    auto stub = etcdserverpb::Maintenance::NewStub(channel);
    grpc::ClientContext cctx;
    cctx.set_deadline(std::chrono::system_clock::now() + 3s);
    etcdserverpb::HashKVRequest req;
    req.set_revision(mine->revision);
    etcdserverpb::HashKVResponse resp;
    grpc::Status gs = stub->HashKV(&cctx, req, &resp);
    if (!gs.ok()) {
      // Down, behind, or compacted past it: no verdict. Logged as etcd
      // does, so that a check that cannot reach its peers (TLS, auth) is
      // seen.
      spdlog::warn(
          "failed hash kv request: member {:x} ({}) at revision {}: {}", id,
          urls[0], mine->revision, gs.error_message());
      continue;
    }
    compared++;
    if (resp.compact_revision() != mine->compact_revision) continue;
    if (resp.hash() == mine->hash) continue;
    ok = false;
    spdlog::error(
        "member {:x} has hash {} at revision {}; member {:x} (this one) has "
        "{}: data inconsistency; raising the CORRUPT alarm",
        id, resp.hash(), mine->revision, member_id_, mine->hash);
    if (!raise_alarm)
      continue;  // the initial check: the caller refuses to start
    internal::Request areq;
    auto* a = areq.mutable_alarm();
    a->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
    a->set_memberid(id);
    a->set_alarm(etcdserverpb::CORRUPT);
    (void)ProposeAndWait(std::move(areq));
  }
  if (!raise_alarm && ok && compared == peers.size()) {
    spdlog::info(
        "initial corruption checking passed; no corruption (revision {}, {} "
        "peers)",
        mine->revision, compared);
  } else {
    spdlog::debug("corruption check at revision {}: {} of {} peers answered",
                  mine->revision, compared, peers.size());
  }
  return ok;
}

void Server::CorruptCheckLoop() {
  const auto period = ParseDuration(config_.corrupt_check_time);
  if (period <= 0ms) return;
  while (true) {
    {
      std::unique_lock lock(publish_mu_);
      if (publish_cv_.wait_for(lock, period, [this] { return stopping_; })) {
        return;
      }
    }
    bool corrupt;
    {
      std::lock_guard lock(state_mu_);
      corrupt = cluster_.HasAlarm(AlarmType::kCorrupt);
    }
    // etcd's leader checks its followers; one alarm is enough.
    if (IsLeader() && !corrupt) CheckHashes(/*raise_alarm=*/true);
  }
}

}  // namespace keel::server

namespace keel::server {

// ---------------- snapshot restore ----------------

Status Server::RestoreDataDir(const ServerConfig& config,
                              const std::string& snapshot_file) {
  std::error_code ec;
  if (fs::exists(config.data_dir, ec) && !fs::is_empty(config.data_dir, ec)) {
    return Status::FailedPrecondition("data-dir \"" + config.data_dir +
                                      "\" exists");
  }
  std::ifstream in(snapshot_file, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + snapshot_file);
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (size < SHA256_DIGEST_LENGTH + 8) {
    return Status::Corruption(snapshot_file + ": too short for a snapshot");
  }
  auto opened = Server::Open(config);  // an empty store and a new cluster
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Server> s = std::move(opened).value();
  auto fail = [&](Status st) {
    s.reset();
    fs::remove_all(config.data_dir, ec);
    return st;
  };
  // The store's part, checked against the SHA-256 trailer as it is copied;
  // then zero padding and the part's length (see Snapshot).
  const uint64_t hashed = size - SHA256_DIGEST_LENGTH;
  uint64_t part = 0;
  {
    char len[8];
    in.seekg(static_cast<std::streamoff>(hashed - 8));
    in.read(len, 8);
    part = DecodeFixed64(len);
    in.seekg(0);
  }
  if (hashed < 8 || part > hashed - 8) {
    return fail(
        Status::Corruption(snapshot_file +
                           ": not a keel snapshot (bad length before the "
                           "SHA-256 trailer)"));
  }
  const std::string body = (fs::path(s->SnapDir()) / "restore.snap").string();
  {
    std::ofstream out(body, std::ios::binary | std::ios::trunc);
    SHA256_CTX sha;
    SHA256_Init(&sha);
    std::string buf(1 << 20, '\0');
    uint64_t done = 0;
    while (done < hashed) {
      size_t n =
          static_cast<size_t>(std::min<uint64_t>(hashed - done, buf.size()));
      in.read(buf.data(), static_cast<std::streamsize>(n));
      if (static_cast<size_t>(in.gcount()) != n) {
        return fail(Status::IOError("reading " + snapshot_file));
      }
      SHA256_Update(&sha, buf.data(), n);
      if (done < part) {
        out.write(buf.data(), static_cast<std::streamsize>(
                                  std::min<uint64_t>(n, part - done)));
      }
      done += n;
    }
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    in.read(reinterpret_cast<char*>(want), SHA256_DIGEST_LENGTH);
    SHA256_Final(got, &sha);
    if (in.gcount() != SHA256_DIGEST_LENGTH ||
        std::memcmp(want, got, SHA256_DIGEST_LENGTH) != 0) {
      return fail(
          Status::Corruption(snapshot_file +
                             ": the SHA-256 trailer (last 32 bytes) does not "
                             "match the content: the file is damaged or not a "
                             "keel snapshot"));
    }
    out.flush();
    if (!out) return fail(Status::IOError("writing " + body));
  }
  Status st = s->store_->RestoreSnapshot(body);
  fs::remove(body, ec);
  if (!st.ok()) {
    return fail(Status::Corruption(snapshot_file + ": " + st.message()));
  }
  // The new cluster's log starts right after the store's applied index
  // (every member restores the same file, so all agree on it): its raft
  // snapshot moves there from the bootstrap one at index 1.
  const mvcc::ConsistentIndex ci = s->store_->consistent_index();
  if (ci.index > 1) {
    auto boot = s->storage_->GetSnapshot();
    if (!boot.ok()) return fail(boot.status());
    raft::Snapshot snap = *boot;
    snap.metadata.index = ci.index;
    snap.metadata.term = std::max<uint64_t>(ci.term, 1);
    st = s->storage_->ApplySnapshot(snap);
    if (st.ok()) {
      st = s->storage_->SetHardState(
          {snap.metadata.term, raft::kNone, snap.metadata.index});
    }
  }
  if (st.ok()) st = s->store_->ForceCommit();
  if (!st.ok()) return fail(st);
  spdlog::info(
      "restored {} into {}: member {:x} of the new cluster {:x}, revision {}",
      snapshot_file, config.data_dir, s->member_id(), s->cluster_id(),
      s->store_->CurrentRevision());
  return Status::OK();
}

}  // namespace keel::server
