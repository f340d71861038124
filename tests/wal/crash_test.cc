// Crash consistency: seeded random workloads on DiskStorage over the
// fault-injecting Env, each crashed at a random point (unsynced data lost,
// the last write torn in whole sectors, unsynced directory changes undone)
// and recovered, several times per seed.
//
// After every recovery the storage must equal the model state after some
// prefix of the operations issued, and that prefix must include every
// operation reported durable: nothing durable is lost or damaged, nothing
// after a tear appears, and the hard state never goes back.
//
// KEEL_WAL_CRASH_SEEDS=n runs n seeds (default 5000);
// KEEL_WAL_CRASH_SEED=s replays seed s alone. A failure names its seed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "common/rng.h"
#include "test_util.h"
#include "wal/disk_storage.h"
#include "wal/fault_injection_env.h"

namespace keel::wal {
namespace {

using raft::Entry;
using raft::HardState;
using raft::Index;
using raft::Term;

struct ModelState {
  HardState hs;
  Index base = 0;
  Term base_term = 0;
  std::vector<Entry> ents;  // base+1 ...
  Index snap_index = 0;
  Term snap_term = 0;
  std::string snap_data;

  Index last() const { return base + ents.size(); }
  Term TermAt(Index i) const {
    return i == base ? base_term : ents[i - base - 1].term;
  }
};

// What a recovered storage shows.
struct View {
  HardState hs;
  Index first = 0, last = 0;
  Term base_term = 0;
  std::vector<Entry> ents;
  raft::Snapshot snap;
};

View Capture(const DiskStorage& s) {
  View v;
  raft::ConfState cs;
  EXPECT_TRUE(s.InitialState(&v.hs, &cs).ok());
  v.first = s.FirstIndex();
  v.last = s.LastIndex();
  v.base_term = *s.TermAt(v.first - 1);
  auto ents = s.Entries(v.first, v.last + 1, UINT64_MAX);
  EXPECT_TRUE(ents.ok()) << ents.status().ToString();
  if (ents.ok()) v.ents = std::move(ents).value();
  v.snap = *s.GetSnapshot();
  return v;
}

bool Matches(const View& v, const ModelState& m) {
  // A snapshot holds committed entries only: recovery raises the commit
  // index to it even when the hard state saying so was not yet written.
  raft::HardState want = m.hs;
  want.commit = std::max(want.commit, m.snap_index);
  if (!(v.hs == want) || v.last != m.last()) return false;
  if (v.snap.metadata.index != m.snap_index ||
      v.snap.metadata.term != m.snap_term || v.snap.data != m.snap_data) {
    return false;
  }
  // Recovery starts at the snapshot, which never precedes the model's base.
  if (v.first - 1 != m.snap_index || m.snap_index < m.base) return false;
  if (v.base_term != m.TermAt(m.snap_index)) return false;
  if (v.ents.size() != v.last - v.first + 1) return false;
  for (size_t j = 0; j < v.ents.size(); j++) {
    if (!(v.ents[j] == m.ents[v.first + j - m.base - 1])) return false;
  }
  return true;
}

std::string Describe(const View& v) {
  return "recovered hs={" + std::to_string(v.hs.term) + "," +
         std::to_string(v.hs.vote) + "," + std::to_string(v.hs.commit) +
         "} first=" + std::to_string(v.first) +
         " last=" + std::to_string(v.last) +
         " snap=" + std::to_string(v.snap.metadata.index);
}

struct Stats {
  uint64_t ops = 0, crashes = 0, crashes_in_recovery = 0;
  uint64_t unacked_kept = 0;  // recoveries that kept unacknowledged records
  uint64_t records_lost = 0;  // recoveries that dropped unsynced records
};

class Workload {
 public:
  Workload(uint64_t seed, Stats* stats)
      : seed_(seed), rng_(seed), stats_(stats) {
    opts_.dir = "/data";
    const uint64_t sizes[] = {1024, 4096, 16384};
    opts_.segment_size = sizes[rng_.Uniform(3)];
    const uint64_t caches[] = {0, 2000, 1 << 20};
    opts_.cache_bytes = caches[rng_.Uniform(3)];
    opts_.snapshots_to_keep = static_cast<int>(rng_.Range(1, 3));
    // The writer thread is only deterministic if every save is awaited.
    background_ = rng_.Chance(0.25);
    opts_.background_writer = background_;
    history_.push_back(ModelState{});
  }

