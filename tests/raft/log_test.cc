// Tests of the Raft log (stable + unstable), MemoryStorage and the codec.
#include <gtest/gtest.h>

#include "common/rng.h"
#include "raft/codec.h"
#include "raft/raft_log.h"

namespace keel::raft {
namespace {

std::vector<Entry> Ents(std::vector<std::pair<Index, Term>> it) {
  std::vector<Entry> out;
  for (auto [i, t] : it) out.push_back(Entry{t, i, EntryType::kNormal, "d"});
  return out;
}

TEST(RaftLogTest, FindConflict) {
  MemoryStorage s;
  RaftLog log(&s, UINT64_MAX);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  EXPECT_EQ(log.FindConflict({}), 0u);
  EXPECT_EQ(log.FindConflict(Ents({{1, 1}, {2, 2}})), 0u);          // all match
  EXPECT_EQ(log.FindConflict(Ents({{2, 2}, {3, 3}, {4, 4}})), 4u);  // new
  EXPECT_EQ(log.FindConflict(Ents({{2, 2}, {3, 4}})), 3u);  // term differs
}

TEST(RaftLogTest, MaybeAppendTruncatesConflictsButNeverCommitted) {
  MemoryStorage s;
  RaftLog log(&s, UINT64_MAX);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  log.CommitTo(1);
  // Mismatching (index, term): rejected.
  EXPECT_FALSE(log.MaybeAppend(3, 2, 3, Ents({{4, 4}})).has_value());
  // Conflict at 3: the suffix from 3 is replaced.
  auto last = log.MaybeAppend(2, 2, 3, Ents({{3, 4}, {4, 4}}));
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(*last, 4u);
  EXPECT_EQ(log.TermAt(3).value(), 4u);
  EXPECT_EQ(log.committed(), 3u);
  // Commit never moves beyond the last new entry of the message.
  log.MaybeAppend(1, 1, 100, {});
  EXPECT_EQ(log.committed(), 3u);
  EXPECT_DEATH(log.MaybeAppend(0, 0, 3, Ents({{1, 9}})), "committed");
}

TEST(RaftLogTest, FindConflictByTerm) {
  MemoryStorage s;
  RaftLog log(&s, UINT64_MAX);
  log.Append(Ents({{1, 1}, {2, 1}, {3, 2}, {4, 2}, {5, 5}, {6, 5}}));
  EXPECT_EQ(log.FindConflictByTerm(6, 4), (std::pair<Index, Term>{4, 2}));
  EXPECT_EQ(log.FindConflictByTerm(6, 5), (std::pair<Index, Term>{6, 5}));
  EXPECT_EQ(log.FindConflictByTerm(4, 1), (std::pair<Index, Term>{2, 1}));
  EXPECT_EQ(log.FindConflictByTerm(6, 0), (std::pair<Index, Term>{0, 0}));
}

TEST(RaftLogTest, UnstableThenStableAndCommittedEntries) {
  MemoryStorage s;
  RaftLog log(&s, UINT64_MAX);
  log.Append(Ents({{1, 1}, {2, 1}}));
  EXPECT_EQ(log.UnstableEntries().size(), 2u);
  ASSERT_TRUE(s.Append(log.UnstableEntries()).ok());
  log.StableTo(2, 1);
  EXPECT_TRUE(log.UnstableEntries().empty());
  log.CommitTo(2);
  EXPECT_EQ(log.NextCommittedEntries().size(), 2u);
  log.AcceptApplying(2);
  EXPECT_FALSE(log.HasNextCommittedEntries());
  log.AppliedTo(2);
  EXPECT_EQ(log.applied(), 2u);
  // StableTo with a stale term does nothing.
  log.Append(Ents({{3, 2}}));
  log.StableTo(3, 1);
  EXPECT_EQ(log.UnstableEntries().size(), 1u);
}

TEST(MemoryStorageTest, CompactSnapshotAndErrors) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Ents({{1, 1}, {2, 1}, {3, 2}, {4, 3}})).ok());
  EXPECT_EQ(s.FirstIndex(), 1u);
  EXPECT_EQ(s.LastIndex(), 4u);
  ConfState cs{{1, 2, 3}, {}, {}, {}, false};
  ASSERT_TRUE(s.CreateSnapshot(3, &cs, "state").ok());
  ASSERT_TRUE(s.Compact(3).ok());
  EXPECT_EQ(s.FirstIndex(), 4u);
  EXPECT_EQ(s.TermAt(3).value(), 2u);
  EXPECT_TRUE(s.TermAt(2).status().IsCompacted());
  EXPECT_TRUE(s.Entries(3, 5, UINT64_MAX).status().IsCompacted());
  EXPECT_TRUE(s.Entries(4, 6, UINT64_MAX).status().IsUnavailable());
  EXPECT_EQ(s.Entries(4, 5, UINT64_MAX)->size(), 1u);
  EXPECT_EQ(s.GetSnapshot()->data, "state");
  EXPECT_EQ(s.GetSnapshot()->metadata.conf_state, cs);
  // Size limit: always at least one entry.
  ASSERT_TRUE(s.Append(Ents({{5, 3}, {6, 3}})).ok());
  EXPECT_EQ(s.Entries(4, 7, 1)->size(), 1u);
  EXPECT_EQ(
      s.Entries(4, 7, 2 * Entry{3, 4, EntryType::kNormal, "d"}.Size())->size(),
      2u);
  // Append truncates a conflicting suffix.
  ASSERT_TRUE(s.Append(Ents({{5, 4}})).ok());
  EXPECT_EQ(s.LastIndex(), 5u);
  EXPECT_EQ(s.TermAt(5).value(), 4u);
}

