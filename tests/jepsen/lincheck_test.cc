// Known histories the checker must accept or reject (lincheck.h), and
// random histories of a correct store, before and after a fault is planted.
#include "lincheck.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "history_gen.h"

namespace keel::check {
namespace {

// A tiny builder: times are small integers, ids are assigned in order.
class H {
 public:
  // Completed ops.
  H& Put(int p, std::string k, std::string v, int64_t call, int64_t ret,
         int64_t rev) {
    Operation& o = Add(p, OpType::kPut, k, call, ret);
    o.value = v;
    o.revision = rev;
    return *this;
  }
  H& Get(int p, std::string k, int64_t call, int64_t ret, int64_t header,
         std::optional<std::string> v, int64_t mod_rev = 0) {
    Operation& o = Add(p, OpType::kGet, k, call, ret);
    o.revision = header;
    o.found = v.has_value();
    if (v) {
      o.read_value = *v;
      o.read_mod_revision = mod_rev;
    }
    return *this;
  }
  // A delete with prev_kv: prev is what it deleted (nullopt: nothing).
  H& Del(int p, std::string k, int64_t call, int64_t ret, int64_t rev,
         std::optional<std::string> prev, int64_t prev_mod = 0) {
    Operation& o = Add(p, OpType::kDelete, k, call, ret);
    o.revision = rev;
    o.has_read = true;
    o.deleted = prev ? 1 : 0;
    if (prev) {
      o.read_value = *prev;
      o.read_mod_revision = prev_mod;
    }
    return *this;
  }
  // cas value==expect -> put v; when it fails, read shows what it saw.
  H& Cas(int p, std::string k, std::string expect, std::string v, int64_t call,
         int64_t ret, int64_t rev, bool ok,
         std::optional<std::string> read = std::nullopt, int64_t mod = 0) {
    Operation& o = Add(p, OpType::kCas, k, call, ret);
    o.cmp = CmpKind::kValue;
    o.expect_value = expect;
    o.value = v;
    o.revision = rev;
    o.succeeded = ok;
    if (!ok) {
      o.has_read = true;
      o.found = read.has_value();
      if (read) {
        o.read_value = *read;
        o.read_mod_revision = mod;
      }
    }
    return *this;
  }
  // The last op added lost its completion.
  H& Unknown() {
    ops_.back().outcome = Outcome::kUnknown;
    ops_.back().return_ns = 0;
    return *this;
  }
  H& Failed() {
    ops_.back().outcome = Outcome::kFail;
    return *this;
  }
  const std::vector<Operation>& ops() const { return ops_; }
  CheckResult Run(CheckOptions o = {}) const { return Check(ops_, o); }

 private:
  Operation& Add(int p, OpType t, std::string k, int64_t call, int64_t ret) {
    Operation o;
    o.id = static_cast<int64_t>(ops_.size());
    o.process = p;
    o.type = t;
    o.key = std::move(k);
    o.call_ns = call;
    o.return_ns = ret;
    ops_.push_back(o);
    return ops_.back();
  }
  std::vector<Operation> ops_;
};

// Every verdict must not depend on the unobserved-write pruning.
void ExpectVerdict(const H& h, bool linearizable) {
  CheckOptions plain;
  plain.prune_unobserved = false;
  CheckResult a = h.Run();
  CheckResult b = h.Run(plain);
  EXPECT_EQ(a.ok, linearizable) << ResultToJson(a);
  EXPECT_EQ(b.ok, linearizable) << ResultToJson(b);
  EXPECT_FALSE(a.gave_up);
}

TEST(Lincheck, EmptyHistoryIsLinearizable) { ExpectVerdict(H(), true); }

TEST(Lincheck, SequentialPutThenGet) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Get(1, "x", 2, 3, 2, "a", 2);
  ExpectVerdict(h, true);
}

TEST(Lincheck, StaleReadAfterCompletedWriteIsRejected) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Put(0, "x", "b", 2, 3, 3);
  // Invoked after b completed, but returns a: a stale read. Its header
  // revision is honest (3), so only the value gives it away.
  h.Get(1, "x", 4, 5, 3, "a", 2);
  ExpectVerdict(h, false);
}

