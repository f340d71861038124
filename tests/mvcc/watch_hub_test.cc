// WatchHub: live delivery, history catch-up, compaction, filters, prev_kv,
// a full sink that must not block writes, and snapshot restore.
#include "mvcc/watch_hub.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "mvcc_test_util.h"

namespace keel::mvcc {
namespace {

using testing::D;
using testing::kAll;
using testing::OpenStore;
using testing::P;
using testing::TempDir;

// A sink that keeps what it gets, with a settable capacity (responses).
class FakeSink : public WatchSink {
 public:
  struct Resp {
    int64_t watch_id = 0;
    int64_t header_rev = 0;
    std::vector<Event> events;
    int64_t compact_rev = 0;
    bool progress = false;
  };

  bool HasRoom() override {
    std::lock_guard l(mu_);
    return got_.size() < capacity_;
  }
  bool SendEvents(int64_t id, int64_t rev, EventList evs) override {
    std::lock_guard l(mu_);
    if (got_.size() >= capacity_) return false;
    got_.push_back(
        Resp{id, rev, std::vector<Event>(evs.begin(), evs.end()), 0, false});
    cv_.notify_all();
    return true;
  }
  void SendCompacted(int64_t id, int64_t compact_rev) override {
    std::lock_guard l(mu_);
    got_.push_back(Resp{id, 0, {}, compact_rev, false});
    cv_.notify_all();
  }
  void SendProgress(int64_t id, int64_t rev) override {
    std::lock_guard l(mu_);
    got_.push_back(Resp{id, rev, {}, 0, true});
    cv_.notify_all();
  }

