// WatchHub: delivers the store's events to watchers (etcd's
// watchableStore, mvcc/watchable_store.go).
//
// The store tells the hub of every committed revision (StoreObserver), in
// revision order, under the store's write lock. Watchers are in one of two
// groups:
//  - synced: has every event up to the last committed revision; gets the
//    events of each new revision at commit, all of one revision in one
//    response (a txn is atomic for watchers).
//  - unsynced: behind; a start revision in the past, a sink whose buffer
//    was full at a commit, or a snapshot restore. The hub's one catch-up
//    thread reads the missing revisions from the store's history
//    (Store::ReadHistory) in batches of whole revisions, hands them over
//    when the sink has room, and moves the watcher to synced once it has
//    reached the last committed revision. A watcher whose next revision
//    is compacted gets `compact_revision` and is removed.
// So a write never waits for a watcher: a full sink only moves its
// watcher to unsynced, and catching up costs reads, not buffered events.
// No thread per watcher or per sink; a watcher costs a small struct.
//
// The same thread sends progress notifications (etcd's progress_notify)
// every `progress_interval` to synced watchers that asked for them and
// got no events since the last one.
//
// Thread safety: every public method may be called from any thread. The
// hub calls WatchSink methods with its lock held. Lock order: store write
// lock -> hub lock -> sink's lock; a sink must not call into the hub from
// inside a WatchSink method.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mvcc/key_index.h"
#include "mvcc/store.h"

namespace keel::mvcc {

// Events handed to sinks: those of `all` from index `from` on. Read-only
// and shared: every watcher that gets the same events (10,000 watchers of
// one key get one list per revision) holds the same list, so a commit
// costs a pointer per watcher, not a copy of each event; watchers catching
// up with the same filters share one list from different starts.
struct EventList {
  std::shared_ptr<const std::vector<Event>> all;
  size_t from = 0;

  std::vector<Event>::const_iterator begin() const {
    return all->begin() + static_cast<std::ptrdiff_t>(from);
  }
  std::vector<Event>::const_iterator end() const { return all->end(); }
  bool empty() const { return all == nullptr || from >= all->size(); }
};

// Where watchers' responses go (one per client Watch stream). Every method
// is called with the hub's lock held: be quick, never block, never call
// the hub.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // Whether the sink takes more now. When it returned false (or
  // SendEvents refused), the sink calls WatchHub::Wake once it has room.
  virtual bool HasRoom() = 0;
  // Events for watcher `watch_id` (whole revisions, in order), all of
  // revisions <= header_rev. false: the buffer is full; nothing was taken.
  virtual bool SendEvents(int64_t watch_id, int64_t header_rev,
                          EventList events) = 0;
  // The watcher's next revision is compacted; it is removed from the hub.
  // Always taken.
  virtual void SendCompacted(int64_t watch_id, int64_t compact_rev) = 0;
  // A progress notification at `rev` (may be dropped when full).
  virtual void SendProgress(int64_t watch_id, int64_t rev) = 0;
};

// What a watcher watches (etcd's WatchCreateRequest, already validated).
struct WatchSpec {
  std::string key;
  std::string range_end;  // as KeyRange::FromEtcd
  int64_t start_rev = 0;  // 0: from the next revision on
  bool no_put = false;
  bool no_delete = false;
  bool prev_kv = false;
  bool progress_notify = false;
};

struct WatchHubOptions {
  std::chrono::milliseconds progress_interval{std::chrono::minutes(10)};
  // One history read of the catch-up: at most this many revisions (whole
  // revisions; the last one may pass the byte limit).
  int64_t sync_max_revs = 1000;
  size_t sync_max_bytes = 1 << 20;
  // Unsynced watchers served per history read (etcd's maxWatchersPerSync).
  size_t sync_max_watchers = 512;
};

class WatchHub final : public StoreObserver {
 public:
  // Attaches to `store` (which must outlive the hub) and starts the
  // catch-up thread.
  WatchHub(Store* store, WatchHubOptions options);
  ~WatchHub() override;  // detaches and joins the thread
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Registers a watcher. `created(rev)` runs under the hub's lock before
  // any event can reach the sink, with the store's revision at creation
  // (the created response's header). Returns the watcher's handle (> 0).
  uint64_t Add(WatchSink* sink, int64_t watch_id, const WatchSpec& spec,
               const std::function<void(int64_t rev)>& created);
  // false if the watcher is gone already (compacted).
  bool Remove(uint64_t handle);
  // A sink has room again.
  void Wake();
  // Calls f(rev) under the hub's lock, where every event of revisions <=
  // rev for the given watchers was handed to their sinks already (so a
  // progress response sent from f follows those events).
  void WithProgressRevision(const std::vector<uint64_t>& handles,
                            const std::function<void(int64_t rev)>& f);

  struct Counts {
    size_t synced = 0;
    size_t unsynced = 0;
  };
  Counts counts() const;

  // ---- StoreObserver ----
  void OnCommit(int64_t rev, std::vector<Event> events) override;
  bool WantsPrevKv() const override;
  void OnRestore(int64_t rev) override;

 private:
  struct Watcher {
    uint64_t handle = 0;
    WatchSink* sink = nullptr;
    int64_t watch_id = 0;
    KeyRange range;
    WatchSpec spec;
    // Every event of revisions < next_rev was handed to the sink (or is
    // none of the watcher's business).
    int64_t next_rev = 0;
    bool synced = false;
    bool sent_since_tick = false;  // events since the last progress tick
  };

  static bool Matches(const Watcher& w, const Event& e);
  void OnCommitOne(int64_t rev, std::vector<Event> events);  // mu_ held
  void MakeSynced(Watcher* w);                               // mu_ held
  void MakeUnsynced(Watcher* w);                             // mu_ held
  void Erase(Watcher* w);                                    // mu_ held
  void Run();
  // One round of catch-up; false if there was nothing to do.
  bool SyncRound(std::unique_lock<std::mutex>& l);
  void ProgressTick();  // mu_ held

  Store* const store_;
  const WatchHubOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool has_work_ = false;
  // The last revision given to OnCommit (or restored).
  int64_t notified_rev_ = 0;
  uint64_t next_handle_ = 1;
  size_t prev_kv_watchers_ = 0;
  std::map<uint64_t, std::unique_ptr<Watcher>> watchers_;
  // synced watchers of one key, and of ranges (scanned per event).
  std::map<std::string, std::map<uint64_t, Watcher*>, std::less<>> synced_keys_;
  std::map<uint64_t, Watcher*> synced_ranges_;
  // By sink, then handle: SyncRound skips a full sink's watchers at once.
  std::map<std::pair<WatchSink*, uint64_t>, Watcher*> unsynced_;
  std::map<uint64_t, Watcher*> progress_;  // progress_notify watchers
  std::vector<Watcher*> unsynced_now_;     // OnCommitOne's scratch
  std::thread thread_;
};

}  // namespace keel::mvcc
