// The test-only fault file (src/server/test_faults.h): rules by name, id and
// "*", combination of drop and delay, reload on change, bad lines skipped.
#include "server/test_faults.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace keel::server {
namespace {

using transport::FaultDecision;
using Kind = FaultDecision::Kind;

class TestFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("keel-faults-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    Write("");
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void Write(const std::string& text) {
    auto tmp = path_.string() + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_);
  }
  std::unique_ptr<TestFaults> Make() {
    return std::make_unique<TestFaults>(
        path_.string(),
        [] {
          return std::map<std::string, uint64_t>{{"m1", 1}, {"m2", 2}};
        },
        42);
  }
  static raft::Message To(uint64_t id) {
    raft::Message m;
    m.to = id;
    return m;
  }
  // The file is re-read every 20 ms: wait (with a deadline) until the
  // decision for `to` is `want`.
  static bool WaitFor(TestFaults* f, uint64_t to, Kind want) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (f->Decide(To(to)).kind == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll
    }
    return false;
  }
  std::filesystem::path path_;
};

TEST_F(TestFaultsTest, NoRulesDeliverEverything) {
  auto f = Make();
  EXPECT_EQ(f->Decide(To(1)).kind, Kind::kDeliver);
  EXPECT_EQ(f->Decide(To(2)).kind, Kind::kDeliver);
}

TEST_F(TestFaultsTest, DropByNameAndByHexId) {
  Write("drop m1\n# comment\ndrop 2\n");
  auto f = Make();
  EXPECT_EQ(f->Decide(To(1)).kind, Kind::kDrop);
  EXPECT_EQ(f->Decide(To(2)).kind, Kind::kDrop);
  EXPECT_EQ(f->Decide(To(3)).kind, Kind::kDeliver);
}

TEST_F(TestFaultsTest, ReloadsWhenTheFileChanges) {
  auto f = Make();
  Write("drop m2\n");
  ASSERT_TRUE(WaitFor(f.get(), 2, Kind::kDrop));
  EXPECT_EQ(f->Decide(To(1)).kind, Kind::kDeliver);
  Write("");
  ASSERT_TRUE(WaitFor(f.get(), 2, Kind::kDeliver));
}

TEST_F(TestFaultsTest, DelayForEveryPeerAndNamedRuleReplacesStar) {
  Write("delay * 30 0\ndrop m1\n");
  auto f = Make();
  FaultDecision d = f->Decide(To(2));
  EXPECT_EQ(d.kind, Kind::kDelay);
  EXPECT_EQ(d.delay, std::chrono::milliseconds(30));
  EXPECT_EQ(f->Decide(To(1)).kind, Kind::kDrop);
}

TEST_F(TestFaultsTest, LossyAndSlowCombine) {
  Write("drop m1 0.5\ndelay m1 10 5\n");
  auto f = Make();
  int dropped = 0, delayed = 0;
  for (int i = 0; i < 1000; i++) {
    FaultDecision d = f->Decide(To(1));
    if (d.kind == Kind::kDrop) dropped++;
    if (d.kind == Kind::kDelay) {
      delayed++;
      EXPECT_GE(d.delay.count(), 10);
      EXPECT_LE(d.delay.count(), 15);
    }
  }
  EXPECT_EQ(dropped + delayed, 1000);
  EXPECT_GT(dropped, 350);
  EXPECT_LT(dropped, 650);
}

TEST_F(TestFaultsTest, BadLinesAreSkipped) {
  Write("frob m1\ndelay m1 -5\ndrop\ndrop m2\n");
  auto f = Make();
  EXPECT_EQ(f->Decide(To(1)).kind, Kind::kDeliver);
  EXPECT_EQ(f->Decide(To(2)).kind, Kind::kDrop);
}

}  // namespace
}  // namespace keel::server