  void Run() {
    const int crashes = static_cast<int>(rng_.Range(1, 4));
    for (int round = 0; round <= crashes; round++) {
      std::unique_ptr<DiskStorage> s = Recover();
      if (s == nullptr || ::testing::Test::HasFatalFailure()) return;
      if (round == crashes) return;
      env_.CrashAfterOps(rng_.Range(1, 120));
      RunUntilCrash(s.get());
      if (::testing::Test::HasFatalFailure()) return;
      s.reset();  // the "process" is gone
      ASSERT_TRUE(env_.SimulateCrash(&rng_).ok());
      stats_->crashes++;
    }
  }

 private:
  // Opens (a crash may also hit recovery itself), checks the recovered
  // state against the history, and continues from the state found.
  std::unique_ptr<DiskStorage> Recover() {
    while (true) {
      if (rng_.Chance(0.15)) env_.CrashAfterOps(rng_.Range(1, 6));
      auto s = DiskStorage::Open(&env_, opts_);
      if (!s.ok()) {
        EXPECT_TRUE(env_.crashed()) << "open failed: " << s.status().ToString();
        if (!env_.crashed()) return nullptr;
        EXPECT_TRUE(env_.SimulateCrash(&rng_).ok());
        stats_->crashes_in_recovery++;
        continue;
      }
      env_.CrashAfterOps(0);
      if (env_.crashed()) {  // crashed during open after all
        s->reset();
        EXPECT_TRUE(env_.SimulateCrash(&rng_).ok());
        continue;
      }
      View v = Capture(**s);
      std::optional<size_t> found;
      for (size_t k = history_.size(); k-- > acked_;) {
        if (Matches(v, history_[k])) {
          found = k;
          break;
        }
      }
      EXPECT_TRUE(found.has_value())
          << Describe(v) << "; acked op " << acked_ << " of "
          << history_.size() - 1 << " (hs commit " << history_[acked_].hs.commit
          << ", last " << history_[acked_].last() << ")";
      if (!found) {
        for (size_t k = acked_; k < history_.size(); k++) {
          const ModelState& m = history_[k];
          ADD_FAILURE() << "candidate " << k << ": hs={" << m.hs.term << ","
                        << m.hs.vote << "," << m.hs.commit
                        << "} base=" << m.base << " last=" << m.last()
                        << " snap=" << m.snap_index << "/" << m.snap_term
                        << " recovered snap term " << v.snap.metadata.term
                        << " base_term " << v.base_term << " data "
                        << (v.snap.data == m.snap_data) << " ents "
                        << v.ents.size();
          for (size_t j = 0; j < v.ents.size() && v.first + j <= m.last();
               j++) {
            const Entry& want = m.ents[v.first + j - m.base - 1];
            if (!(v.ents[j] == want)) {
              ADD_FAILURE()
                  << "entry " << v.first + j << " term " << v.ents[j].term
                  << " vs " << want.term << " bytes " << v.ents[j].data.size()
                  << " vs " << want.data.size();
            }
          }
        }
        return nullptr;
      }
      if (*found > acked_) stats_->unacked_kept++;
      if (*found + 1 < history_.size()) stats_->records_lost++;
      history_.resize(*found + 1);
      acked_ = *found;
      model_ = history_.back();
      return std::move(s).value();
    }
  }

  void Push() { history_.push_back(model_); }

  void RunUntilCrash(DiskStorage* s) {
    for (int op = 0; op < 60; op++) {
      uint64_t dice = rng_.Uniform(100);
      stats_->ops++;
      Status st;
      if (dice < 70) {
        st = DoSave(s);
      } else if (dice < 82) {
        st = DoCreateSnapshot(s);
      } else if (dice < 92) {
        st = DoCompact(s);
      } else {
        st = DoApplySnapshot(s);
      }
      if (!st.ok()) {
        ASSERT_TRUE(env_.crashed())
            << "op failed without a crash: " << st.ToString();
        return;
      }
    }
  }

