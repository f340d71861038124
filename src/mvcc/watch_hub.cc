#include "mvcc/watch_hub.h"

#include <algorithm>
#include <cstdint>
#include <unordered_set>

#include "common/check.h"

namespace keel::mvcc {

WatchHub::WatchHub(Store* store, WatchHubOptions options)
    : store_(store), options_(options) {
  {
    std::lock_guard l(mu_);
    notified_rev_ = store_->CurrentRevision();
  }
  const int64_t rev = store_->SetObserver(this);
  {
    std::lock_guard l(mu_);
    notified_rev_ = std::max(notified_rev_, rev);
  }
  thread_ = std::thread([this] { Run(); });
}

WatchHub::~WatchHub() {
  store_->SetObserver(nullptr);
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool WatchHub::Matches(const Watcher& w, const Event& e) {
  if (e.type == Event::Type::kPut ? w.spec.no_put : w.spec.no_delete) {
    return false;
  }
  const std::string& k = e.kv.key;
  if (!w.range.end.has_value()) return k == w.range.key;
  return k >= w.range.key && (w.range.end->empty() || k < *w.range.end);
}

void WatchHub::MakeSynced(Watcher* w) {
  w->synced = true;
  unsynced_.erase({w->sink, w->handle});
  if (w->range.end.has_value()) {
    synced_ranges_.emplace(w->handle, w);
  } else {
    synced_keys_[w->range.key].emplace(w->handle, w);
  }
}

void WatchHub::MakeUnsynced(Watcher* w) {
  if (w->synced) {
    if (w->range.end.has_value()) {
      synced_ranges_.erase(w->handle);
    } else {
      auto it = synced_keys_.find(w->range.key);
      it->second.erase(w->handle);
      if (it->second.empty()) synced_keys_.erase(it);
    }
  }
  w->synced = false;
  unsynced_.emplace(std::pair{w->sink, w->handle}, w);
  has_work_ = true;
  cv_.notify_one();
}

void WatchHub::Erase(Watcher* w) {
  if (w->synced) {
    MakeUnsynced(w);  // takes it out of the synced maps
  }
  unsynced_.erase({w->sink, w->handle});
  progress_.erase(w->handle);
  if (w->spec.prev_kv) prev_kv_watchers_--;
  watchers_.erase(w->handle);
}

uint64_t WatchHub::Add(WatchSink* sink, int64_t watch_id, const WatchSpec& spec,
                       const std::function<void(int64_t rev)>& created) {
  std::lock_guard l(mu_);
  auto w = std::make_unique<Watcher>();
  w->handle = next_handle_++;
  w->sink = sink;
  w->watch_id = watch_id;
  w->range = KeyRange::FromEtcd(spec.key, spec.range_end);
  w->spec = spec;
  Watcher* p = w.get();
  watchers_.emplace(p->handle, std::move(w));
  if (created) created(notified_rev_);
  // As etcd: no start revision, or one in the future, is synced at once
  // (events below next_rev are skipped); a past one reads the history.
  if (spec.start_rev == 0 || spec.start_rev > notified_rev_) {
    p->next_rev = std::max(notified_rev_ + 1, spec.start_rev);
    MakeSynced(p);
  } else {
    p->next_rev = spec.start_rev;
    MakeUnsynced(p);
  }
  if (spec.progress_notify) progress_.emplace(p->handle, p);
  if (spec.prev_kv) prev_kv_watchers_++;
  return p->handle;
}

bool WatchHub::Remove(uint64_t handle) {
  std::lock_guard l(mu_);
  auto it = watchers_.find(handle);
  if (it == watchers_.end()) return false;
  Erase(it->second.get());
  return true;
}

void WatchHub::Wake() {
  {
    std::lock_guard l(mu_);
    if (unsynced_.empty()) return;
    has_work_ = true;
  }
  cv_.notify_one();
}

void WatchHub::WithProgressRevision(const std::vector<uint64_t>& handles,
                                    const std::function<void(int64_t)>& f) {
  std::lock_guard l(mu_);
  int64_t rev = notified_rev_;
  for (uint64_t h : handles) {
    auto it = watchers_.find(h);
    if (it == watchers_.end() || it->second->synced) continue;
    rev = std::min(rev, it->second->next_rev - 1);
  }
  f(rev);
}

WatchHub::Counts WatchHub::counts() const {
  std::lock_guard l(mu_);
  return Counts{watchers_.size() - unsynced_.size(), unsynced_.size()};
}

bool WatchHub::WantsPrevKv() const {
  std::lock_guard l(mu_);
  return prev_kv_watchers_ > 0;
}

void WatchHub::OnCommit(int64_t rev, std::vector<Event> events) {
  std::lock_guard l(mu_);
  KEEL_CHECK_GT(rev, notified_rev_);
  notified_rev_ = rev;
  if (watchers_.empty()) return;
  if (events.size() == 1) return OnCommitOne(rev, std::move(events));
  // Per watcher (in handle order) the indexes of its events, in order.
  std::map<uint64_t, std::pair<Watcher*, std::vector<size_t>>> batch;
  auto consider = [&](Watcher* w, size_t i) {
    if (rev < w->next_rev || !Matches(*w, events[i])) return;
    auto& slot = batch[w->handle];
    slot.first = w;
    slot.second.push_back(i);
  };
  for (size_t i = 0; i < events.size(); i++) {
    auto it = synced_keys_.find(events[i].kv.key);
    if (it != synced_keys_.end()) {
      for (auto& [h, w] : it->second) consider(w, i);
    }
    for (auto& [h, w] : synced_ranges_) consider(w, i);
  }
  // Watchers that get the same events (same indexes, same prev_kv choice)
  // share one list; there are few distinct selections per revision.
  std::vector<std::pair<std::pair<const std::vector<size_t>*, bool>, EventList>>
      lists;
  auto list_for = [&](const std::vector<size_t>& idx, bool prev_kv) {
    for (auto& [k, list] : lists) {
      if (k.second == prev_kv && *k.first == idx) return list;
    }
    auto evs = std::make_shared<std::vector<Event>>();
    evs->reserve(idx.size());
    for (size_t i : idx) {
      evs->push_back(events[i]);
      if (!prev_kv) evs->back().prev_kv.reset();
    }
    EventList list{std::move(evs), 0};
    lists.push_back({{&idx, prev_kv}, list});
    return list;
  };
  for (auto& [h, slot] : batch) {
    Watcher* w = slot.first;
    if (w->sink->SendEvents(w->watch_id, rev,
                            list_for(slot.second, w->spec.prev_kv))) {
      w->next_rev = rev + 1;
      w->sent_since_tick = true;
    } else {
      // The sink is full: the watcher catches up from the store later;
      // the write goes on.
      w->next_rev = rev;
      MakeUnsynced(w);
    }
  }
}

void WatchHub::OnCommitOne(int64_t rev, std::vector<Event> events) {
  // One event (a put or a one-key delete: most revisions): every watcher
  // gets it or not, with or without prev_kv; no per-watcher grouping.
  const Event& e = events[0];
  EventList lists[2];  // [prev_kv]
  auto deliver = [&](Watcher* w) {
    if (rev < w->next_rev || !Matches(*w, e)) return;
    EventList& list = lists[w->spec.prev_kv ? 1 : 0];
    if (list.all == nullptr) {
      auto evs = std::make_shared<std::vector<Event>>(1, e);
      if (!w->spec.prev_kv) evs->back().prev_kv.reset();
      list.all = std::move(evs);
    }
    if (w->sink->SendEvents(w->watch_id, rev, list)) {
      w->next_rev = rev + 1;
      w->sent_since_tick = true;
    } else {
      // The sink is full: the watcher catches up from the store later;
      // the write goes on.
      w->next_rev = rev;
      unsynced_now_.push_back(w);
    }
  };
  unsynced_now_.clear();
  if (auto it = synced_keys_.find(e.kv.key); it != synced_keys_.end()) {
    for (auto& [h, w] : it->second) deliver(w);
  }
  for (auto& [h, w] : synced_ranges_) deliver(w);
  // Not while iterating the synced maps.
  for (Watcher* w : unsynced_now_) MakeUnsynced(w);
  unsynced_now_.clear();
}

void WatchHub::OnRestore(int64_t rev) {
  std::lock_guard l(mu_);
  // The store jumped to a snapshot: what lies between the last revision
  // seen and the new one is read back from the new history.
  std::vector<Watcher*> synced;
  for (auto& [h, w] : watchers_) {
    if (w->synced) synced.push_back(w.get());
  }
  for (Watcher* w : synced) {
    w->next_rev = std::max(w->next_rev, notified_rev_ + 1);
    MakeUnsynced(w);
  }
  notified_rev_ = std::max(notified_rev_, rev);
  has_work_ = true;
  cv_.notify_one();
}

void WatchHub::ProgressTick() {
  for (auto& [h, w] : progress_) {
    // As etcd: only synced watchers, and only if no events went out since
    // the previous tick.
    if (w->synced && !w->sent_since_tick && w->sink->HasRoom()) {
      w->sink->SendProgress(w->watch_id, notified_rev_);
    }
    w->sent_since_tick = false;
  }
}

bool WatchHub::SyncRound(std::unique_lock<std::mutex>& l) {
  std::vector<uint64_t> batch;
  int64_t from = INT64_MAX;
  bool prev_kv = false;
  // Sink by sink (a stream carries many watchers): one HasRoom per sink,
  // and a full sink's watchers are skipped at once, so that a round costs
  // the watchers it serves, not every unsynced one.
  WatchSink* roomy = nullptr;  // the sink checked last, with room
  for (auto it = unsynced_.begin(); it != unsynced_.end();) {
    WatchSink* sink = it->first.first;
    if (sink != roomy) {
      if (!sink->HasRoom()) {
        it = unsynced_.upper_bound({sink, UINT64_MAX});
        continue;
      }
      roomy = sink;
    }
    Watcher* w = it->second;
    ++it;
    batch.push_back(w->handle);
    from = std::min(from, w->next_rev);
    prev_kv = prev_kv || w->spec.prev_kv;
    if (batch.size() >= options_.sync_max_watchers) {
      has_work_ = true;  // the rest next round
      break;
    }
  }
  if (batch.empty()) return false;
  l.unlock();
  Result<History> hist = store_->ReadHistory(from, options_.sync_max_revs,
                                             options_.sync_max_bytes, prev_kv);
  l.lock();
  if (!hist.ok()) {
    // A storage error: the reads report it; retry a little later.
    cv_.wait_for(l, std::chrono::milliseconds(100),
                 [this] { return stopping_; });
    has_work_ = true;
    return true;
  }
  // Watchers of the same range, filters and prev_kv share one list of the
  // history's events they match, each from its own next revision on (many
  // watchers of one key fall behind together, at different revisions).
  struct Selection {
    const Watcher* w;  // range, filters and prev_kv of this one
    std::shared_ptr<const std::vector<Event>> events;
  };
  std::vector<Selection> selections;
  auto events_for = [&](const Watcher& w) -> EventList {
    const Selection* sel = nullptr;
    for (const Selection& s : selections) {
      if (s.w->range.key == w.range.key && s.w->range.end == w.range.end &&
          s.w->spec.no_put == w.spec.no_put &&
          s.w->spec.no_delete == w.spec.no_delete &&
          s.w->spec.prev_kv == w.spec.prev_kv) {
        sel = &s;
        break;
      }
    }
    if (sel == nullptr) {
      auto evs = std::make_shared<std::vector<Event>>();
      for (const Event& e : hist->events) {
        if (!Matches(w, e)) continue;
        evs->push_back(e);
        if (!w.spec.prev_kv) evs->back().prev_kv.reset();
      }
      selections.push_back(Selection{&w, std::move(evs)});
      sel = &selections.back();
    }
    // The events are in revision order: this watcher's start.
    auto first = std::partition_point(
        sel->events->begin(), sel->events->end(),
        [&](const Event& e) { return e.kv.mod_revision < w.next_rev; });
    return EventList{sel->events,
                     static_cast<size_t>(first - sel->events->begin())};
  };
  std::unordered_set<WatchSink*> full;  // refused events this round
  for (uint64_t h : batch) {
    auto it = watchers_.find(h);
    if (it == watchers_.end() || it->second->synced) continue;
    Watcher* w = it->second.get();
    if (hist->compact_rev > 0 && w->next_rev < hist->compact_rev) {
      w->sink->SendCompacted(w->watch_id, hist->compact_rev);
      Erase(w);
      continue;
    }
    EventList evs = events_for(*w);
    const int64_t next = std::max(w->next_rev, hist->last_rev + 1);
    if (!evs.empty()) {
      if (full.count(w->sink) ||
          !w->sink->SendEvents(w->watch_id, hist->last_rev, std::move(evs))) {
        full.insert(w->sink);  // its other watchers wait too
        continue;              // the sink wakes us when it has room
      }
      w->sent_since_tick = true;
    }
    w->next_rev = next;
    if (w->next_rev > notified_rev_) {
      MakeSynced(w);
    } else {
      has_work_ = true;  // more history to read
    }
  }
  return true;
}

void WatchHub::Run() {
  std::unique_lock l(mu_);
  auto next_tick =
      std::chrono::steady_clock::now() + options_.progress_interval;
  while (!stopping_) {
    cv_.wait_until(l, next_tick, [this] { return stopping_ || has_work_; });
    if (stopping_) break;
    if (std::chrono::steady_clock::now() >= next_tick) {
      ProgressTick();
      next_tick = std::chrono::steady_clock::now() + options_.progress_interval;
    }
    if (!has_work_) continue;
    has_work_ = false;
    SyncRound(l);
  }
}

}  // namespace keel::mvcc