TEST(CodecTest, RoundTripsAndRejectsGarbage) {
  Message m;
  m.type = MessageType::kSnap;
  m.to = 2;
  m.from = 1;
  m.term = 7;
  m.log_term = 6;
  m.index = 100;
  m.commit = 99;
  m.reject = true;
  m.reject_hint = 42;
  m.context = "ctx";
  m.entries = Ents({{101, 7}, {102, 7}});
  m.entries[1].type = EntryType::kConfChange;
  auto snap = std::make_shared<Snapshot>();
  snap->data = std::string("\0snap", 5);
  snap->metadata = {ConfState{{1, 2}, {3}, {1, 4}, {5}, true}, 90, 5};
  m.snapshot = snap;
  std::string buf;
  EncodeMessage(m, &buf);
  Message got;
  ASSERT_TRUE(DecodeMessage(buf, &got));
  EXPECT_EQ(got, m);
  // Every truncation is rejected, never read past the end.
  for (size_t n = 0; n < buf.size(); n++) {
    Message tmp;
    EXPECT_FALSE(DecodeMessage(std::string_view(buf).substr(0, n), &tmp)) << n;
  }
  // Random bytes never crash the decoder.
  SeededRng rng(7);
  for (int i = 0; i < 2000; i++) {
    std::string junk(rng.Uniform(64), '\0');
    for (char& c : junk) c = static_cast<char>(rng.Next());
    Message tmp;
    (void)DecodeMessage(junk, &tmp);
    ConfChange cc;
    (void)DecodeConfChange(junk, &cc);
  }
  ConfChange cc{
      ConfChangeTransition::kJointExplicit,
      {{ConfChangeType::kAddLearnerNode, 4}, {ConfChangeType::kRemoveNode, 1}},
      "peer-urls"};
  buf.clear();
  EncodeConfChange(cc, &buf);
  ConfChange cc2;
  ASSERT_TRUE(DecodeConfChange(buf, &cc2));
  EXPECT_EQ(cc, cc2);
  HardState hs{5, 3, 77}, hs2;
  buf.clear();
  EncodeHardState(hs, &buf);
  ASSERT_TRUE(DecodeHardState(buf, &hs2));
  EXPECT_EQ(hs, hs2);
}

}  // namespace
}  // namespace keel::raft
