#include "api/watch_service.h"

#include <spdlog/spdlog.h>

#include <deque>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "api/auth_service.h"
#include "api/errors.h"
#include "mvcc/watch_hub.h"
#include "server/convert.h"

namespace keel::api {

namespace {

// A stream's outgoing queue above either limit takes no more events (its
// watchers fall behind and catch up from the store later). The bytes are
// those the queued responses will have; the memory is less, as watchers
// of the same events share them. 4 MiB of copied responses per stream were
// most of a member's peak RSS with 100 streams of slow watchers, hence
// 512 KiB then; since events are shared, 2 MiB costs less memory and CPU
// than 512 KiB (fewer watchers fall behind and catch up; bench/README.md).
constexpr size_t kMaxQueueBytes = 2 << 20;
constexpr size_t kMaxQueueResponses = 16384;
// A watcher's queued events response takes the events of later revisions
// (etcd sends a catching-up watcher many revisions in one response too)
// up to this size; then a new response starts.
constexpr size_t kMaxMergedBytes = 64 << 10;

// What an event adds to a response, about (for the queue's bound).
size_t EventBytes(const mvcc::Event& e) {
  size_t n = e.kv.key.size() + e.kv.value.size() + 32;
  if (e.prev_kv.has_value()) {
    n += e.prev_kv->key.size() + e.prev_kv->value.size() + 32;
  }
  return n;
}

}  // namespace

class WatchStream final
    : public grpc::ServerBidiReactor<etcdserverpb::WatchRequest,
                                     etcdserverpb::WatchResponse>,
      public mvcc::WatchSink {
 public:
  WatchStream(WatchService* svc, server::Server* s,
              const grpc::CallbackServerContext* ctx)
      : svc_(svc), s_(s), hub_(s->watch_hub()), ctx_(ctx) {}

  void Begin() { StartRead(&req_); }

  // Ends the stream with `status` and unregisters its watchers.
  void Stop(const grpc::Status& status) {
    std::vector<uint64_t> handles;
    {
      std::lock_guard l(mu_);
      if (finishing_) return;
      finishing_ = true;
      finish_status_ = status;
      for (auto& [id, w] : ids_) {
        if (w.handle != 0) handles.push_back(w.handle);
      }
      ids_.clear();
      // Only the response being written stays (its buffer is in use).
      queue_.clear();
      open_.clear();
      queued_bytes_ = writing_ ? writing_bytes_ : 0;
      MaybeFinishLocked();
    }
    for (uint64_t h : handles) hub_->Remove(h);
  }

  // ---- reactions ----

  void OnReadDone(bool ok) override {
    // !ok: the client half-closed (or is gone). As etcd, a half-closed
    // stream keeps its watchers until the call ends.
    if (!ok) return;
    Handle(req_);
    std::lock_guard l(mu_);
    if (!finishing_) StartRead(&req_);
  }

  void OnWriteDone(bool ok) override {
    bool wake = false;
    std::optional<Out> next;
    {
      std::lock_guard l(mu_);
      queued_bytes_ -= writing_bytes_;
      writing_ = false;
      if (ok && !finishing_) {
        if (!queue_.empty()) next = TakeNextLocked();
        if (blocked_ && RoomLocked()) {
          blocked_ = false;
          wake = true;
        }
      } else if (finishing_) {
        MaybeFinishLocked();
      }
    }
    // Built outside the lock: a merged response may hold many events, and
    // the hub (on the apply path) must not wait for it in SendEvents.
    if (next.has_value()) Write(std::move(*next));
    if (!ok) {
      Stop(grpc::Status(grpc::StatusCode::CANCELLED, "watch stream broken"));
    }
    if (wake) hub_->Wake();
  }

  void OnCancel() override {
    Stop(grpc::Status(grpc::StatusCode::CANCELLED, "context canceled"));
  }

  void OnDone() override {
    // Every reaction has run: no create can be half-way. Make sure the hub
    // holds nothing of ours, then go.
    std::vector<uint64_t> handles;
    {
      std::lock_guard l(mu_);
      for (auto& [id, w] : ids_) {
        if (w.handle != 0) handles.push_back(w.handle);
      }
      ids_.clear();
    }
    for (uint64_t h : handles) hub_->Remove(h);
    svc_->Forget(this);
    delete this;
  }

  // ---- mvcc::WatchSink (hub lock held) ----

  bool HasRoom() override {
    std::lock_guard l(mu_);
    if (finishing_) return true;  // takes (and drops) anything
    if (!RoomLocked()) {
      blocked_ = true;
      return false;
    }
    return true;
  }

  bool SendEvents(int64_t watch_id, int64_t header_rev,
                  mvcc::EventList events) override {
    std::lock_guard l(mu_);
    if (finishing_) return true;
    if (!RoomLocked()) {
      blocked_ = true;
      return false;
    }
    auto it = ids_.find(watch_id);
    if (it != ids_.end() && !StillPermittedLocked(watch_id, it->second)) {
      return true;  // dropped
    }
    size_t bytes = 0;
    for (const mvcc::Event& e : events) bytes += EventBytes(e);
    if (it != ids_.end() && it->second.fragment) {
      // Built now: fragmenting needs the response's size.
      etcdserverpb::WatchResponse r;
      s_->FillHeader(r.mutable_header(), header_rev);
      r.set_watch_id(watch_id);
      AddEvents(events, &r);
      SendFragmentsLocked(std::move(r));
      return true;
    }
    // While this watcher's last events response waits in the queue (no
    // other kind of response queued behind it), later revisions join it:
    // a stream whose client reads slower than events come sends fewer,
    // larger responses instead of one per watcher and revision. Events of
    // one revision stay in one response; each watcher's events stay in
    // order, and before anything queued after them.
    auto o = open_.find(watch_id);
    if (o != open_.end()) {
      Out* out = QueuedLocked(o->second);
      if (out != nullptr && out->bytes < kMaxMergedBytes) {
        out->header_rev = std::max(out->header_rev, header_rev);
        out->events.push_back(std::move(events));
        out->bytes += bytes;
        queued_bytes_ += bytes;
        return true;
      }
      open_.erase(o);
    }
    Out out;
    out.watch_id = watch_id;
    out.header_rev = header_rev;
    out.events.push_back(std::move(events));
    out.bytes = bytes + 64;  // and the header
    open_[watch_id] = PushLocked(std::move(out));
    return true;
  }

  void SendCompacted(int64_t watch_id, int64_t compact_rev) override {
    std::lock_guard l(mu_);
    ids_.erase(watch_id);
    etcdserverpb::WatchResponse r;
    // etcd's compaction response has no revision in its header.
    s_->FillHeader(r.mutable_header(), 0);
    r.set_watch_id(watch_id);
    r.set_compact_revision(compact_rev);
    r.set_canceled(true);
    EnqueueLocked(std::move(r));
  }

  void SendProgress(int64_t watch_id, int64_t rev) override {
    std::lock_guard l(mu_);
    auto it = ids_.find(watch_id);
    if (it != ids_.end() && !StillPermittedLocked(watch_id, it->second)) {
      return;
    }
    etcdserverpb::WatchResponse r;
    s_->FillHeader(r.mutable_header(), rev);
    r.set_watch_id(watch_id);
    EnqueueLocked(std::move(r));
  }

 private:
  // A queued response: built already (`ready`), or the events of one
  // watcher, turned into a response when its write starts.
  struct Out {
    uint64_t seq = 0;
    std::optional<etcdserverpb::WatchResponse> ready;
    int64_t watch_id = 0;
    int64_t header_rev = 0;
    std::vector<mvcc::EventList> events;
    size_t bytes = 0;
  };

  struct WatchState {
    uint64_t handle = 0;  // 0 while being created
    bool fragment = false;
    // Auth: who watches what, and the auth revision it was allowed at. A
    // watch whose permission is revoked is cancelled (keel: etcd 3.4 keeps
    // sending); its id stays taken, so that events the hub still holds for
    // it never reach a new watch of the same id.
    std::string user;
    std::string key, range_end;
    uint64_t auth_revision = 0;
    bool revoked = false;
  };

  void Handle(const etcdserverpb::WatchRequest& req) {
    switch (req.request_union_case()) {
      case etcdserverpb::WatchRequest::kCreateRequest:
        Create(req.create_request());
        break;
      case etcdserverpb::WatchRequest::kCancelRequest:
        Cancel(req.cancel_request().watch_id());
        break;
      case etcdserverpb::WatchRequest::kProgressRequest:
        Progress();
        break;
      default:
        break;  // etcd ignores an empty request
    }
  }

  void Create(const etcdserverpb::WatchCreateRequest& c) {
    mvcc::WatchSpec spec;
    // As etcd: an empty key is the smallest key, "\0".
    spec.key = c.key().empty() ? std::string(1, '\0') : c.key();
    spec.range_end = c.range_end();
    spec.start_rev = c.start_revision();
    for (int f : c.filters()) {
      if (f == etcdserverpb::WatchCreateRequest::NOPUT) spec.no_put = true;
      if (f == etcdserverpb::WatchCreateRequest::NODELETE) {
        spec.no_delete = true;
      }
    }
    spec.prev_kv = c.prev_kv();
    spec.progress_notify = c.progress_notify();

    if (!WatchPermitted(c)) {
      // etcd's answer: the gRPC error's text as the cancel reason.
      etcdserverpb::WatchResponse r;
      hub_->WithProgressRevision(
          {}, [&](int64_t rev) { s_->FillHeader(r.mutable_header(), rev); });
      r.set_watch_id(c.watch_id());
      r.set_created(true);
      r.set_canceled(true);
      r.set_cancel_reason(
          "rpc error: code = PermissionDenied desc = etcdserver: permission "
          "denied");
      std::lock_guard l(mu_);
      if (!finishing_) EnqueueLocked(std::move(r));
      return;
    }
    const bool from_key = spec.range_end.size() == 1 && spec.range_end[0] == 0;
    std::string err;
    int64_t id = c.watch_id();
    {
      std::lock_guard l(mu_);
      if (finishing_) return;
      if (!spec.range_end.empty() && !from_key && spec.key >= spec.range_end) {
        err = "mvcc: watcher range is empty";
      } else if (id != 0 && ids_.count(id)) {
        err = "mvcc: duplicate watch ID provided on the WatchStream";
      } else {
        if (id == 0) {  // etcd's AutoWatchID: the lowest free id from 0 on
          while (ids_.count(next_id_)) next_id_++;
          id = next_id_++;
        }
        ids_[id] = WatchState{0,       c.fragment(),  caller_,
                              c.key(), c.range_end(), s_->auth()->revision()};
      }
    }
    if (!err.empty()) {
      etcdserverpb::WatchResponse r;
      hub_->WithProgressRevision(
          {}, [&](int64_t rev) { s_->FillHeader(r.mutable_header(), rev); });
      r.set_watch_id(-1);
      r.set_created(true);
      r.set_canceled(true);
      r.set_cancel_reason(err);
      std::lock_guard l(mu_);
      EnqueueLocked(std::move(r));
      return;
    }
    const uint64_t handle = hub_->Add(this, id, spec, [&](int64_t rev) {
      etcdserverpb::WatchResponse r;
      s_->FillHeader(r.mutable_header(), rev);
      r.set_watch_id(id);
      r.set_created(true);
      std::lock_guard l(mu_);
      EnqueueLocked(std::move(r));
    });
    bool orphan = false;
    {
      std::lock_guard l(mu_);
      auto it = ids_.find(id);
      if (it != ids_.end() && !finishing_) {
        it->second.handle = handle;
      } else {
        // Compacted already (the id is free again), or the stream ended.
        orphan = true;
      }
    }
    if (orphan) hub_->Remove(handle);
  }

  // etcd's isWatchPermitted: read permission on the watched range for the
  // stream's caller, as of the create request.
  bool WatchPermitted(const etcdserverpb::WatchCreateRequest& c) {
    auto ai = CallerOf(ctx_, s_);
    if (!s_->auth()->enabled()) return true;
    if (!ai.ok()) return false;
    {
      std::lock_guard l(mu_);
      caller_ = ai->user;
    }
    return s_->auth()->IsRangePermitted(*ai, c.key(), c.range_end()).ok();
  }

  // With mu_ held, before anything is sent for watch `w`: false if the
  // watch is (now) revoked; cancels it the first time.
  bool StillPermittedLocked(int64_t watch_id, WatchState& w) {
    if (w.revoked) return false;
    const server::AuthStore* auth = s_->auth();
    const uint64_t rev = auth->revision();
    if (!auth->enabled() || rev == w.auth_revision) return true;
    if (auth->IsRangePermitted({w.user, rev}, w.key, w.range_end).ok()) {
      w.auth_revision = rev;
      return true;
    }
    w.revoked = true;
    etcdserverpb::WatchResponse r;
    s_->FillHeader(r.mutable_header(), 0);
    r.set_watch_id(watch_id);
    r.set_canceled(true);
    r.set_cancel_reason(
        "rpc error: code = PermissionDenied desc = etcdserver: permission "
        "denied");
    EnqueueLocked(std::move(r));
    return false;
  }

  void Cancel(int64_t id) {
    uint64_t handle = 0;
    {
      std::lock_guard l(mu_);
      auto it = ids_.find(id);
      if (it == ids_.end()) return;  // etcd 3.4 answers nothing
      handle = it->second.handle;
      ids_.erase(it);
    }
    if (!hub_->Remove(handle)) return;  // compacted meanwhile: answered
    etcdserverpb::WatchResponse r;
    hub_->WithProgressRevision(
        {}, [&](int64_t rev) { s_->FillHeader(r.mutable_header(), rev); });
    r.set_watch_id(id);
    r.set_canceled(true);
    std::lock_guard l(mu_);
    EnqueueLocked(std::move(r));
  }

  void Progress() {
    std::vector<uint64_t> handles;
    {
      std::lock_guard l(mu_);
      for (auto& [id, w] : ids_) handles.push_back(w.handle);
    }
    // Under the hub's lock, so the response follows every event it
    // covers in the queue.
    hub_->WithProgressRevision(handles, [&](int64_t rev) {
      etcdserverpb::WatchResponse r;
      s_->FillHeader(r.mutable_header(), rev);
      r.set_watch_id(-1);  // etcd 3.4: not tied to a watcher
      std::lock_guard l(mu_);
      EnqueueLocked(std::move(r));
    });
  }

  bool RoomLocked() const {
    return queued_bytes_ < kMaxQueueBytes && queue_.size() < kMaxQueueResponses;
  }

  void EnqueueLocked(etcdserverpb::WatchResponse r) {
    if (finishing_) return;
    Out out;
    out.bytes = r.ByteSizeLong();
    out.ready = std::move(r);
    // Nothing queued before this response may take later events.
    open_.clear();
    PushLocked(std::move(out));
  }

  // Queues `out`; returns its sequence number.
  uint64_t PushLocked(Out out) {
    out.seq = next_seq_++;
    queued_bytes_ += out.bytes;
    queue_.push_back(std::move(out));
    if (!writing_) StartNextWriteLocked();
    return next_seq_ - 1;
  }

  // The queued (not yet writing) response numbered `seq`, or null.
  Out* QueuedLocked(uint64_t seq) {
    if (queue_.empty() || seq < queue_.front().seq) return nullptr;
    const uint64_t i = seq - queue_.front().seq;
    return i < queue_.size() ? &queue_[i] : nullptr;
  }

  static void AddEvents(const mvcc::EventList& events,
                        etcdserverpb::WatchResponse* r) {
    for (const mvcc::Event& e : events) {
      mvccpb::Event* pe = r->add_events();
      if (e.type == mvcc::Event::Type::kDelete) {
        pe->set_type(mvccpb::Event::DELETE);
        pe->mutable_kv()->set_key(e.kv.key);
        pe->mutable_kv()->set_mod_revision(e.kv.mod_revision);
      } else {
        pe->set_type(mvccpb::Event::PUT);
        server::ToPb(e.kv, pe->mutable_kv());
      }
      // As etcd: a create event carries no prev_kv.
      const bool create =
          e.type == mvcc::Event::Type::kPut && e.kv.version == 1;
      if (e.prev_kv.has_value() && !create) {
        server::ToPb(*e.prev_kv, pe->mutable_prev_kv());
      }
    }
  }

  // Takes the queue's front as the next response to write (none in
  // flight); the caller then Write()s it, with or without the lock.
  Out TakeNextLocked() {
    Out out = std::move(queue_.front());
    queue_.pop_front();
    if (!out.ready.has_value()) {
      if (auto o = open_.find(out.watch_id);
          o != open_.end() && o->second == out.seq) {
        open_.erase(o);
      }
    }
    writing_bytes_ = out.bytes;
    writing_ = true;
    return out;
  }

  // Builds `out` and starts its write. Only the taker of the write (who
  // set writing_) touches writing_resp_ until OnWriteDone.
  void Write(Out out) {
    if (out.ready.has_value()) {
      writing_resp_ = std::move(*out.ready);
    } else {
      writing_resp_.Clear();
      s_->FillHeader(writing_resp_.mutable_header(), out.header_rev);
      writing_resp_.set_watch_id(out.watch_id);
      for (const mvcc::EventList& list : out.events) {
        AddEvents(list, &writing_resp_);
      }
    }
    StartWrite(&writing_resp_);
  }

  // With the stream idle: writes the queue's front now (a response just
  // queued, small: the queue was empty).
  void StartNextWriteLocked() { Write(TakeNextLocked()); }

  // etcd's sendFragments: a response of at least the limit with more than
  // one event goes out in parts, each but the last with fragment set, each
  // as large as fits (at least one event). etcd's limit is
  // --max-request-bytes plus its gRPC overhead allowance (512 KiB).
  void SendFragmentsLocked(etcdserverpb::WatchResponse r) {
    constexpr size_t kGrpcOverheadBytes = 512 * 1024;
    const size_t max = s_->config().max_request_bytes + kGrpcOverheadBytes;
    if (r.ByteSizeLong() < max || r.events_size() < 2) {
      EnqueueLocked(std::move(r));
      return;
    }
    etcdserverpb::WatchResponse base = r;
    base.clear_events();
    base.set_fragment(true);
    int idx = 0;
    while (true) {
      etcdserverpb::WatchResponse cur = base;
      for (; idx < r.events_size(); idx++) {
        *cur.add_events() = r.events(idx);
        if (cur.events_size() > 1 && cur.ByteSizeLong() >= max) {
          cur.mutable_events()->RemoveLast();
          break;
        }
      }
      const bool last = idx == r.events_size();
      if (last) cur.set_fragment(false);
      EnqueueLocked(std::move(cur));
      if (last) break;
    }
  }

  void MaybeFinishLocked() {
    if (finishing_ && !writing_ && !finish_called_) {
      finish_called_ = true;
      Finish(finish_status_);
    }
  }

  WatchService* const svc_;
  server::Server* const s_;
  mvcc::WatchHub* const hub_;
  const grpc::CallbackServerContext* const ctx_;  // lives as long as the call
  std::string caller_;  // guarded by mu_: the user of the last create
  etcdserverpb::WatchRequest req_;  // the read in flight

  std::mutex mu_;
  std::map<int64_t, WatchState> ids_;
  int64_t next_id_ = 0;
  // Responses to send after the one being written (writing_resp_, while
  // writing_).
  std::deque<Out> queue_;
  uint64_t next_seq_ = 0;
  // Per watch id: its events response still queued and open to more.
  std::unordered_map<int64_t, uint64_t> open_;
  etcdserverpb::WatchResponse writing_resp_;
  size_t writing_bytes_ = 0;
  size_t queued_bytes_ = 0;  // about, the one being written included
  bool writing_ = false;
  bool blocked_ = false;  // refused the hub: wake it when there is room
  bool finishing_ = false;
  bool finish_called_ = false;
  grpc::Status finish_status_;
};

WatchService::~WatchService() { Shutdown(); }

grpc::ServerBidiReactor<etcdserverpb::WatchRequest,
                        etcdserverpb::WatchResponse>*
WatchService::Watch(grpc::CallbackServerContext* ctx) {
  auto* s = new WatchStream(this, s_, ctx);
  bool refuse = false;
  {
    std::lock_guard l(mu_);
    refuse = shutdown_;
    streams_.insert(s);
  }
  auto it = ctx->client_metadata().find("hasleader");
  const bool need_leader =
      it != ctx->client_metadata().end() &&
      std::string_view(it->second.data(), it->second.size()) == "true";
  if (refuse) {
    s->Stop(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "etcdserver: server stopped"));
  } else if (need_leader && !s_->HasLeader()) {
    s->Stop(kErrNoLeader.ToStatus());
  } else {
    s->Begin();
  }
  return s;
}

void WatchService::Shutdown() {
  std::lock_guard l(mu_);
  shutdown_ = true;
  // Clients retry an unavailable member elsewhere, resuming their watches.
  for (WatchStream* s : streams_) {
    s->Stop(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "etcdserver: server stopped"));
  }
}

void WatchService::Forget(WatchStream* s) {
  std::lock_guard l(mu_);
  streams_.erase(s);
}

}  // namespace keel::api
