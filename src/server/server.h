// Server: one keel member — the data directory, the Raft node, the MVCC
// store, the peer transport and the request path the gRPC API calls.
//
// Data directory layout (like etcd's member/ tree):
//   <data-dir>/member/wal/   write-ahead log (src/wal)
//   <data-dir>/member/snap/  Raft snapshot files, and received store
//                            snapshots (recv-<index>.snap)
//   <data-dir>/member/kv/    the MVCC store (RocksDB)
//
// Writes (Put, DeleteRange, a Txn that writes, Compact) are proposed as one
// Raft entry each and answered once this member has applied the entry.
// Linearizable reads wait for a ReadIndex barrier, then read the local
// store; serializable reads read it at once. Errors carry etcd's messages
// (src/api/errors.h); the API layer maps them to gRPC codes.
//
// Thread safety: the client methods may be called from any number of
// threads. The StateMachine methods run on the RaftNode loop thread; the
// transport callbacks on the transport's threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "etcdserverpb/rpc.pb.h"
#include "mvcc/store.h"
#include "mvcc/watch_hub.h"
#include "server/auth_store.h"
#include "server/cluster_state.h"
#include "server/config.h"
#include "server/internal.pb.h"
#include "server/lessor.h"
#include "server/raft_node.h"
#include "server/test_faults.h"
#include "server/waiter.h"
#include "transport/transport.h"
#include "wal/disk_storage.h"
#include "wal/env.h"

namespace grpc {
class Channel;
}

namespace keel::server {

// The outcome of applying one replicated request, handed to its waiter.
struct ApplyResult {
  Status status;
  etcdserverpb::PutResponse put;
  etcdserverpb::DeleteRangeResponse delete_range;
  etcdserverpb::TxnResponse txn;
  etcdserverpb::CompactionResponse compaction;
  etcdserverpb::AlarmResponse alarm;
  etcdserverpb::LeaseGrantResponse lease_grant;
  etcdserverpb::LeaseRevokeResponse lease_revoke;
  int64_t revision = 0;
  std::string auth_token;  // made by an Authenticate
};

// Who makes the client requests proposed on this thread while it lives
// (set by the API layer around a call): stamped on each proposal so that
// the apply checks the user's permissions as of its place in the log
// (server_auth.cc).
class ScopedRequestAuth {
 public:
  explicit ScopedRequestAuth(const internal::AuthHeader* h);
  ~ScopedRequestAuth();
  ScopedRequestAuth(const ScopedRequestAuth&) = delete;
  ScopedRequestAuth& operator=(const ScopedRequestAuth&) = delete;