TEST(Lincheck, ReadOfMissingKeyAfterPutIsRejected) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Get(1, "x", 2, 3, 2, std::nullopt);
  ExpectVerdict(h, false);
}

TEST(Lincheck, ConcurrentReadMaySeeEitherValue) {
  for (bool sees_new : {false, true}) {
    H h;
    h.Put(0, "x", "a", 0, 1, 2).Put(0, "x", "b", 2, 10, 3);
    if (sees_new) {
      h.Get(1, "x", 3, 4, 3, "b", 3);
    } else {
      h.Get(1, "x", 3, 4, 2, "a", 2);
    }
    ExpectVerdict(h, true);
  }
}

TEST(Lincheck, ReadValueNeverWrittenIsRejected) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Get(1, "x", 2, 3, 2, "zzz", 2);
  ExpectVerdict(h, false);
}

TEST(Lincheck, RevisionsRevealTheOrderOfConcurrentPuts) {
  // a and b overlap; b got the higher revision, so b was applied last and
  // a read after both must see b.
  H ok, bad;
  ok.Put(0, "x", "a", 0, 10, 2).Put(1, "x", "b", 0, 10, 3);
  ok.Get(2, "x", 11, 12, 3, "b", 3);
  ExpectVerdict(ok, true);
  bad.Put(0, "x", "a", 0, 10, 2).Put(1, "x", "b", 0, 10, 3);
  bad.Get(2, "x", 11, 12, 3, "a", 2);
  ExpectVerdict(bad, false);
}

TEST(Lincheck, ReadHeaderRevisionPinsItsPlace) {
  // The read overlaps the put of b (revision 5) and returns the old value,
  // but its header says revision 6: the store had already applied b when it
  // read, so returning a is impossible.
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Put(0, "x", "b", 2, 10, 5);
  h.Get(1, "x", 3, 4, 6, "a", 2);
  ExpectVerdict(h, false);
  // With header 4 (before b) the same read is fine.
  H g;
  g.Put(0, "x", "a", 0, 1, 2).Put(0, "x", "b", 2, 10, 5);
  g.Get(1, "x", 3, 4, 4, "a", 2);
  ExpectVerdict(g, true);
}

TEST(Lincheck, WrongModRevisionIsRejected) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Get(1, "x", 2, 3, 2, "a", 7);
  ExpectVerdict(h, false);
}

TEST(Lincheck, UnknownPutMustBeAssumedApplied) {
  // The put timed out, yet a later read sees its value: it took effect.
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Put(1, "x", "b", 2, 0, 0).Unknown();
  h.Get(2, "x", 50, 51, 3, "b", 3);
  ExpectVerdict(h, true);
}

TEST(Lincheck, UnknownPutMayNeverHaveHappened) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Put(1, "x", "b", 2, 0, 0).Unknown();
  h.Get(2, "x", 50, 51, 2, "a", 2).Get(2, "x", 52, 53, 2, "a", 2);
  ExpectVerdict(h, true);
}

TEST(Lincheck, UnknownPutCannotTakeEffectBeforeItsInvocation) {
  // b is invoked only after the read that claims to see it completed.
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Get(2, "x", 2, 3, 3, "b", 3);
  h.Put(1, "x", "b", 10, 0, 0).Unknown();
  ExpectVerdict(h, false);
}

TEST(Lincheck, UnknownPutCannotFlipFlop) {
  // Seen, then not seen, then seen again, with no other writes: impossible.
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Put(1, "x", "b", 2, 0, 0).Unknown();
  h.Get(2, "x", 5, 6, 3, "b", 3).Get(2, "x", 7, 8, 3, "a", 2);
  ExpectVerdict(h, false);
}

TEST(Lincheck, FailedPutNeverTookEffect) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Put(1, "x", "b", 2, 3, 0).Failed();
  h.Get(2, "x", 5, 6, 3, "b", 3);
  ExpectVerdict(h, false);
}

TEST(Lincheck, UnknownDeleteMustBeAssumedApplied) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Del(1, "x", 2, 0, 0, "a", 2).Unknown();
  h.Get(2, "x", 10, 11, 3, std::nullopt);
  ExpectVerdict(h, true);
}