  Status DoSave(DiskStorage* s) {
    Index lo = std::max(model_.hs.commit + 1, s->FirstIndex());
    Index from = rng_.Range(lo, model_.last() + 1);
    // Raft only overwrites entries with ones of a newer term.
    if (from <= model_.last() || rng_.Chance(0.2)) term_++;
    term_ = std::max(term_, model_.hs.term);
    std::vector<Entry> ents;
    int n = static_cast<int>(rng_.Range(0, 5));
    for (int i = 0; i < n; i++) {
      ents.push_back(testing::MakeEntry(from + i, term_, rng_.Range(0, 400)));
    }
    // A batch is not atomic: a crash may keep any prefix of its records,
    // so the history gets a state after each record.
    for (const Entry& e : ents) {
      model_.ents.resize(e.index - model_.base - 1);
      model_.ents.push_back(e);
      Push();
    }
    std::optional<HardState> hs;
    if (n == 0 || rng_.Chance(0.7)) {
      hs = HardState{term_, rng_.Range(0, 3),
                     rng_.Range(model_.hs.commit, model_.last())};
      model_.hs = *hs;
      Push();
    }
    auto lsn = s->Save(hs ? &*hs : nullptr, ents);
    if (!lsn.ok()) return lsn.status();
    if (background_ || rng_.Chance(0.6)) {
      KEEL_RETURN_IF_ERROR(s->WaitDurable(*lsn));
      acked_ = history_.size() - 1;
    }
    return Status::OK();
  }

  Status DoCreateSnapshot(DiskStorage* s) {
    Index lo = std::max(model_.snap_index + 1, s->FirstIndex());
    if (lo > model_.hs.commit) return Status::OK();
    Index i = rng_.Range(lo, model_.hs.commit);
    std::string data =
        "state@" + std::to_string(i) + "#" + std::to_string(rng_.Next() % 1000);
    model_.snap_index = i;
    model_.snap_term = model_.TermAt(i);
    model_.snap_data = data;
    Push();
    auto snap = s->CreateSnapshot(i, nullptr, data);
    if (!snap.ok()) return snap.status();
    acked_ = history_.size() - 1;
    return Status::OK();
  }

  Status DoCompact(DiskStorage* s) {
    if (model_.snap_index < s->FirstIndex()) return Status::OK();
    return s->Compact(rng_.Range(s->FirstIndex(), model_.snap_index));
  }

  Status DoApplySnapshot(DiskStorage* s) {
    raft::Snapshot snap;
    snap.metadata.index = model_.last() + rng_.Range(1, 30);
    snap.metadata.term = ++term_;
    snap.data = "remote@" + std::to_string(snap.metadata.index);
    model_.ents.clear();
    model_.base = model_.snap_index = snap.metadata.index;
    model_.base_term = model_.snap_term = snap.metadata.term;
    model_.snap_data = snap.data;
    Push();
    Status st = s->ApplySnapshot(snap);
    if (!st.ok()) return st;
    acked_ = history_.size() - 1;
    // What the core would persist next: commit reaches the snapshot.
    model_.hs = {term_, model_.hs.vote, snap.metadata.index};
    Push();
    auto lsn = s->Save(&model_.hs, {});
    if (!lsn.ok()) return lsn.status();
    KEEL_RETURN_IF_ERROR(s->WaitDurable(*lsn));
    acked_ = history_.size() - 1;
    return Status::OK();
  }

  const uint64_t seed_;
  SeededRng rng_;
  Stats* const stats_;
  FaultInjectionEnv env_;
  DiskStorageOptions opts_;
  bool background_ = false;
  Term term_ = 1;
  ModelState model_;
  // history_[k]: the state after the k-th operation issued; history_[0] is
  // the empty log. acked_: the last operation reported durable.
  std::vector<ModelState> history_;
  size_t acked_ = 0;
};

uint64_t EnvNumber(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : def;
}

TEST(CrashTest, RandomWorkloadsSurviveCrashes) {
  uint64_t first = 1, count = EnvNumber("KEEL_WAL_CRASH_SEEDS", 5000);
  if (std::getenv("KEEL_WAL_CRASH_SEED") != nullptr) {
    first = EnvNumber("KEEL_WAL_CRASH_SEED", 1);
    count = 1;
  }
  Stats stats;
  for (uint64_t seed = first; seed < first + count; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed) +
                 " (replay: KEEL_WAL_CRASH_SEED=" + std::to_string(seed) +
                 " wal_test --gtest_filter=CrashTest.*)");
    Workload(seed, &stats).Run();
    if (HasFailure()) break;  // one seed at a time is enough to debug
  }
  std::printf(
      "crash test: %llu seeds from %llu, %llu ops, %llu crashes (+%llu during "
      "recovery); recoveries keeping unacknowledged records: %llu, dropping "
      "unsynced ones: %llu\n",
      static_cast<unsigned long long>(count),
      static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(stats.ops),
      static_cast<unsigned long long>(stats.crashes),
      static_cast<unsigned long long>(stats.crashes_in_recovery),
      static_cast<unsigned long long>(stats.unacked_kept),
      static_cast<unsigned long long>(stats.records_lost));
  RecordProperty("seeds", std::to_string(count));
}

}  // namespace
}  // namespace keel::wal
