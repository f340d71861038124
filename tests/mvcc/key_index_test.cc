// TreeIndex: single-key lookups (through its hash set) agree with the
// ordered map across puts, tombstones, compaction, undo and restore.
#include "mvcc/key_index.h"

#include <gtest/gtest.h>

#include <string>

namespace keel::mvcc {
namespace {

bool Live(const TreeIndex& t, const std::string& key, int64_t rev) {
  return t.Get(key, rev, nullptr, nullptr, nullptr);
}

// Single-key and range visits must name the same entries.
void ExpectConsistent(const TreeIndex& t, int64_t rev) {
  for (const auto& [key, ki] : t.map()) {
    EXPECT_EQ(t.Find(key), &ki) << key;
    EXPECT_EQ(Live(t, key, rev), ki.Get(rev, nullptr, nullptr, nullptr)) << key;
  }
}

TEST(TreeIndex, SingleKeyLookupsFollowEveryChange) {
  TreeIndex t;
  EXPECT_EQ(t.Find("a"), nullptr);
  t.Put("a", {2, 0});
  t.Put("b", {3, 0});
  t.Put("a", {4, 0});
  ASSERT_NE(t.Find("a"), nullptr);
  EXPECT_EQ(t.Find("a")->modified(), (Revision{4, 0}));
  EXPECT_EQ(t.Find("c"), nullptr);
  EXPECT_FALSE(Live(t, "a", 1));
  EXPECT_TRUE(Live(t, "a", 2));

  // A deleted key stays indexed until compaction drops its history.
  ASSERT_TRUE(t.Tombstone("b", {5, 0}));
  EXPECT_FALSE(t.Tombstone("b", {6, 0}));
  EXPECT_FALSE(t.Tombstone("zz", {6, 0}));
  EXPECT_TRUE(Live(t, "b", 4));
  EXPECT_FALSE(Live(t, "b", 5));
  t.Compact(5);
  EXPECT_EQ(t.Find("b"), nullptr);
  EXPECT_EQ(t.size(), 1u);
  ExpectConsistent(t, 5);

  // Put again after the erase: found again, a new entry.
  t.Put("b", {6, 0});
  ASSERT_NE(t.Find("b"), nullptr);
  EXPECT_TRUE(Live(t, "b", 6));

  // Undo: put back a saved entry, or remove one that did not exist.
  auto saved = t.Snapshot("a");
  ASSERT_TRUE(saved.has_value());
  t.Put("a", {7, 0});
  t.Reset("a", saved);
  EXPECT_EQ(t.Find("a")->modified(), (Revision{4, 0}));
  t.Put("new", {8, 0});
  t.Reset("new", std::nullopt);
  EXPECT_EQ(t.Find("new"), nullptr);
  t.Reset("never", std::nullopt);
  EXPECT_EQ(t.Find("never"), nullptr);
  t.Reset("c", saved);
  EXPECT_NE(t.Find("c"), nullptr);
  ExpectConsistent(t, 8);

  // Restore from rows: a leading tombstone is skipped, not indexed.
  TreeIndex r;
  r.RestoreRow("x", {3, 0}, /*tombstone=*/true, 0, 0);
  EXPECT_EQ(r.Find("x"), nullptr);
  r.RestoreRow("x", {4, 0}, false, 2, 3);
  r.RestoreRow("x", {5, 0}, true, 0, 0);
  ASSERT_NE(r.Find("x"), nullptr);
  EXPECT_TRUE(Live(r, "x", 4));
  EXPECT_FALSE(Live(r, "x", 5));
}

TEST(TreeIndex, ManyKeysSurviveRehashAndErase) {
  // Enough keys to rehash the hash set several times, then compaction
  // erasing every other key: lookups must still find exactly the rest.
  TreeIndex t;
  constexpr int kKeys = 5000;
  int64_t rev = 1;
  for (int i = 0; i < kKeys; i++) t.Put("k" + std::to_string(i), {++rev, 0});
  for (int i = 0; i < kKeys; i += 2) {
    ASSERT_TRUE(t.Tombstone("k" + std::to_string(i), {++rev, 0}));
  }
  t.Compact(rev);
  EXPECT_EQ(t.size(), static_cast<size_t>(kKeys / 2));
  for (int i = 0; i < kKeys; i++) {
    const std::string key = "k" + std::to_string(i);
    EXPECT_EQ(t.Find(key) != nullptr, i % 2 == 1) << key;
    EXPECT_EQ(Live(t, key, rev), i % 2 == 1) << key;
  }
  KeyRange single{"k7", std::nullopt};
  int64_t total = 0;
  EXPECT_EQ(t.Revisions(single, rev, 0, &total).size(), 1u);
  EXPECT_EQ(total, 1);
  KeyRange gone{"k8", std::nullopt};
  EXPECT_TRUE(t.Revisions(gone, rev, 0, &total).empty());
  EXPECT_EQ(total, 0);
  ExpectConsistent(t, rev);
}

}  // namespace
}  // namespace keel::mvcc
