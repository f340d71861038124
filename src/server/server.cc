#include "server/server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "api/errors.h"
#include "common/log.h"
#include "mvcc/request_check.h"
#include "raft/codec.h"
#include "server/convert.h"
#include "server/request_checks.h"
#include "server/server_metrics.h"
#include "server/tls_setup.h"

namespace keel::server {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

Status EtcdErr(const api::EtcdError& e) {
  return Status::FailedPrecondition(e.message);
}

// A snapshot payload file being read by the transport; removed afterwards.
class FileSource : public transport::ByteSource {
 public:
  FileSource(std::string path, bool remove_after)
      : path_(std::move(path)),
        in_(path_, std::ios::binary),
        remove_after_(remove_after) {}
  ~FileSource() override {
    in_.close();
    if (remove_after_) fs::remove(path_);
  }
  bool ok() const { return in_.good(); }
  Result<size_t> Read(char* buf, size_t n) override {
    in_.read(buf, static_cast<std::streamsize>(n));
    if (in_.bad()) return Status::IOError("reading " + path_);
    return static_cast<size_t>(in_.gcount());
  }

 private:
  std::string path_;
  std::ifstream in_;
  bool remove_after_;
};

// A received snapshot payload: written to <final>.tmp, fsynced and renamed
// on Finish; removed if abandoned.
class FileSink : public transport::ByteSink {
 public:
  FileSink(std::string final_path, uint64_t local, uint64_t from,
           uint64_t index)
      : final_(std::move(final_path)),
        tmp_(final_ + ".tmp"),
        local_(local),
        from_(from),
        index_(index) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  }
  ~FileSink() override {
    if (fd_ >= 0) ::close(fd_);
    if (!finished_) fs::remove(tmp_);
  }
  bool ok() const { return fd_ >= 0; }
  Status Write(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::IOError("writing " + tmp_ + ": " + strerror(errno));
      }
      data.remove_prefix(static_cast<size_t>(n));
      bytes_ += static_cast<uint64_t>(n);
    }
    return Status::OK();
  }
  Status Finish() override {
    if (::fsync(fd_) != 0) {
      return Status::IOError("fsync " + tmp_ + ": " + strerror(errno));
    }
    ::close(fd_);
    fd_ = -1;
    std::error_code ec;
    fs::rename(tmp_, final_, ec);
    if (ec) return Status::IOError("rename " + tmp_ + ": " + ec.message());
    int dfd = ::open(fs::path(final_).parent_path().c_str(),
                     O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    finished_ = true;
    KEEL_LOG_INFO("received and saved database snapshot",
                  log::Id("local-member-id", local_),
                  log::Id("remote-snapshot-sender-id", from_),
                  log::F("incoming-snapshot-index", index_),
                  log::F("incoming-snapshot-size-bytes", bytes_),
                  log::F("snapshot-path", final_));
    return Status::OK();
  }

 private:
  std::string final_;
  std::string tmp_;
  int fd_ = -1;
  bool finished_ = false;
  const uint64_t local_, from_, index_;
  uint64_t bytes_ = 0;
};

bool HasWrites(const etcdserverpb::TxnRequest& r) { return !IsReadOnly(r); }

}  // namespace

// Shared with server_async.cc (request_checks.h).
Status CheckRangeKey(const std::string& key) {
  return key.empty() ? EtcdErr(api::kErrEmptyKey) : Status::OK();
}

// etcd's checks on a txn before it is proposed (v3rpc/key.go).
Status CheckTxn(const etcdserverpb::TxnRequest& r, uint64_t max_ops) {
  if (static_cast<uint64_t>(r.compare_size()) > max_ops ||
      static_cast<uint64_t>(r.success_size()) > max_ops ||
      static_cast<uint64_t>(r.failure_size()) > max_ops) {
    return EtcdErr(api::kErrTooManyOps);
  }
  for (const auto& c : r.compare())
    KEEL_RETURN_IF_ERROR(CheckRangeKey(c.key()));
  auto check_ops = [&](const auto& ops) -> Status {
    for (const auto& op : ops) {
      switch (op.request_case()) {
        case etcdserverpb::RequestOp::kRequestRange:
          KEEL_RETURN_IF_ERROR(CheckRangeKey(op.request_range().key()));
          break;
        case etcdserverpb::RequestOp::kRequestPut:
          KEEL_RETURN_IF_ERROR(CheckRangeKey(op.request_put().key()));
          break;
        case etcdserverpb::RequestOp::kRequestDeleteRange:
          KEEL_RETURN_IF_ERROR(CheckRangeKey(op.request_delete_range().key()));
          break;
        case etcdserverpb::RequestOp::kRequestTxn:
          KEEL_RETURN_IF_ERROR(CheckTxn(op.request_txn(), max_ops));
          break;
        case etcdserverpb::RequestOp::REQUEST_NOT_SET:
          break;
      }
    }
    return Status::OK();
  };
  KEEL_RETURN_IF_ERROR(check_ops(r.success()));
  return check_ops(r.failure());
}

namespace {

std::string AlarmName(int32_t t) {
  switch (t) {
    case 1:
      return "NOSPACE";
    case 2:
      return "CORRUPT";
    default:
      return "NONE";
  }
}

}  // namespace

Server::Server(const ServerConfig& config) : config_(config) {}

Server::~Server() { Stop(); }

std::string Server::SnapDir() const {
  return (fs::path(config_.data_dir) / "member" / "snap").string();
}