  void SetCapacity(size_t n) {
    std::lock_guard l(mu_);
    capacity_ = n;
  }
  // Waits (deadline 10 s) until pred(responses) holds; returns a copy.
  template <typename F>
  std::vector<Resp> WaitFor(F pred) {
    std::unique_lock l(mu_);
    bool ok =
        cv_.wait_for(l, std::chrono::seconds(10), [&] { return pred(got_); });
    EXPECT_TRUE(ok) << "timed out; have " << got_.size() << " responses";
    return got_;
  }
  std::vector<Resp> Got() {
    std::lock_guard l(mu_);
    return got_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t capacity_ = SIZE_MAX;
  std::vector<Resp> got_;
};

// The events of watcher `id` flattened, as "P key=value@rev" / "D key@rev".
std::vector<std::string> Flat(const std::vector<FakeSink::Resp>& rs,
                              int64_t id = -1) {
  std::vector<std::string> out;
  for (const auto& r : rs) {
    if (id >= 0 && r.watch_id != id) continue;
    for (const Event& e : r.events) {
      if (e.type == Event::Type::kPut) {
        out.push_back("P " + e.kv.key + "=" + e.kv.value + "@" +
                      std::to_string(e.kv.mod_revision));
      } else {
        out.push_back("D " + e.kv.key + "@" +
                      std::to_string(e.kv.mod_revision));
      }
    }
  }
  return out;
}

size_t EventCount(const std::vector<FakeSink::Resp>& rs) {
  size_t n = 0;
  for (const auto& r : rs) n += r.events.size();
  return n;
}

WatchSpec Key(std::string key, std::string end = "", int64_t start = 0) {
  WatchSpec s;
  s.key = std::move(key);
  s.range_end = std::move(end);
  s.start_rev = start;
  return s;
}

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenStore(dir_.path());
    WatchHubOptions o;
    o.sync_max_revs = 3;  // several history reads per catch-up
    hub_ = std::make_unique<WatchHub>(store_.get(), o);
  }
  void TearDown() override {
    hub_.reset();
    store_.reset();
  }
  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<WatchHub> hub_;
};

TEST_F(WatchHubTest, LiveEventsAndTxnInOneResponse) {
  FakeSink sink;
  int64_t created = -1;
  hub_->Add(&sink, 7, Key("a", "b"), [&](int64_t rev) { created = rev; });
  EXPECT_EQ(created, 1);
  ASSERT_TRUE(store_->Put(P("a1", "x")).ok());  // 2
  ASSERT_TRUE(store_->Put(P("c", "x")).ok());   // 3: outside the range
  TxnRequest t;
  t.success.push_back(OpPut(P("a2", "y")));
  t.success.push_back(OpPut(P("a3", "z")));
  ASSERT_TRUE(store_->Txn(t).ok());                // 4
  ASSERT_TRUE(store_->DeleteRange(D("a1")).ok());  // 5
  auto got = sink.WaitFor([](auto& g) { return EventCount(g) == 4; });
  ASSERT_EQ(got.size(), 3u);  // the txn's two events in one response
  EXPECT_EQ(got[1].events.size(), 2u);
  EXPECT_EQ(got[1].header_rev, 4);
  EXPECT_EQ(Flat(got), (std::vector<std::string>{"P a1=x@2", "P a2=y@4",
                                                 "P a3=z@4", "D a1@5"}));
  EXPECT_EQ(got[0].events[0].kv.create_revision, 2);
  EXPECT_EQ(got[0].events[0].kv.version, 1);
  EXPECT_EQ(got[2].events[0].kv.version, 0);
}

TEST_F(WatchHubTest, HistoryThenLiveInOrderWithoutRepeats) {
  for (int i = 0; i < 20; i++) {
    ASSERT_TRUE(
        store_->Put(P("k" + std::to_string(i % 3), std::to_string(i))).ok());
  }  // revisions 2..21
  FakeSink sink;
  hub_->Add(&sink, 1, Key("k", "l", 5), nullptr);
  for (int i = 20; i < 30; i++) {
    ASSERT_TRUE(
        store_->Put(P("k" + std::to_string(i % 3), std::to_string(i))).ok());
  }  // 22..31
  auto got = sink.WaitFor([](auto& g) { return EventCount(g) >= 27; });
  std::vector<std::string> want;
  for (int i = 3; i < 30; i++) {
    want.push_back("P k" + std::to_string(i % 3) + "=" + std::to_string(i) +
                   "@" + std::to_string(i + 2));
  }
  EXPECT_EQ(Flat(got), want);
  EXPECT_EQ(hub_->counts().synced, 1u);
}

TEST_F(WatchHubTest, CompactedStartIsCanceled) {
  for (int i = 0; i < 5; i++) ASSERT_TRUE(store_->Put(P("k", "v")).ok());
  ASSERT_TRUE(store_->Compact(4, true).ok());
  FakeSink sink;
  hub_->Add(&sink, 3, Key("k", "", 2), nullptr);
  auto got = sink.WaitFor([](auto& g) { return !g.empty(); });
  EXPECT_EQ(got[0].compact_rev, 4);
  EXPECT_EQ(got[0].watch_id, 3);
  EXPECT_EQ(hub_->counts().synced + hub_->counts().unsynced, 0u);
  // At the compacted revision itself: still served.
  FakeSink ok;
  hub_->Add(&ok, 4, Key("k", "", 4), nullptr);
  auto got2 = ok.WaitFor([](auto& g) { return EventCount(g) == 3; });
  EXPECT_EQ(Flat(got2),
            (std::vector<std::string>{"P k=v@4", "P k=v@5", "P k=v@6"}));
}

TEST_F(WatchHubTest, FiltersPrevKvAndFromKey) {
  ASSERT_TRUE(store_->Put(P("b", "old")).ok());  // 2
  FakeSink sink;
  WatchSpec noput = Key("a", kAll);
  noput.no_put = true;
  noput.prev_kv = true;
  WatchSpec nodel = Key("a", kAll);
  nodel.no_delete = true;
  hub_->Add(&sink, 1, noput, nullptr);
  hub_->Add(&sink, 2, nodel, nullptr);
  ASSERT_TRUE(store_->Put(P("b", "new")).ok());   // 3
  ASSERT_TRUE(store_->DeleteRange(D("b")).ok());  // 4
  auto got = sink.WaitFor([](auto& g) { return EventCount(g) == 2; });
  EXPECT_EQ(Flat(got, 1), std::vector<std::string>{"D b@4"});
  EXPECT_EQ(Flat(got, 2), std::vector<std::string>{"P b=new@3"});
  for (const auto& r : got) {
    if (r.watch_id == 1) {
      ASSERT_TRUE(r.events[0].prev_kv.has_value());
      EXPECT_EQ(r.events[0].prev_kv->value, "new");
    } else {
      EXPECT_FALSE(r.events[0].prev_kv.has_value());
    }
  }
  // prev_kv from the history too.
  FakeSink hist;
  WatchSpec h = Key("b", "", 3);
  h.prev_kv = true;
  hub_->Add(&hist, 9, h, nullptr);
  auto got2 = hist.WaitFor([](auto& g) { return EventCount(g) == 2; });
  EXPECT_EQ(Flat(got2), (std::vector<std::string>{"P b=new@3", "D b@4"}));
  EXPECT_EQ(got2[0].events[0].prev_kv->value, "old");
  EXPECT_EQ(got2[0].events[1].prev_kv->value, "new");
}

TEST_F(WatchHubTest, FutureStartRevisionWaits) {
  FakeSink sink;
  hub_->Add(&sink, 1, Key("k", "", 4), nullptr);
  for (int i = 0; i < 4; i++) {
    ASSERT_TRUE(store_->Put(P("k", std::to_string(i))).ok());  // 2..5
  }
  auto got = sink.WaitFor([](auto& g) { return EventCount(g) == 2; });
  EXPECT_EQ(Flat(got), (std::vector<std::string>{"P k=2@4", "P k=3@5"}));
}

TEST_F(WatchHubTest, FullSinkDoesNotBlockWritesAndCatchesUp) {
  FakeSink slow;
  slow.SetCapacity(2);
  FakeSink fast;
  hub_->Add(&slow, 1, Key("k", kAll), nullptr);
  hub_->Add(&fast, 1, Key("k", kAll), nullptr);
  std::vector<std::string> want;
  for (int i = 0; i < 50; i++) {
    // Each write returns although the slow sink has been full since the
    // third.
    ASSERT_TRUE(store_->Put(P("k" + std::to_string(i % 5), "v")).ok());
    want.push_back("P k" + std::to_string(i % 5) + "=v@" +
                   std::to_string(i + 2));
  }
  EXPECT_EQ(Flat(fast.WaitFor([](auto& g) { return EventCount(g) == 50; })),
            want);
  EXPECT_EQ(slow.Got().size(), 2u);
  EXPECT_EQ(hub_->counts().unsynced, 1u);
  slow.SetCapacity(SIZE_MAX);
  hub_->Wake();
  EXPECT_EQ(Flat(slow.WaitFor([](auto& g) { return EventCount(g) == 50; })),
            want);
  ASSERT_TRUE(store_->Put(P("k9", "w")).ok());
  want.push_back("P k9=w@52");
  EXPECT_EQ(Flat(slow.WaitFor([](auto& g) { return EventCount(g) == 51; })),
            want);
  EXPECT_EQ(hub_->counts().unsynced, 0u);
}

TEST_F(WatchHubTest, WatchersOfOneKeyShareListsButKeepTheirOwnEvents) {
  // Watchers of one key that differ in start revision, filters and
  // prev_kv, live and catching up together: the hub shares one event list
  // between watchers that get the same events, never between others.
  for (int i = 0; i < 6; i++) {
    ASSERT_TRUE(store_->Put(P("k", std::to_string(i))).ok());  // 2..7
  }
  ASSERT_TRUE(store_->DeleteRange(D("k")).ok());  // 8
  FakeSink sink;
  sink.SetCapacity(0);  // all fall behind, then catch up in one round
  WatchSpec prev = Key("k", "", 3);
  prev.prev_kv = true;
  WatchSpec noput = Key("k", "", 3);
  noput.no_put = true;
  hub_->Add(&sink, 1, Key("k", "", 3), nullptr);
  hub_->Add(&sink, 2, Key("k", "", 3), nullptr);
  hub_->Add(&sink, 3, Key("k", "", 5), nullptr);
  hub_->Add(&sink, 4, prev, nullptr);
  hub_->Add(&sink, 5, noput, nullptr);
  hub_->Add(&sink, 6, Key("k"), nullptr);      // live only
  ASSERT_TRUE(store_->Put(P("k", "x")).ok());  // 9
  sink.SetCapacity(SIZE_MAX);
  hub_->Wake();
  auto got = sink.WaitFor([](auto& g) { return EventCount(g) == 28; });
  std::vector<std::string> from3 = {"P k=1@3", "P k=2@4", "P k=3@5", "P k=4@6",
                                    "P k=5@7", "D k@8",   "P k=x@9"};
  EXPECT_EQ(Flat(got, 1), from3);
  EXPECT_EQ(Flat(got, 2), from3);
  EXPECT_EQ(Flat(got, 3),
            std::vector<std::string>(from3.begin() + 2, from3.end()));
  EXPECT_EQ(Flat(got, 4), from3);
  EXPECT_EQ(Flat(got, 5), std::vector<std::string>{"D k@8"});
  EXPECT_EQ(Flat(got, 6), std::vector<std::string>{"P k=x@9"});
  int with_prev = 0;
  for (const auto& r : got) {
    for (const Event& e : r.events) {
      // prev_kv only for the watcher that asked: the value before.
      if (r.watch_id != 4) {
        EXPECT_FALSE(e.prev_kv.has_value()) << r.watch_id;
      } else if (e.kv.mod_revision == 3 || e.kv.mod_revision == 8) {
        ASSERT_TRUE(e.prev_kv.has_value());
        EXPECT_EQ(e.prev_kv->value, e.kv.mod_revision == 3 ? "0" : "5");
        with_prev++;
      }
    }
  }
  EXPECT_EQ(with_prev, 2);
  EXPECT_EQ(hub_->counts().unsynced, 0u);
}

TEST_F(WatchHubTest, RemoveStopsDelivery) {
  FakeSink sink;
  uint64_t h = hub_->Add(&sink, 1, Key("k"), nullptr);
  hub_->Add(&sink, 2, Key("k"), nullptr);
  EXPECT_TRUE(hub_->Remove(h));
  EXPECT_FALSE(hub_->Remove(h));
  ASSERT_TRUE(store_->Put(P("k", "v")).ok());
  auto got = sink.WaitFor([](auto& g) { return EventCount(g) == 1; });
  EXPECT_EQ(got[0].watch_id, 2);
}

TEST_F(WatchHubTest, ProgressRevisionCoversWhatWasSent) {
  FakeSink sink;
  sink.SetCapacity(0);
  ASSERT_TRUE(store_->Put(P("k", "v")).ok());  // 2
  uint64_t h = hub_->Add(&sink, 1, Key("k", "", 2), nullptr);
  ASSERT_TRUE(store_->Put(P("k", "v")).ok());  // 3
  int64_t rev = 0;
  hub_->WithProgressRevision({h}, [&](int64_t r) { rev = r; });
  EXPECT_EQ(rev, 1);  // nothing sent yet
  sink.SetCapacity(SIZE_MAX);
  hub_->Wake();
  sink.WaitFor([](auto& g) { return EventCount(g) == 2; });
  hub_->WithProgressRevision({h}, [&](int64_t r) { rev = r; });
  EXPECT_EQ(rev, 3);
}

TEST(WatchHubProgressTest, NotifiesIdleSyncedWatchers) {
  TempDir dir;
  auto store = OpenStore(dir.path());
  WatchHubOptions o;
  o.progress_interval = std::chrono::milliseconds(20);
  WatchHub hub(store.get(), o);
  FakeSink sink;
  WatchSpec s = Key("k");
  s.progress_notify = true;
  hub.Add(&sink, 5, s, nullptr);
  hub.Add(&sink, 6, Key("k"), nullptr);       // did not ask
  ASSERT_TRUE(store->Put(P("x", "v")).ok());  // 2
  auto got = sink.WaitFor([](auto& g) {
    for (auto& r : g) {
      if (r.progress && r.header_rev == 2) return true;
    }
    return false;
  });
  for (auto& r : got) {
    EXPECT_TRUE(r.progress);
    EXPECT_EQ(r.watch_id, 5);
  }
}

TEST(WatchHubRestoreTest, RestoreCatchesUpFromTheNewHistory) {
  TempDir dir;
  auto src = OpenStore(dir.Sub("src"));
  auto dst = OpenStore(dir.Sub("dst"));
  for (int i = 0; i < 5; i++)
    ASSERT_TRUE(src->Put(P("k", std::to_string(i))).ok());
  ASSERT_TRUE(dst->Put(P("k", "0")).ok());  // 2, as in src
  ASSERT_TRUE(src->ExportSnapshot(dir.Sub("snap")).ok());
  WatchHub hub(dst.get(), WatchHubOptions{});
  FakeSink sink;
  hub.Add(&sink, 1, Key("k"), nullptr);
  ASSERT_TRUE(dst->RestoreSnapshot(dir.Sub("snap")).ok());
  auto got = sink.WaitFor([](auto& g) { return EventCount(g) == 4; });
  EXPECT_EQ(Flat(got), (std::vector<std::string>{"P k=1@3", "P k=2@4",
                                                 "P k=3@5", "P k=4@6"}));
  ASSERT_TRUE(dst->Put(P("k", "5")).ok());
  got = sink.WaitFor([](auto& g) { return EventCount(g) == 5; });
  EXPECT_EQ(Flat(got).back(), "P k=5@7");
}

}  // namespace
}  // namespace keel::mvcc