TEST(Lincheck, DeleteThenReadAbsent) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Del(0, "x", 2, 3, 3, "a", 2);
  h.Get(1, "x", 4, 5, 3, std::nullopt);
  ExpectVerdict(h, true);
}

TEST(Lincheck, DeleteOfMissingKeyAfterPutIsRejected) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Del(1, "x", 2, 3, 2, std::nullopt);
  ExpectVerdict(h, false);
}

TEST(Lincheck, DeleteReturnsWrongPrevIsRejected) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Put(0, "x", "b", 2, 3, 3);
  h.Del(1, "x", 4, 5, 4, "a", 2);
  ExpectVerdict(h, false);
}

TEST(Lincheck, ConcurrentCasFromSameValueOnlyOneWins) {
  H both, one;
  both.Put(0, "x", "a", 0, 1, 2);
  both.Cas(1, "x", "a", "b", 2, 10, 3, true);
  both.Cas(2, "x", "a", "c", 2, 10, 4, true);
  ExpectVerdict(both, false);
  one.Put(0, "x", "a", 0, 1, 2);
  one.Cas(1, "x", "a", "b", 2, 10, 3, true);
  one.Cas(2, "x", "a", "c", 2, 10, 3, false, "b", 3);
  ExpectVerdict(one, true);
}

TEST(Lincheck, CasFailingWhileValueMatchesIsRejected) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Cas(1, "x", "a", "b", 2, 3, 2, false, "a", 2);
  ExpectVerdict(h, false);
}

TEST(Lincheck, UnknownCasThatTookEffect) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2);
  h.Cas(1, "x", "a", "b", 2, 0, 0, true).Unknown();
  h.Get(2, "x", 20, 21, 3, "b", 3);
  ExpectVerdict(h, true);
}

TEST(Lincheck, UnknownCasCannotApplyWhenCompareIsFalse) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2);
  h.Cas(1, "x", "zzz", "b", 2, 0, 0, true).Unknown();
  h.Get(2, "x", 20, 21, 3, "b", 3);
  ExpectVerdict(h, false);
}

TEST(Lincheck, CasAbsentCreatesOnlyOnce) {
  H h;
  Operation* o;
  h.Put(0, "y", "unrelated", 0, 1, 2);
  h.Cas(1, "x", "", "a", 2, 10, 3, true);
  h.Cas(2, "x", "", "b", 2, 10, 4, true);
  for (auto* op : {&h.ops()[1], &h.ops()[2]}) {
    o = const_cast<Operation*>(op);
    o->cmp = CmpKind::kAbsent;
  }
  ExpectVerdict(h, false);
}

TEST(Lincheck, GlobalRevisionGoingBackInRealTimeIsRejected) {
  // Different keys, each fine alone: y's read was invoked after x's put
  // (revision 5) completed, yet reports revision 3.
  H h;
  h.Put(0, "x", "a", 0, 1, 5).Get(1, "y", 2, 3, 3, std::nullopt);
  CheckResult r = h.Run();
  EXPECT_FALSE(r.ok);
  ASSERT_EQ(r.global_violations.size(), 1u) << ResultToJson(r);
  for (const auto& k : r.keys) EXPECT_TRUE(k.ok) << k.key;
}

TEST(Lincheck, DuplicateWriteRevisionsAreRejected) {
  H h;
  h.Put(0, "x", "a", 0, 10, 5).Put(1, "y", "b", 0, 10, 5);
  EXPECT_FALSE(h.Run().ok);
}