Result<std::unique_ptr<Server>> Server::Open(const ServerConfig& config) {
  std::unique_ptr<Server> s(new Server(config));
  KEEL_RETURN_IF_ERROR(s->OpenStorage());
  return s;
}

Status Server::OpenStorage() {
  fs::path member = fs::path(config_.data_dir) / "member";
  fs::path wal_dir = member / "wal";
  std::error_code ec;
  bool exists = fs::exists(wal_dir, ec) && !fs::is_empty(wal_dir, ec);
  if (fs::exists(config_.data_dir, ec) && !fs::is_directory(config_.data_dir)) {
    return Status::InvalidArgument("--data-dir " + config_.data_dir +
                                   " exists and is not a directory");
  }
  if (!exists && fs::exists(member / "kv", ec)) {
    return Status::Corruption(
        "data directory " + config_.data_dir +
        " has a key-value store but no write-ahead log (" + wal_dir.string() +
        "): refusing to start over it");
  }
  fs::create_directories(member, ec);
  if (ec) {
    return Status::IOError("cannot create data directory " + member.string() +
                           ": " + ec.message());
  }
  fs::permissions(config_.data_dir, fs::perms::owner_all,
                  fs::perm_options::replace, ec);

  std::vector<uint64_t> ids;
  for (const auto& [name, urls] : config_.initial_cluster) {
    ids.push_back(ComputeMemberId(urls, config_.initial_cluster_token));
  }
  uint64_t want_member = ComputeMemberId(config_.initial_advertise_peer_urls,
                                         config_.initial_cluster_token);
  uint64_t want_cluster = ComputeClusterId(ids);
  // A member joining an existing cluster learns the cluster id, its own
  // id and the members from its peers, as etcd's does.
  ClusterState joined;
  const bool joining = config_.initial_cluster_state == "existing";
  if (!exists && joining) {
    KEEL_RETURN_IF_ERROR(DiscoverCluster(&joined, &want_cluster, &want_member));
  }
  wal::DiskStorageOptions o;
  o.dir = member.string();
  // The Raft loop is the only writer and waits for each batch at once, so
  // it writes and syncs the batch itself: a background writer only added
  // two thread hand-offs to every write's path.
  o.background_writer = false;
  if (!exists) o.metadata = {want_member, want_cluster};
  auto storage = wal::DiskStorage::Open(wal::Env::Posix(), o);
  if (!storage.ok()) {
    return Status(storage.status().code() == Status::Code::kCorruption
                      ? Status::Corruption("opening " + o.dir + ": " +
                                           storage.status().message())
                      : Status::IOError("opening " + o.dir + ": " +
                                        storage.status().message()));
  }
  storage_ = std::move(storage).value();
  member_id_ = storage_->metadata().member_id;
  cluster_id_ = storage_->metadata().cluster_id;
  if (exists && member_id_ != want_member) {
    spdlog::warn(
        "data directory {} belongs to member {:x} of cluster {:x}; the flags "
        "describe member {:x}: resuming as {:x} (flags for a new cluster are "
        "ignored on restart, as etcd does)",
        config_.data_dir, member_id_, cluster_id_, want_member, member_id_);
  }

  mvcc::StoreOptions so;
  lessor_ = std::make_unique<Lessor>(
      MinLeaseTTLSeconds(config_.election_ms, config_.heartbeat_ms));
  so.lease_exists = [this](int64_t id) { return lessor_->Exists(id); };
  // One write(2) of the store's WAL per applied batch (ApplyBatchDone)
  // rather than one per entry: ~4% of a loaded member's CPU. What a crash
  // loses of it is replayed from the Raft WAL.
  so.defer_wal_writes = true;
  auto store = mvcc::Store::Open((member / "kv").string(), so);
  if (!store.ok()) {
    return Status::Corruption("opening the key-value store " +
                              (member / "kv").string() + ": " +
                              store.status().message());
  }
  store_ = std::move(store).value();
  KEEL_RETURN_IF_ERROR(LoadAuth());
  KEEL_RETURN_IF_ERROR(LoadLeases());
  mvcc::WatchHubOptions wo;
  if (config_.watch_progress_notify_interval_ms > 0) {
    wo.progress_interval =
        std::chrono::milliseconds(config_.watch_progress_notify_interval_ms);
  }
  watch_hub_ = std::make_unique<mvcc::WatchHub>(store_.get(), wo);

  if (!exists && joining) {
    // No raft state until the leader sends its snapshot.
    std::lock_guard lock(state_mu_);
    cluster_ = std::move(joined);
  } else if (!exists) {
    KEEL_RETURN_IF_ERROR(Bootstrap());
  } else {
    auto snap = storage_->GetSnapshot();
    if (!snap.ok()) return snap.status();
    ClusterState cs;
    if (snap->metadata.index == 0) {
      // Joined, but stopped before the leader's snapshot arrived: ask the
      // peers again who they are.
      uint64_t cid = 0, mid = 0;
      KEEL_RETURN_IF_ERROR(DiscoverCluster(&cs, &cid, &mid));
    } else if (!cs.Decode(snap->data)) {
      return Status::Corruption(
          "the cluster state in the raft snapshot at "
          "index " +
          std::to_string(snap->metadata.index) + " in " + SnapDir() +
          " cannot be decoded");
    }
    {
      std::lock_guard lock(state_mu_);
      cluster_ = std::move(cs);
    }
    if (config_.force_new_cluster) KEEL_RETURN_IF_ERROR(ForceNewCluster());
  }
  spdlog::info(
      "member {:x} of cluster {:x}: data directory {}, applied index "
      "{}, revision {}",
      member_id_, cluster_id_, config_.data_dir, AppliedIndex(),
      store_->CurrentRevision());
  return Status::OK();
}