 private:
  const internal::AuthHeader* prev_;
};

class Server final : public StateMachine,
                     public MessageSender,
                     public LoopIo,
                     public transport::Handler,
                     public transport::SnapshotStore {
 public:
  // Opens or creates the data directory and recovers; does not serve yet.
  static Result<std::unique_ptr<Server>> Open(const ServerConfig& config);
  // `keel snapshot restore`: makes config.data_dir (which must not exist
  // or be empty) the data directory of a member of a new cluster (as
  // described by config's --initial-cluster flags) whose store is the
  // snapshot in `snapshot_file` (as Snapshot streams it: checked with its
  // SHA-256 trailer).
  static Status RestoreDataDir(const ServerConfig& config,
                               const std::string& snapshot_file);
  ~Server() override;

  Status Start();
  void Stop();

  uint64_t member_id() const { return member_id_; }
  uint64_t cluster_id() const { return cluster_id_; }
  const ServerConfig& config() const { return config_; }

  // ---- Client requests (any thread) ----
  Status Range(const etcdserverpb::RangeRequest& r,
               etcdserverpb::RangeResponse* out);
  Status Put(const etcdserverpb::PutRequest& r, etcdserverpb::PutResponse* out);
  Status DeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                     etcdserverpb::DeleteRangeResponse* out);
  Status Txn(const etcdserverpb::TxnRequest& r, etcdserverpb::TxnResponse* out);
  Status Compact(const etcdserverpb::CompactionRequest& r,
                 etcdserverpb::CompactionResponse* out);
  Status Alarm(const etcdserverpb::AlarmRequest& r,
               etcdserverpb::AlarmResponse* out);
  Status MemberStatus(etcdserverpb::StatusResponse* out);
  Status MemberList(const etcdserverpb::MemberListRequest& r,
                    etcdserverpb::MemberListResponse* out);
  Status HashKV(const etcdserverpb::HashKVRequest& r,
                etcdserverpb::HashKVResponse* out);
  Status Defragment(etcdserverpb::DefragmentResponse* out);
  // Leases (server_lease.cc).
  Status LeaseGrant(const etcdserverpb::LeaseGrantRequest& r,
                    etcdserverpb::LeaseGrantResponse* out);
  Status LeaseRevoke(const etcdserverpb::LeaseRevokeRequest& r,
                     etcdserverpb::LeaseRevokeResponse* out);
  Status LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& r,
                         etcdserverpb::LeaseTimeToLiveResponse* out);
  Status LeaseLeases(etcdserverpb::LeaseLeasesResponse* out);
  // Renews a lease at the leader (here, or forwarded) and calls done with
  // its TTL (0: not found or expired) or the error that ends the
  // KeepAlive stream. done may run on this thread or on another; it never
  // blocks a thread per stream.
  void LeaseRenew(int64_t id, std::function<void(Status, int64_t ttl)> done);
  int64_t CurrentRevision() const { return store_->CurrentRevision(); }

  // ---- Auth (server_auth.cc) ----
  AuthStore* auth() const { return auth_.get(); }
  // Proposes one auth op (internal.proto) as the thread's ScopedRequestAuth
  // and waits for it to apply; *revision: the store revision.
  Status ProposeAuth(internal::Request req, int64_t* revision);
  // Checks the password (on this thread) and has every member learn a
  // token for the user.
  Status Authenticate(const std::string& name, const std::string& password,
                      std::string* token, int64_t* revision);
  // Waits until this member applied everything committed now (auth reads
  // are linearizable, as etcd's go through the log).
  Status AuthReadBarrier();

  // ---- Asynchronous client requests (any thread; server_async.cc) ----
  // The same requests without a thread parked per request: `done` is called
  // exactly once with the outcome, after *out is filled — on the calling
  // thread, the Raft loop thread or the reaper thread — so it must be
  // quick and must not block. The request and *out must outlive the call.
  // Keep them in step with the blocking forms above.
  using DoneCallback = std::function<void(Status)>;
  void RangeAsync(const etcdserverpb::RangeRequest& r,
                  etcdserverpb::RangeResponse* out, DoneCallback done);
  void PutAsync(const etcdserverpb::PutRequest& r,
                etcdserverpb::PutResponse* out, DoneCallback done);
  void DeleteRangeAsync(const etcdserverpb::DeleteRangeRequest& r,
                        etcdserverpb::DeleteRangeResponse* out,
                        DoneCallback done);
  void TxnAsync(const etcdserverpb::TxnRequest& r,
                etcdserverpb::TxnResponse* out, DoneCallback done);
  void CompactAsync(const etcdserverpb::CompactionRequest& r,
                    etcdserverpb::CompactionResponse* out, DoneCallback done);

  // ---- Membership and maintenance (server_members.cc) ----
  Status MemberAdd(const etcdserverpb::MemberAddRequest& r,
                   etcdserverpb::MemberAddResponse* out);
  Status MemberRemove(const etcdserverpb::MemberRemoveRequest& r,
                      etcdserverpb::MemberRemoveResponse* out);
  Status MemberUpdate(const etcdserverpb::MemberUpdateRequest& r,
                      etcdserverpb::MemberUpdateResponse* out);
  // NotLeader unless this member leads (only the leader knows whether the
  // learner caught up): the API layer forwards it to the leader.
  Status MemberPromote(const etcdserverpb::MemberPromoteRequest& r,
                       etcdserverpb::MemberPromoteResponse* out);
  // keel extension (proto/keelpb/keel.proto): step 1 adds learners (one
  // per entry of `add`, URLs comma-separated) and returns their ids; step 2
  // promotes learners and removes voters in one joint change. Step 2 is
  // NotLeader unless this member leads.
  Status MemberReplace(const std::vector<std::string>& add,
                       const std::vector<uint64_t>& promote,
                       const std::vector<uint64_t>& remove,
                       std::vector<uint64_t>* added_ids);
  Status MoveLeader(const etcdserverpb::MoveLeaderRequest& r,
                    etcdserverpb::MoveLeaderResponse* out);
  Status Hash(etcdserverpb::HashResponse* out);
  // Streams a consistent snapshot of the store (mvcc ExportSnapshot format)
  // followed by its SHA-256 (32 bytes), in pieces, to `write`, which
  // returns false to abandon. The first call carries the total size.
  Status Snapshot(
      const std::function<bool(std::string_view piece, uint64_t total)>& write);
  // The client URLs of the current leader (empty if unknown).
  std::vector<std::string> LeaderClientUrls() const;
  // A channel to another member's client URL with the credentials etcd's
  // internal clients use (TLS for https; internal_clients.cc); cached per
  // URL. nullptr if the URL is bad or the TLS files cannot be read.
  std::shared_ptr<grpc::Channel> MemberChannel(const std::string& client_url);
  bool IsLearner() const { return node_ && node_->is_learner(); }
  bool IsLeader() const { return node_ && node_->leader() == member_id_; }
  // Called once this member applied its own removal (etcd then exits).
  void set_on_removed(std::function<void()> f) { on_removed_ = std::move(f); }
  // Serving (has a leader, no alarm), for health checks.
  bool Healthy() const;
  bool HasLeader() const { return node_ && node_->leader() != 0; }
  void FillHeader(etcdserverpb::ResponseHeader* h, int64_t revision) const;
  // The store's watchers (the Watch service's streams register there).
  mvcc::WatchHub* watch_hub() const { return watch_hub_.get(); }

  // ---- StateMachine (RaftNode loop thread) ----
  uint64_t AppliedIndex() const override;
  void Apply(const raft::Entry& entry) override;
  void ApplyBatchDone() override;
  bool AcceptConfChange(const raft::Entry& entry,
                        const raft::ConfChange& cc) override;
  void ApplyConfChange(const raft::Entry& entry, const raft::ConfChange& cc,
                       const raft::ConfState& cs) override;
  Status RestoreSnapshot(const raft::Snapshot& snap) override;
  std::string SnapshotData(uint64_t applied_index) override;
  Status Sync() override;

  // ---- MessageSender ----
  void Send(std::vector<raft::Message> msgs) override;

  // ---- LoopIo: the Raft loop drives the peer transport's io ----
  void Poll() override;
  void RunOneUntil(std::chrono::steady_clock::time_point deadline) override;
  void Wake() override;

  // ---- transport::Handler ----
  void OnMessage(raft::Message m) override;
  void OnUnreachable(raft::NodeId peer) override;
  void OnSnapshotStatus(raft::NodeId peer, bool ok) override;

  // ---- transport::SnapshotStore ----
  Result<std::unique_ptr<transport::ByteSource>> OpenForSend(
      const raft::Snapshot& snap) override;
  Result<std::unique_ptr<transport::ByteSink>> CreateForReceive(
      const raft::SnapshotMetadata& md, raft::NodeId from) override;

 private:
  explicit Server(const ServerConfig& config);
  // Range's local read, once a linearizable read has passed its barrier
  // (or for a serializable one); the key is already checked.
  Status RangeLocal(const etcdserverpb::RangeRequest& r,
                    etcdserverpb::RangeResponse* out);
  Status OpenStorage();
  Status Bootstrap();
  // --initial-cluster-state existing: asks the peers in --initial-cluster
  // for the cluster id and membership, and finds our member id in it.
  Status DiscoverCluster(ClusterState* out, uint64_t* cluster_id,
                         uint64_t* member_id);
  // --force-new-cluster: applies what is committed, then rewrites the raft
  // state as a one-member cluster of this member (etcd's disaster recovery).
  Status ForceNewCluster();
  // Proposes a membership change and waits until it is applied (or
  // refused by every member's validation).
  Status ProposeConfChangeAndWait(raft::ConfChange cc,
                                  internal::MemberContext ctx);
  // etcd's strict reconfiguration checks.
  Status MayAddMember(bool is_learner);
  Status MayRemoveMember(uint64_t id);
  Status MayPromoteMember(uint64_t id);
  bool PeerConnected(uint64_t id) const;
  void FillMembers(
      google::protobuf::RepeatedPtrField<etcdserverpb::Member>* out) const;
  void AnswerConfChange(const internal::MemberContext& ctx, Status st);
  void CorruptCheckLoop();
  // Compares HashKV with every peer at our revision; on a mismatch raises
  // CORRUPT for that peer if raise_alarm. Returns false if a peer differs.
  bool CheckHashes(bool raise_alarm);
  // Proposes req and waits until this member applied it.
  Result<std::shared_ptr<ApplyResult>> ProposeAndWait(internal::Request req);
  Status WaitReadIndex();
  // Asynchronous forms (server_async.cc).
  void ProposeAsync(internal::Request req, Waiter::Callback done);
  template <typename Resp>
  void ProposeWriteAsync(internal::Request req, Resp ApplyResult::*field,
                         Resp* out, DoneCallback done);
  // A linearizable read barrier; `done` runs on the Raft loop thread. While
  // there is no leader it is retried by the reaper until the deadline.
  void ReadIndexAsync(std::chrono::steady_clock::time_point deadline,
                      DoneCallback done);
  // Times out asynchronous waiters and retries held reads (every 50 ms).
  void ReapLoop();
  void ApplyClusterChange(const internal::Request& req, ApplyResult* result);
  // Auth (server_auth.cc): (re)loads the auth state from the store; applies
  // an auth op or refuses a client write its user may not make (true: the
  // entry is handled); stamps the thread's ScopedRequestAuth on a proposal.
  Status LoadAuth();
  bool ApplyAuth(const internal::Request& req, mvcc::ConsistentIndex ci,
                 ApplyResult* result);
  Status CheckAuthAtApply(const internal::Request& req);
  static void StampRequestAuth(internal::Request* req);
  bool OverQuota() const;
  // OverQuota's recent reading of the store size (see OverQuota).
  mutable std::atomic<uint64_t> quota_size_{0};
  mutable std::atomic<int64_t> quota_size_at_{0};  // steady_clock ns; 0: none
  // NOSPACE refusal: an active alarm, or the store over its quota (which
  // raises the alarm).
  Status CheckSpace();
  // Proposes a write and copies the applied response into *out.
  template <typename Resp>
  Status ProposeWrite(internal::Request req, Resp ApplyResult::*field,
                      Resp* out);
  void RaiseNoSpaceAlarm();
  void PublishLoop();
  void AdvanceInitialTicks();
  // Completes every pending request with "server stopped".
  void FailWaiters();
  // Scrape-time metrics that read this member's state (server_observe.cc).
  void RegisterMetrics();
  void UnregisterMetrics();
  std::chrono::milliseconds RequestTimeout() const {
    return std::chrono::milliseconds(5000 + 2 * config_.election_ms);
  }
  std::string SnapDir() const;
  // Test-only flags (server_test_hooks.cc): the fault hook, if enabled.
  void InstallTestHooks(transport::Options* to);

  // Leases (server_lease.cc).
  struct LeaseWork;
  Status LoadLeases();
  void StartLeases();
  void StopLeases();
  void ApplyLease(const internal::Request& req, mvcc::ConsistentIndex ci,
                  ApplyResult* result);
  void LeaseLoop();
  void LeaseForwardLoop();
  // A channel to the leader's first client URL, nullptr if unknown.
  std::shared_ptr<grpc::Channel> LeaderChannel(uint64_t leader);

  const ServerConfig config_;
  uint64_t member_id_ = 0;
  uint64_t cluster_id_ = 0;
  std::unique_ptr<wal::DiskStorage> storage_;
  std::unique_ptr<Lessor> lessor_;  // before store_: the store asks it
  std::unique_ptr<mvcc::Store> store_;
  std::unique_ptr<AuthStore> auth_;  // loaded from store_
  // After store_: detaches from the store before it closes.
  std::unique_ptr<mvcc::WatchHub> watch_hub_;
  std::unique_ptr<RaftNode> node_;
  // Declared before transport_ so that it outlives the transport's hook.
  std::unique_ptr<TestFaults> test_faults_;
  std::unique_ptr<transport::Transport> transport_;

  // Waiters for proposals of this member, by request id.
  std::mutex wait_mu_;
  std::map<uint64_t, Waiter> waiters_;
  // Asynchronous reads that found no leader, retried by ReapLoop.
  struct HeldRead {
    std::chrono::steady_clock::time_point deadline;
    DoneCallback done;
  };
  std::vector<HeldRead> held_reads_;  // guarded by wait_mu_
  std::atomic<uint64_t> next_request_id_{1};

  mutable std::mutex state_mu_;
  ClusterState cluster_;  // guarded by state_mu_

  std::mutex publish_mu_;
  std::condition_variable publish_cv_;
  bool stopping_ = false;  // guarded by publish_mu_
  std::thread publish_thread_;
  std::thread tick_advance_thread_;
  std::thread reaper_thread_;
  std::atomic<bool> started_{false};
  std::shared_ptr<LeaseWork> lease_work_;  // shared: incomplete here
  struct InternalChannels;                 // internal_clients.cc
  static std::shared_ptr<InternalChannels> NewInternalChannels();
  const std::shared_ptr<InternalChannels> internal_channels_ =
      NewInternalChannels();
  std::function<void()> on_removed_;
  // Removed members still in the configuration (the outgoing half of a
  // joint one): kept as transport peers until it is left. Loop thread.
  std::set<uint64_t> leaving_;
  std::thread corrupt_thread_;
};

}  // namespace keel::server
