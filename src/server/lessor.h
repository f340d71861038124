// Lessor: the leases this member knows (etcd's lessor) and, while this
// member is the leader ("primary"), when each one expires.
//
// Leases are created and removed only by applying Raft entries (grant,
// revoke), so every member has the same set; the store persists them
// (mvcc::LeaseRecord) atomically with the applied index, and Reset()
// reloads them after opening or restoring a snapshot. Expiry is decided by
// the primary alone, on its own clock: followers keep every lease
// "forever"; Promote() gives every lease its full TTL plus an extension
// (the election timeout) when a member becomes leader, so a leader change
// never expires a lease early — the new leader only knows that the client
// renewed no later than now. The primary proposes a revoke for each
// expired lease (Expired()); the revoke deletes the lease and its keys when
// applied.
//
// Checkpointing: etcd 3.4 can (off by default,
// --experimental-enable-lease-checkpoint) replicate each lease's remaining
// TTL every few minutes so that a new leader does not restart it from the
// full TTL. keel does what etcd does by default: the full TTL on promotion.
// The store's record has room for a checkpointed remaining TTL, and
// Promote() uses it when set, so adding the replicated checkpoint later
// needs no format change.
//
// Time is a parameter (`now`), so the lessor is deterministic under test.
//
// Thread safety: all methods may be called from any thread; one internal
// mutex. It never calls out while holding it, so the store may call
// Exists() under its own locks.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "common/status.h"
#include "mvcc/store.h"

namespace keel::server {

class Lessor {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  // etcd's MaxLeaseTTL (seconds).
  static constexpr int64_t kMaxTTL = 9000000000;

  // min_ttl_s: the TTL a shorter grant is raised to (etcd: enough for a
  // leader election, ceil(1.5 * election timeout)).
  explicit Lessor(int64_t min_ttl_s) : min_ttl_s_(min_ttl_s) {}

  int64_t min_ttl_s() const { return min_ttl_s_; }

  // Replaces every lease with `leases` (the store's records).
  void Reset(const std::vector<mvcc::LeaseRecord>& leases, TimePoint now);
  bool Exists(int64_t id) const;

  // ---- Applying grants and revokes ----
  // The TTL a grant of (id, ttl) gets, or etcd's error for it.
  Result<int64_t> CheckGrant(int64_t id, int64_t ttl) const;
  // Adds a lease the store has persisted.
  void Add(const mvcc::LeaseRecord& rec, TimePoint now);
  void Remove(int64_t id);

  // ---- Leader side ----
  bool primary() const;
  // Becomes primary: every lease expires `extend` after its TTL from now.
  void Promote(TimePoint now, std::chrono::milliseconds extend);
  // Stops deciding expiry: every lease lives until promoted again.
  void Demote();
  // Renews `id` for its TTL from now, returning the TTL; 0 when the lease
  // does not exist or has expired (its revoke is under way); nullopt when
  // not primary (the leader must renew it).
  std::optional<int64_t> Renew(int64_t id, TimePoint now);

  struct Info {
    int64_t id = 0;
    int64_t granted_ttl = 0;
    // Seconds left, truncated (as etcd's int64(Remaining().Seconds()));
    // meaningful on the primary only.
    int64_t remaining_s = 0;
  };
  std::optional<Info> Lookup(int64_t id, TimePoint now) const;
  // Ids by expiry (then id), as etcd lists them.
  std::vector<int64_t> Ids() const;
  // Up to `max` expired leases whose revoke should be proposed now: each
  // is offered again after `retry` in case its revoke got lost (a leader
  // change dropped the proposal).
  std::vector<int64_t> Expired(TimePoint now, size_t max,
                               std::chrono::milliseconds retry);

 private:
  struct Lease {
    int64_t ttl = 0;
    int64_t remaining_ttl = 0;  // from a checkpoint; 0 none
    TimePoint expiry = TimePoint::max();
    TimePoint revoke_asked = TimePoint::min();
  };

  // Sets a lease's expiry, keeping by_expiry_ in step (mu_ held).
  void SetExpiry(int64_t id, Lease* le, TimePoint expiry);

  const int64_t min_ttl_s_;
  mutable std::mutex mu_;
  std::map<int64_t, Lease> leases_;  // guarded by mu_
  // The leases with a finite expiry (the primary's), soonest first, so an
  // expiry pass costs only what has expired.
  std::set<std::pair<TimePoint, int64_t>> by_expiry_;  // guarded by mu_
  bool primary_ = false;                               // guarded by mu_
};

// etcd's minimum lease TTL for a member: ceil(1.5 election timeouts), with
// the election timeout counted in whole heartbeats.
int64_t MinLeaseTTLSeconds(int election_ms, int heartbeat_ms);

}  // namespace keel::server