Status Server::Bootstrap() {
  ClusterState cs;
  cs.cluster_id = cluster_id_;
  raft::ConfState conf;
  for (const auto& [name, urls] : config_.initial_cluster) {
    MemberInfo m;
    m.id = ComputeMemberId(urls, config_.initial_cluster_token);
    m.name = name;
    for (const Url& u : urls) m.peer_urls.push_back(u.String());
    if (m.id == member_id_) {
      for (const Url& u : config_.advertise_client_urls) {
        m.client_urls.push_back(u.String());
      }
    }
    conf.voters.push_back(m.id);
    cs.members[m.id] = m;
  }
  std::sort(conf.voters.begin(), conf.voters.end());
  raft::Snapshot snap;
  snap.data = cs.Encode();
  snap.metadata = {conf, 1, 1};
  KEEL_RETURN_IF_ERROR(storage_->ApplySnapshot(snap));
  KEEL_RETURN_IF_ERROR(storage_->SetHardState({1, raft::kNone, 1}));
  std::lock_guard lock(state_mu_);
  cluster_ = std::move(cs);
  return Status::OK();
}

Status Server::Start() {
  // Request ids must not repeat across restarts: entries proposed by this
  // member before a crash are still applied after it, and one with an id
  // handed out again would complete the new request with the old entry's
  // result (the fault-injection suite caught a put answered with another
  // put's revision). As etcd's idutil: the member id's low 16 bits, then
  // the start time in ms, then a counter.
  next_request_id_ =
      ((member_id_ & 0xffff) << 48) |
      ((static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count()) &
        ((1ULL << 40) - 1))
       << 8);
  RaftNodeOptions ro;
  ro.id = member_id_;
  ro.heartbeat_ms = config_.heartbeat_ms;
  ro.election_ticks = config_.ElectionTicks();
  ro.pre_vote = config_.pre_vote;
  ro.snapshot_count = config_.snapshot_count;
  ro.snapshot_catchup_entries =
      std::min<uint64_t>(5000, std::max<uint64_t>(1, config_.snapshot_count));
  ro.seed = std::random_device{}();
  ro.loop_io = this;
  ro.commit_notice_delay =
      std::chrono::microseconds(config_.commit_notice_delay_us);
  node_ = std::make_unique<RaftNode>(ro, storage_.get(), this, this);

  transport::Options to;
  to.cluster_id = cluster_id_;
  to.local_id = member_id_;
  to.listen_url = config_.listen_peer_urls[0].String();
  to.external_io = true;  // run by the Raft loop (RaftNodeOptions::loop_io)
  InstallTestHooks(&to);
  auto peer_tls = MakeTlsOptions(config_, config_.security.peer, "peer",
                                 config_.listen_peer_urls);
  if (!peer_tls.ok()) return peer_tls.status();
  to.tls = std::move(peer_tls).value();
  to.membership = [this] {
    std::lock_guard lock(state_mu_);
    return cluster_.Encode();
  };
  transport_ = std::make_unique<transport::Transport>(to, this, this);
  {
    std::lock_guard lock(state_mu_);
    for (const auto& [id, m] : cluster_.members) {
      if (id != member_id_) transport_->AddPeer(id, m.peer_urls);
    }
  }
  KEEL_RETURN_IF_ERROR(transport_->Start());
  if (config_.initial_corrupt_check && !CheckHashes(/*raise_alarm=*/false)) {
    return Status::Corruption(
        "found data inconsistency with peers (--experimental-initial-corrupt-"
        "check)");
  }
  KEEL_RETURN_IF_ERROR(node_->Start());
  RegisterMetrics();
  started_ = true;
  publish_thread_ = std::thread([this] { PublishLoop(); });
  tick_advance_thread_ = std::thread([this] { AdvanceInitialTicks(); });
  StartLeases();
  reaper_thread_ = std::thread([this] { ReapLoop(); });
  corrupt_thread_ = std::thread([this] { CorruptCheckLoop(); });
  return Status::OK();
}