TEST(Lincheck, ReportsTheLongestPrefixAndTheStuckOps) {
  H h;
  h.Put(0, "x", "a", 0, 1, 2).Put(0, "x", "b", 2, 3, 3);
  h.Get(1, "x", 4, 5, 3, "a", 2);
  CheckResult r = h.Run();
  ASSERT_EQ(r.keys.size(), 1u);
  EXPECT_EQ(r.keys[0].best_prefix, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(r.keys[0].stuck, (std::vector<int64_t>{2}));
  EXPECT_NE(r.keys[0].state_after_prefix.find("value=b"), std::string::npos);
}

TEST(Lincheck, ParsesJsonLinesAndNamesTheBadLine) {
  auto h = ParseHistory(
      "{\"id\":1,\"type\":\"put\",\"key\":\"x\",\"value\":\"a\","
      "\"call_ns\":1,\"return_ns\":2,\"outcome\":\"ok\",\"revision\":2}\n\n"
      "{\"id\":2,\"type\":\"get\",\"key\":\"x\",\"call_ns\":3,"
      "\"return_ns\":4,\"outcome\":\"ok\",\"revision\":2,\"found\":true,"
      "\"read_value\":\"a\",\"read_mod_revision\":2}\n");
  ASSERT_TRUE(h.ok()) << h.status().message();
  ASSERT_EQ(h->size(), 2u);
  EXPECT_TRUE(Check(*h).ok);
  auto round = ParseHistory(OpToJson((*h)[1]));
  ASSERT_TRUE(round.ok());
  EXPECT_EQ((*round)[0].read_value, "a");

  auto bad = ParseHistory(
      "{\"id\":1,\"type\":\"put\",\"outcome\":\"ok\"}\n"
      "{\"id\":2,\"type\":\"frob\",\"outcome\":\"ok\"}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos);
}

// Random histories of a correct store are accepted; planting one stale
// read in them is caught. Seeds are printed by the test name.
TEST(Lincheck, RandomCorrectHistoriesAreAcceptedAndAPlantedStaleReadIsNot) {
  for (uint64_t seed = 1; seed <= 20; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    GenOptions g;
    g.seed = seed;
    g.ops = 400;
    g.keys = 2;
    g.processes = 6;
    g.unknown_fraction = 0.1;
    auto h = GenerateHistory(g);
    CheckResult r = Check(h);
    ASSERT_TRUE(r.ok) << ResultToJson(r);
    // Plant: the last read that saw a value, made to return an older value
    // of the same key, read strictly after that older value was replaced.
    // Find a get whose read value was overwritten by a write that completed
    // before the get was invoked, and which returns a previous value.
    bool planted = false;
    for (size_t i = 0; i < h.size() && !planted; i++) {
      Operation& rd = h[i];
      if (rd.type != OpType::kGet || !rd.found) continue;
      // The write rd saw must be known to have happened (an unknown one
      // that nothing else observes could be assumed never applied).
      bool seen_write_known = false;
      for (const Operation& w : h) {
        seen_write_known |= w.key == rd.key && w.value == rd.read_value &&
                            w.outcome == Outcome::kOk;
      }
      if (!seen_write_known) continue;
      for (size_t j = 0; j < h.size(); j++) {
        const Operation& w = h[j];
        if (w.type == OpType::kPut && w.outcome == Outcome::kOk &&
            w.key == rd.key && w.return_ns < rd.call_ns &&
            w.revision < rd.read_mod_revision && w.value != rd.read_value) {
          // w's value was current before rd's value was written, and w
          // completed before rd began: rd must not see w's value any more
          // (rd's value has a higher revision and was applied before rd).
          rd.read_value = w.value;
          rd.read_mod_revision = w.revision;
          planted = true;
          break;
        }
      }
    }
    ASSERT_TRUE(planted);
    EXPECT_FALSE(Check(h).ok);
  }
}

// Not a speed assertion: prints how long a 10k-op history takes, so that
// a slowdown shows up in the log.
TEST(Lincheck, TenThousandOpHistory) {
  GenOptions g;
  g.ops = 10000;
  g.keys = 10;
  g.processes = 12;
  g.seed = 7;
  auto h = GenerateHistory(g);
  auto t0 = std::chrono::steady_clock::now();
  CheckResult r = Check(h);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0)
                .count();
  std::printf("10000 ops, 10 keys, 12 processes: %lld ms, %llu steps\n",
              static_cast<long long>(ms),
              static_cast<unsigned long long>(r.steps));
  EXPECT_TRUE(r.ok) << ResultToJson(r);
}

}  // namespace
}  // namespace keel::check