void Server::Stop() {
  {
    std::lock_guard lock(publish_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  publish_cv_.notify_all();
  // Consensus stops first, so that a thread waiting on a proposal (the
  // publish loop, lease revokes) fails at once with "server stopped"
  // rather than waiting out its request timeout: a member that had lost
  // its quorum took ~7 s to stop.
  if (node_) node_->Stop();
  FailWaiters();
  if (publish_thread_.joinable()) publish_thread_.join();
  if (tick_advance_thread_.joinable()) tick_advance_thread_.join();
  StopLeases();
  if (reaper_thread_.joinable()) reaper_thread_.join();
  if (corrupt_thread_.joinable()) corrupt_thread_.join();
  UnregisterMetrics();
  if (transport_) transport_->Stop();
  FailWaiters();
}

void Server::FailWaiters() {
  std::lock_guard lock(wait_mu_);
  for (auto& [id, p] : waiters_) {
    auto r = std::make_shared<ApplyResult>();
    r->status = EtcdErr(api::kErrStopped);
    p.set_value(r);
  }
  waiters_.clear();
  for (HeldRead& h : held_reads_) h.done(EtcdErr(api::kErrStopped));
  held_reads_.clear();
}

void Server::AdvanceInitialTicks() {
  // As etcd's adjustTicks: a one-member cluster elects itself after one
  // more tick; a member of a larger one, once two or more peers are
  // connected (for up to 5 s), is two ticks from its election timeout.
  // PreVote keeps a member that advanced from disturbing a live leader.
  const int election_ticks = config_.ElectionTicks();
  const auto tick = std::chrono::milliseconds(config_.heartbeat_ms);
  const auto timeout = std::chrono::milliseconds(config_.election_ms);
  size_t members = 0;
  {
    std::lock_guard lock(state_mu_);
    members = cluster_.members.size();
  }
  if (members == 1) {
    const int ticks = election_ticks - 1;
    KEEL_LOG_INFO("started as single-node; fast-forwarding election ticks",
                  log::Id("local-member-id", member_id_),
                  log::F("forward-ticks", ticks),
                  log::F("forward-duration", tick * ticks),
                  log::F("election-ticks", election_ticks),
                  log::F("election-timeout", timeout));
    node_->AdvanceTicks(ticks);
    return;
  }
  if (!config_.initial_election_tick_advance) return;
  for (int i = 0; i < 100; i++) {
    {
      std::unique_lock lock(publish_mu_);
      if (publish_cv_.wait_for(lock, 50ms, [this] { return stopping_; })) {
        return;
      }
    }
    int connected = 0;
    for (const auto& [id, stats] : transport_->AllStats()) {
      if (stats.connected) connected++;
    }
    if (connected > 1) {
      const int ticks = election_ticks - 2;
      KEEL_LOG_INFO(
          "initialized peer connections; fast-forwarding election ticks",
          log::Id("local-member-id", member_id_),
          log::F("forward-ticks", ticks),
          log::F("forward-duration", tick * ticks),
          log::F("election-ticks", election_ticks),
          log::F("election-timeout", timeout),
          log::F("active-remote-members", connected));
      node_->AdvanceTicks(ticks);
      return;
    }
  }
}

void Server::PublishLoop() {
  // Make our name and client URLs known to the cluster (etcd "publishes"
  // them the same way), retrying until it commits.
  while (true) {
    internal::Request req;
    auto* a = req.mutable_member_attributes();
    a->set_member_id(member_id_);
    a->set_name(config_.name);
    for (const Url& u : config_.advertise_client_urls) {
      a->add_client_urls(u.String());
    }
    auto r = ProposeAndWait(std::move(req));
    if (r.ok() && (*r)->status.ok()) {
      std::vector<std::string> client_urls;
      for (const Url& u : config_.advertise_client_urls) {
        client_urls.push_back(u.String());
      }
      KEEL_LOG_INFO("published local member to cluster through raft",
                    log::Id("local-member-id", member_id_),
                    log::F("local-member-attributes-name", config_.name),
                    log::F("local-member-attributes-client-urls", client_urls),
                    log::Id("cluster-id", cluster_id_));
      return;
    }
    std::unique_lock lock(publish_mu_);
    if (publish_cv_.wait_for(lock, 500ms, [this] { return stopping_; })) {
      return;
    }
  }
}

// ---------------- request path ----------------

Result<std::shared_ptr<ApplyResult>> Server::ProposeAndWait(
    internal::Request req) {
  uint64_t id = next_request_id_++;
  StampRequestAuth(&req);
  req.set_id(id);
  req.set_member_id(member_id_);
  std::string data = req.SerializeAsString();
  if (data.size() > config_.max_request_bytes) {
    return EtcdErr(api::kErrRequestTooLarge);
  }
  auto deadline = std::chrono::steady_clock::now() + RequestTimeout();
  std::future<std::shared_ptr<ApplyResult>> done;
  {
    std::lock_guard lock(wait_mu_);
    done = waiters_[id].get_future();
  }
  ServerMetrics& metrics = ServerMetrics::Get();
  metrics.proposals_pending.Inc();
  struct Done {
    metrics::Gauge& g;
    ~Done() { g.Dec(); }
  } pending_done{metrics.proposals_pending};
  auto forget = [&] {
    metrics.proposals_failed.Inc();
    std::lock_guard lock(wait_mu_);
    waiters_.erase(id);
  };
  while (true) {
    Status st = node_->Propose(data).get();
    if (st.ok()) break;
    if (!st.IsProposalDropped()) {
      forget();
      return st;
    }
    // No leader yet (an election is under way): wait for one and retry.
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms || !node_->WaitForLeader(left)) {
      // etcd holds a proposal until a leader appears or the request times
      // out; "no leader" is for clients that ask for it (see HasLeader).
      forget();
      return EtcdErr(api::kErrTimeout);
    }
    if (node_->GetStatus().leader != 0 &&
        std::chrono::steady_clock::now() < deadline) {
      // The leader may still refuse (a transfer in progress): back off.
      std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
          left, std::chrono::milliseconds(config_.heartbeat_ms)));  // retry
    }
  }
  if (done.wait_until(deadline) != std::future_status::ready) {
    forget();
    return EtcdErr(api::kErrTimeout);
  }
  return done.get();
}

Status Server::WaitReadIndex() {
  if (config_.unsafe_skip_read_index) return Status::OK();  // test only
  // Like a proposal, a read waits out an election (up to the request
  // timeout) rather than failing while the cluster has no leader.
  auto deadline = std::chrono::steady_clock::now() + RequestTimeout();
  while (true) {
    auto f = node_->ReadIndex();
    if (f.wait_until(deadline) != std::future_status::ready) {
      return EtcdErr(api::kErrTimeout);
    }
    Status st = f.get();
    if (st.ok()) return st;
    ServerMetrics::Get().read_indexes_failed.Inc();
    if (st.message() != api::kErrNoLeader.message) {
      return EtcdErr(api::kErrStopped);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms || !node_->WaitForLeader(left)) {
      return EtcdErr(api::kErrTimeout);
    }
  }
}

void Server::FillHeader(etcdserverpb::ResponseHeader* h,
                        int64_t revision) const {
  h->set_cluster_id(cluster_id_);
  h->set_member_id(member_id_);
  h->set_revision(revision);
  h->set_raft_term(node_ ? node_->term() : 0);
}

Status Server::Range(const etcdserverpb::RangeRequest& r,
                     etcdserverpb::RangeResponse* out) {
  KEEL_RETURN_IF_ERROR(CheckRangeKey(r.key()));
  if (!r.serializable()) KEEL_RETURN_IF_ERROR(WaitReadIndex());
  return RangeLocal(r, out);
}

Status Server::RangeLocal(const etcdserverpb::RangeRequest& r,
                          etcdserverpb::RangeResponse* out) {
  ServerMetrics::Get().mvcc_range.Inc();
  auto res = store_->Range(FromPb(r));
  if (!res.ok()) return res.status();
  const int64_t revision = res->header.revision;
  ToPb(std::move(*res), out);
  FillHeader(out->mutable_header(), revision);
  return Status::OK();
}

bool Server::OverQuota() const {
  // Asking RocksDB for its size on every write was ~2% of a loaded
  // leader's CPU. A reading younger than 100 ms is reused while the store is
  // far (64 MiB) below the quota: no write path grows it that much in 100 ms
  // (requests are at most --max-request-bytes). Near the quota every write
  // asks again, so a small quota trips exactly as before.
  constexpr int64_t kMaxAgeNs = 100'000'000;
  constexpr uint64_t kHeadroom = 64ull << 20;
  const auto quota = static_cast<uint64_t>(config_.QuotaBytes());
  const int64_t now = std::chrono::steady_clock::now().time_since_epoch() /
                      std::chrono::nanoseconds(1);
  const int64_t at = quota_size_at_.load(std::memory_order_acquire);
  if (at != 0 && now - at < kMaxAgeNs) {
    const uint64_t size = quota_size_.load(std::memory_order_relaxed);
    if (size + kHeadroom < quota) return false;
  }
  const uint64_t size = store_->SizeBytes();
  quota_size_.store(size, std::memory_order_relaxed);
  quota_size_at_.store(now, std::memory_order_release);
  return size > quota;
}

void Server::RaiseNoSpaceAlarm() {
  {
    std::lock_guard lock(state_mu_);
    if (cluster_.alarms.count({member_id_, 1})) return;
  }
  spdlog::warn(
      "database space exceeded: {} bytes over the quota of {} bytes; "
      "raising the NOSPACE alarm",
      store_->Stats().size_bytes, config_.QuotaBytes());
  internal::Request req;
  auto* a = req.mutable_alarm();
  a->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  a->set_memberid(member_id_);
  a->set_alarm(etcdserverpb::NOSPACE);
  req.set_member_id(member_id_);
  req.set_id(next_request_id_++);
  (void)node_->Propose(req.SerializeAsString());
}

Status Server::CheckSpace() {
  {
    std::lock_guard lock(state_mu_);
    if (cluster_.HasAlarm(AlarmType::kCorrupt))
      return EtcdErr(api::kErrCorrupt);
    if (cluster_.HasAlarm(AlarmType::kNoSpace))
      return EtcdErr(api::kErrNoSpace);
  }
  if (OverQuota()) {
    RaiseNoSpaceAlarm();
    return EtcdErr(api::kErrNoSpace);
  }
  return Status::OK();
}

template <typename Resp>
Status Server::ProposeWrite(internal::Request req, Resp ApplyResult::*field,
                            Resp* out) {
  auto res = ProposeAndWait(std::move(req));
  if (!res.ok()) return res.status();
  if (!(*res)->status.ok()) return (*res)->status;
  *out = (*res).get()->*field;
  FillHeader(out->mutable_header(), out->header().revision());
  return Status::OK();
}

// Used by server_lease.cc.
template Status Server::ProposeWrite(
    internal::Request, etcdserverpb::LeaseGrantResponse ApplyResult::*,
    etcdserverpb::LeaseGrantResponse*);
template Status Server::ProposeWrite(
    internal::Request, etcdserverpb::LeaseRevokeResponse ApplyResult::*,
    etcdserverpb::LeaseRevokeResponse*);

Status Server::Put(const etcdserverpb::PutRequest& r,
                   etcdserverpb::PutResponse* out) {
  KEEL_RETURN_IF_ERROR(CheckRangeKey(r.key()));
  KEEL_RETURN_IF_ERROR(mvcc::ValidatePut(FromPb(r)));
  KEEL_RETURN_IF_ERROR(CheckSpace());
  internal::Request req;
  *req.mutable_put() = r;
  return ProposeWrite(std::move(req), &ApplyResult::put, out);
}

Status Server::DeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                           etcdserverpb::DeleteRangeResponse* out) {
  KEEL_RETURN_IF_ERROR(CheckRangeKey(r.key()));
  internal::Request req;
  *req.mutable_delete_range() = r;
  return ProposeWrite(std::move(req), &ApplyResult::delete_range, out);
}

Status Server::Txn(const etcdserverpb::TxnRequest& r,
                   etcdserverpb::TxnResponse* out) {
  KEEL_RETURN_IF_ERROR(CheckTxn(r, config_.max_txn_ops));
  mvcc::TxnRequest m = FromPb(r);
  KEEL_RETURN_IF_ERROR(mvcc::ValidateTxn(m));
  if (!HasWrites(r)) {
    KEEL_RETURN_IF_ERROR(WaitReadIndex());
    ServerMetrics::Get().mvcc_txn.Inc();
    auto res = store_->ReadTxn(m);
    if (!res.ok()) return res.status();
    ToPb(*res, out);
    FillHeader(out->mutable_header(), res->header.revision);
    return Status::OK();
  }
  KEEL_RETURN_IF_ERROR(CheckSpace());
  internal::Request req;
  *req.mutable_txn() = r;
  return ProposeWrite(std::move(req), &ApplyResult::txn, out);
}

Status Server::Compact(const etcdserverpb::CompactionRequest& r,
                       etcdserverpb::CompactionResponse* out) {
  internal::Request req;
  *req.mutable_compaction() = r;
  auto res = ProposeAndWait(std::move(req));
  if (!res.ok()) return res.status();
  if (!(*res)->status.ok()) return (*res)->status;
  FillHeader(out->mutable_header(), (*res)->revision);
  return Status::OK();
}

Status Server::Alarm(const etcdserverpb::AlarmRequest& r,
                     etcdserverpb::AlarmResponse* out) {
  if (r.action() == etcdserverpb::AlarmRequest::GET) {
    std::lock_guard lock(state_mu_);
    for (const auto& [id, type] : cluster_.alarms) {
      if (r.alarm() != etcdserverpb::NONE && r.alarm() != type) continue;
      auto* a = out->add_alarms();
      a->set_memberid(id);
      a->set_alarm(static_cast<etcdserverpb::AlarmType>(type));
    }
    // etcd answers alarm requests without a header.
    return Status::OK();
  }
  internal::Request req;
  *req.mutable_alarm() = r;
  auto res = ProposeAndWait(std::move(req));
  if (!res.ok()) return res.status();
  if (!(*res)->status.ok()) return (*res)->status;
  *out = (*res)->alarm;
  out->clear_header();
  return Status::OK();
}

Status Server::MemberStatus(etcdserverpb::StatusResponse* out) {
  RaftNodeStatus s = node_->GetStatus();
  mvcc::DbStats db = store_->Stats();
  out->set_version("3.5.0");
  out->set_dbsize(static_cast<int64_t>(db.size_bytes));
  out->set_dbsizeinuse(static_cast<int64_t>(db.size_in_use_bytes));
  out->set_leader(s.leader);
  out->set_raftindex(s.commit);
  out->set_raftterm(s.term);
  out->set_raftappliedindex(s.applied);
  out->set_islearner(s.is_learner);
  {
    std::lock_guard lock(state_mu_);
    for (const auto& [id, type] : cluster_.alarms) {
      out->add_errors("memberID:" + std::to_string(id) +
                      " alarm:" + AlarmName(type) + " ");
    }
  }
  FillHeader(out->mutable_header(), store_->CurrentRevision());
  return Status::OK();
}

Status Server::MemberList(const etcdserverpb::MemberListRequest& r,
                          etcdserverpb::MemberListResponse* out) {
  if (r.linearizable()) KEEL_RETURN_IF_ERROR(WaitReadIndex());
  {
    std::lock_guard lock(state_mu_);
    for (const auto& [id, m] : cluster_.members) {
      auto* pm = out->add_members();
      pm->set_id(id);
      pm->set_name(m.name);
      for (const auto& u : m.peer_urls) pm->add_peerurls(u);
      for (const auto& u : m.client_urls) pm->add_clienturls(u);
      pm->set_islearner(m.is_learner);
    }
  }
  // etcd's cluster responses carry no revision.
  FillHeader(out->mutable_header(), 0);
  return Status::OK();
}

Status Server::HashKV(const etcdserverpb::HashKVRequest& r,
                      etcdserverpb::HashKVResponse* out) {
  auto h = store_->HashKV(r.revision());
  if (!h.ok()) return h.status();
  out->set_hash(h->hash);
  out->set_compact_revision(h->compact_revision);
  FillHeader(out->mutable_header(), h->revision);
  return Status::OK();
}

Status Server::Defragment(etcdserverpb::DefragmentResponse* out) {
  uint64_t before = store_->Stats().size_bytes;
  KEEL_RETURN_IF_ERROR(store_->Defragment());
  spdlog::info("defragmented the store: {} -> {} bytes", before,
               store_->Stats().size_bytes);
  (void)out;  // etcd answers a defragment without a header
  return Status::OK();
}

bool Server::Healthy() const {
  if (!node_ || node_->leader() == 0) return false;
  std::lock_guard lock(state_mu_);
  return cluster_.alarms.empty();
}

// ---------------- applying ----------------

uint64_t Server::AppliedIndex() const {
  return store_->consistent_index().index;
}

void Server::ApplyClusterChange(const internal::Request& req,
                                ApplyResult* result) {
  std::lock_guard lock(state_mu_);
  if (req.has_member_attributes()) {
    const auto& a = req.member_attributes();
    auto it = cluster_.members.find(a.member_id());
    if (it == cluster_.members.end()) return;  // removed meanwhile
    it->second.name = a.name();
    it->second.client_urls.assign(a.client_urls().begin(),
                                  a.client_urls().end());
    return;
  }
  const auto& a = req.alarm();
  std::pair<uint64_t, int32_t> key{a.memberid(), a.alarm()};
  switch (a.action()) {
    case etcdserverpb::AlarmRequest::ACTIVATE:
      if (a.alarm() == etcdserverpb::NONE) break;
      if (cluster_.alarms.insert(key).second) {
        spdlog::warn("alarm {} raised for member {:x}", AlarmName(a.alarm()),
                     a.memberid());
      }
      if (result) {
        auto* m = result->alarm.add_alarms();
        m->set_memberid(a.memberid());
        m->set_alarm(a.alarm());
      }
      break;
    case etcdserverpb::AlarmRequest::DEACTIVATE:
      if (cluster_.alarms.erase(key) && result) {
        auto* m = result->alarm.add_alarms();
        m->set_memberid(a.memberid());
        m->set_alarm(a.alarm());
        spdlog::info("alarm {} cleared for member {:x}", AlarmName(a.alarm()),
                     a.memberid());
      }
      break;
    default:
      break;
  }
}

void Server::Apply(const raft::Entry& entry) {
  const mvcc::ConsistentIndex ci{entry.index, entry.term};
  const bool fresh = entry.index > AppliedIndex();
  auto record_index = [&] {
    if (!fresh) return;
    Status st = store_->SetConsistentIndex(ci);
    KEEL_CHECK(st.ok()) << "recording applied index: " << st.ToString();
  };
  if (entry.data.empty()) {
    record_index();
    return;
  }
  internal::Request req;
  if (!req.ParseFromString(entry.data)) {
    spdlog::error("undecodable request in committed entry {}; skipped",
                  entry.index);
    record_index();
    return;
  }
  auto result = std::make_shared<ApplyResult>();
  if (req.has_member_attributes() || req.has_alarm()) {
    ApplyClusterChange(req, result.get());
    record_index();
  } else if (fresh) {
    bool nospace, corrupt;
    {
      std::lock_guard lock(state_mu_);
      nospace = cluster_.HasAlarm(AlarmType::kNoSpace);
      corrupt = cluster_.HasAlarm(AlarmType::kCorrupt);
    }
    if (ApplyAuth(req, ci, result.get())) {
      // An auth op, or a write its user may not make (server_auth.cc).
    } else if (corrupt && !(req.has_txn() && !HasWrites(req.txn()))) {
      // etcd's corrupt applier refuses every write.
      result->status = EtcdErr(api::kErrCorrupt);
      record_index();
    } else if (req.has_put()) {
      if (nospace) {
        result->status = EtcdErr(api::kErrNoSpace);
        record_index();
      } else {
        ServerMetrics::Get().mvcc_put.Inc();
        auto r = store_->Put(FromPb(req.put()), ci);
        if (r.ok()) {
          ToPb(*r, &result->put);
        } else {
          result->status = r.status();
        }
      }
    } else if (req.has_delete_range()) {
      ServerMetrics::Get().mvcc_delete.Inc();
      auto r = store_->DeleteRange(FromPb(req.delete_range()), ci);
      if (r.ok()) {
        ToPb(*r, &result->delete_range);
      } else {
        result->status = r.status();
      }
    } else if (req.has_txn()) {
      if (nospace && HasWrites(req.txn())) {
        result->status = EtcdErr(api::kErrNoSpace);
        record_index();
      } else {
        ServerMetrics::Get().mvcc_txn.Inc();
        auto r = store_->Txn(FromPb(req.txn()), ci);
        if (r.ok()) {
          ToPb(*r, &result->txn);
        } else {
          result->status = r.status();
        }
      }
    } else if (req.has_compaction()) {
      auto r = store_->Compact(req.compaction().revision(),
                               req.compaction().physical(), ci);
      if (r.ok()) {
        result->revision = r->header.revision;
      } else {
        result->status = r.status();
      }
    } else if (req.has_lease_grant() || req.has_lease_revoke()) {
      ApplyLease(req, ci, result.get());
    } else {
      record_index();
    }
  }
  // The store could not write (disk full, IO error, damage): the entry is
  // not in the store, yet the loop would count it applied and answer
  // linearizable reads from a store that lacks it (a disk-full fault run
  // caught a follower serving revision 933 while the cluster was at 1,000+
  // once RocksDB refused writes after a failed memtable flush). Fatal, like
  // a failed Raft WAL write: a restart replays the entry from the log.
  // Request errors (key or lease not found, a failed precondition) are
  // deterministic and stay answers.
  const Status::Code code = result->status.code();
  KEEL_CHECK(code != Status::Code::kIOError && code != Status::Code::kNoSpace &&
             code != Status::Code::kCorruption)
      << "applying entry " << entry.index
      << " to the key-value store failed: " << result->status.ToString();
  if (req.member_id() != member_id_) return;
  if (!fresh && !req.has_member_attributes() && !req.has_alarm()) {
    // The store already holds this entry's effect: a snapshot restored it
    // (its payload may be newer than the Raft index it is filed under, so
    // Raft still delivers the entry). Its result is unknown here, and an
    // empty result would read as success at revision 0 (a jepsen
    // snapshot-catchup run caught a DeleteRange answered "deleted 0,
    // revision 0"). etcd leaves such a request to time out; answer its
    // timeout error now: the outcome is unknown to the client, as it is.
    result->status = EtcdErr(api::kErrTimeout);
  }
  Waiter w;
  {
    std::lock_guard lock(wait_mu_);
    auto it = waiters_.find(req.id());
    if (it == waiters_.end()) return;
    w = std::move(it->second);
    waiters_.erase(it);
  }
  // Outside wait_mu_: completing an asynchronous request writes its gRPC
  // response, during which gRPC threads registering new requests
  // (ProposeAsync) would block on the mutex (futex waits and wakeups were
  // ~6% of a loaded leader's CPU).
  w.set_value(std::move(result));
}

void Server::ApplyBatchDone() {
  Status st = store_->FlushWal();
  // Like a failed Raft WAL write: the store's state on disk is unknown.
  KEEL_CHECK(st.ok()) << "writing the key-value store's WAL: " << st.ToString();
}

Status Server::RestoreSnapshot(const raft::Snapshot& snap) {
  ClusterState cs;
  if (!cs.Decode(snap.data)) {
    return Status::Corruption("undecodable cluster state in snapshot " +
                              std::to_string(snap.metadata.index));
  }
  std::string path = (fs::path(SnapDir()) /
                      ("recv-" + std::to_string(snap.metadata.index) + ".snap"))
                         .string();
  std::error_code ec;
  if (fs::exists(path, ec)) {
    KEEL_RETURN_IF_ERROR(store_->RestoreSnapshot(path));
    KEEL_RETURN_IF_ERROR(LoadAuth());
    KEEL_RETURN_IF_ERROR(LoadLeases());
    fs::remove(path, ec);
  } else if (AppliedIndex() < snap.metadata.index) {
    return Status::NotFound("the store payload of snapshot " +
                            std::to_string(snap.metadata.index) +
                            " was not received (" + path + ")");
  }
  std::lock_guard lock(state_mu_);
  cluster_ = std::move(cs);
  for (const auto& [id, m] : cluster_.members) {
    if (id != member_id_ && transport_) transport_->AddPeer(id, m.peer_urls);
  }
  KEEL_LOG_INFO("restored the store from a received database snapshot",
                log::Id("local-member-id", member_id_),
                log::F("incoming-snapshot-index", snap.metadata.index),
                log::F("revision", store_->CurrentRevision()));
  return Status::OK();
}

std::string Server::SnapshotData(uint64_t) {
  std::lock_guard lock(state_mu_);
  return cluster_.Encode();
}

Status Server::Sync() { return store_->ForceCommit(); }

// ---------------- transport glue ----------------

void Server::Send(std::vector<raft::Message> msgs) {
  transport_->Send(std::move(msgs));
}

void Server::Poll() { transport_->Poll(); }

void Server::RunOneUntil(std::chrono::steady_clock::time_point deadline) {
  transport_->RunOneUntil(deadline);
}

void Server::Wake() { transport_->Wake(); }

void Server::OnMessage(raft::Message m) { node_->Step(std::move(m)); }

void Server::OnUnreachable(raft::NodeId peer) {
  node_->ReportUnreachable(peer);
}

void Server::OnSnapshotStatus(raft::NodeId peer, bool ok) {
  if (ok) {
    KEEL_LOG_INFO("sent database snapshot",
                  log::Id("local-member-id", member_id_),
                  log::Id("remote-peer-id", peer));
  } else {
    KEEL_LOG_WARN("failed to send database snapshot",
                  log::Id("local-member-id", member_id_),
                  log::Id("remote-peer-id", peer));
  }
  node_->ReportSnapshot(peer, ok);
}

Result<std::unique_ptr<transport::ByteSource>> Server::OpenForSend(
    const raft::Snapshot& snap) {
  static std::atomic<uint64_t> seq{0};
  std::string path =
      (fs::path(SnapDir()) / ("send-" + std::to_string(snap.metadata.index) +
                              "-" + std::to_string(seq++) + ".snap"))
          .string();
  auto info = store_->ExportSnapshot(path);
  if (!info.ok()) return info.status();
  KEEL_LOG_INFO("sending database snapshot",
                log::Id("local-member-id", member_id_),
                log::F("snapshot-index", snap.metadata.index),
                log::F("bytes", info->size_bytes));
  auto src = std::make_unique<FileSource>(path, /*remove_after=*/true);
  if (!src->ok()) return Status::IOError("cannot open " + path);
  return std::unique_ptr<transport::ByteSource>(std::move(src));
}

Result<std::unique_ptr<transport::ByteSink>> Server::CreateForReceive(
    const raft::SnapshotMetadata& md, raft::NodeId from) {
  std::string path =
      (fs::path(SnapDir()) / ("recv-" + std::to_string(md.index) + ".snap"))
          .string();
  auto sink = std::make_unique<FileSink>(path, member_id_, from, md.index);
  if (!sink->ok()) return Status::IOError("cannot create " + path + ".tmp");
  KEEL_LOG_INFO("receiving database snapshot",
                log::Id("local-member-id", member_id_),
                log::Id("remote-snapshot-sender-id", from),
                log::F("incoming-snapshot-index", md.index));
  return std::unique_ptr<transport::ByteSink>(std::move(sink));
}

}  // namespace keel::server
