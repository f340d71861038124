// Env implementations: the POSIX one on a real directory, MemEnv, and the
// crash and fault model of FaultInjectionEnv.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/rng.h"
#include "wal/fault_injection_env.h"
#include "wal/mem_env.h"

namespace keel::wal {
namespace {

std::string Read(Env* env, const std::string& path) {
  std::string s;
  EXPECT_TRUE(env->ReadFile(path, &s).ok()) << path;
  return s;
}

void Write(Env* env, const std::string& path, uint64_t off,
           const std::string& data, bool sync) {
  auto f = env->OpenWritable(path, false);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE((*f)->Write(off, data).ok());
  if (sync) {
    ASSERT_TRUE((*f)->Sync().ok());
  }
  ASSERT_TRUE((*f)->Close().ok());
}

void ExerciseEnv(Env* env, const std::string& dir) {
  ASSERT_TRUE(env->CreateDir(dir + "/sub").ok());
  std::string a = dir + "/sub/a";
  {
    auto f = env->OpenWritable(a, true);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Allocate(4096).ok());
    ASSERT_TRUE((*f)->Write(10, "hello").ok());
    ASSERT_TRUE((*f)->Sync().ok());
    ASSERT_TRUE((*f)->Close().ok());
  }
  EXPECT_EQ(*env->FileSize(a), 4096u);
  std::string got = Read(env, a);
  {
    // The same bytes through ReadWholeFile (mapped by PosixEnv), also
    // after the reader gave back what it read.
    auto whole = env->ReadWholeFile(a);
    ASSERT_TRUE(whole.ok()) << whole.status().ToString();
    EXPECT_EQ(std::string((*whole)->data()), got);
    (*whole)->Release(4096);
  }
  EXPECT_EQ(got.substr(10, 5), "hello");
  EXPECT_EQ(got.substr(0, 10), std::string(10, '\0'));
  auto r = env->OpenReadable(a);
  ASSERT_TRUE(r.ok());
  std::string buf;
  ASSERT_TRUE((*r)->Read(12, 3, &buf).ok());
  EXPECT_EQ(buf, "llo");
  ASSERT_TRUE((*r)->Read(4095, 10, &buf).ok());
  EXPECT_EQ(buf.size(), 1u);
  {
    auto f = env->OpenWritable(a, false);
    ASSERT_TRUE((*f)->Truncate(12).ok());
  }
  EXPECT_EQ(Read(env, a), std::string(10, '\0') + "he");
  ASSERT_TRUE(env->RenameFile(a, dir + "/sub/b").ok());
  EXPECT_FALSE(env->FileExists(a));
  ASSERT_TRUE(env->SyncDir(dir + "/sub").ok());
  auto names = env->ListDir(dir + "/sub");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"b"});
  ASSERT_TRUE(env->RemoveFile(dir + "/sub/b").ok());
  EXPECT_TRUE(env->ListDir(dir + "/sub")->empty());
  EXPECT_FALSE(env->OpenReadable(dir + "/sub/missing").ok());
}

TEST(EnvTest, Posix) {
  std::string dir = std::filesystem::current_path().string() +
                    "/wal_env_test." + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  ExerciseEnv(Env::Posix(), dir);
  std::filesystem::remove_all(dir);
}

TEST(EnvTest, Mem) {
  MemEnv env;
  ExerciseEnv(&env, "/d");
  EXPECT_FALSE(env.OpenWritable("/nodir/x", true).ok());
}

TEST(EnvTest, FaultInjectionBehavesLikeAnEnvWithoutFaults) {
  FaultInjectionEnv env;
  ExerciseEnv(&env, "/d");
}

TEST(FaultInjectionEnvTest, CrashDropsUnsyncedDataKeepsSynced) {
  FaultInjectionEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  Write(&env, "/d/f", 0, "durable", true);
  ASSERT_TRUE(env.SyncDir("/d").ok());
  Write(&env, "/d/f", 7, "-lost", false);
  EXPECT_EQ(Read(&env, "/d/f"), "durable-lost");
  ASSERT_TRUE(env.SimulateCrash(nullptr).ok());
  EXPECT_EQ(Read(&env, "/d/f"), "durable");
}

TEST(FaultInjectionEnvTest, TearKeepsWholeSectorsOfTheUnsyncedTail) {
  for (uint64_t seed = 0; seed < 50; seed++) {
    SCOPED_TRACE(seed);
    FaultInjectionEnv env;
    ASSERT_TRUE(env.CreateDir("/d").ok());
    std::string durable(700, 'a');
    std::string later(3000, 'b');
    Write(&env, "/d/f", 0, durable, true);
    ASSERT_TRUE(env.SyncDir("/d").ok());
    Write(&env, "/d/f", durable.size(), later, false);
    SeededRng rng(seed);
    ASSERT_TRUE(env.SimulateCrash(&rng).ok());
    std::string got = Read(&env, "/d/f");
    ASSERT_GE(got.size(), durable.size());
    EXPECT_EQ(got.substr(0, durable.size()), durable);
    // What survived is a prefix ending on a sector boundary (or the end).
    EXPECT_TRUE(got.size() == durable.size() + later.size() ||
                got.size() % FaultInjectionEnv::kSectorSize == 0 ||
                got.size() == durable.size())
        << got.size();
    EXPECT_EQ(got.substr(durable.size()),
              later.substr(0, got.size() - durable.size()));
  }
}

TEST(FaultInjectionEnvTest, UnsyncedDirectoryChangesAreUndone) {
  FaultInjectionEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  Write(&env, "/d/old", 0, "old", true);
  Write(&env, "/d/gone", 0, "gone", true);
  ASSERT_TRUE(env.SyncDir("/d").ok());
  Write(&env, "/d/new", 0, "new", true);  // synced data, unsynced name
  Write(&env, "/d/tmp", 0, "replacement", true);
  ASSERT_TRUE(env.RenameFile("/d/tmp", "/d/old").ok());
  ASSERT_TRUE(env.RemoveFile("/d/gone").ok());
  EXPECT_EQ(Read(&env, "/d/old"), "replacement");
  ASSERT_TRUE(env.SimulateCrash(nullptr).ok());
  EXPECT_FALSE(env.FileExists("/d/new"));
  EXPECT_EQ(Read(&env, "/d/old"), "old");
  EXPECT_FALSE(env.FileExists("/d/tmp"));  // its creation was not durable
  EXPECT_EQ(Read(&env, "/d/gone"), "gone");
}

TEST(FaultInjectionEnvTest, SyncedDirectoryChangesSurvive) {
  FaultInjectionEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  Write(&env, "/d/tmp", 0, "x", true);
  ASSERT_TRUE(env.RenameFile("/d/tmp", "/d/final").ok());
  ASSERT_TRUE(env.SyncDir("/d").ok());
  ASSERT_TRUE(env.SimulateCrash(nullptr).ok());
  EXPECT_EQ(Read(&env, "/d/final"), "x");
  EXPECT_FALSE(env.FileExists("/d/tmp"));
}

TEST(FaultInjectionEnvTest, SyncErrorAndNoSpace) {
  FaultInjectionEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto f = env.OpenWritable("/d/f", true);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Write(0, "abc").ok());
  env.SetSyncError(true);
  Status s = (*f)->Sync();
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_NE(s.message().find("Input/output error"), std::string::npos);
  env.SetSyncError(false);
  env.SetNoSpace(true);
  s = (*f)->Write(3, "def");
  EXPECT_EQ(s.code(), Status::Code::kNoSpace);
  EXPECT_EQ((*f)->Allocate(1 << 20).code(), Status::Code::kNoSpace);
  EXPECT_EQ(Read(&env, "/d/f"), "abc");
}

TEST(FaultInjectionEnvTest, CrashAfterOpsStopsEverythingAfterwards) {
  FaultInjectionEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto f = env.OpenWritable("/d/f", true);  // op 1
  ASSERT_TRUE(f.ok());
  env.CrashAfterOps(2);
  EXPECT_TRUE((*f)->Write(0, "one").ok());   // op 2
  EXPECT_FALSE((*f)->Write(3, "two").ok());  // op 3: the crash point
  EXPECT_TRUE(env.crashed());
  EXPECT_FALSE((*f)->Sync().ok());
  EXPECT_EQ(Read(&env, "/d/f"), "onetwo");  // still in the page cache
  f->reset();
  ASSERT_TRUE(env.SimulateCrash(nullptr).ok());
  EXPECT_FALSE(env.crashed());
  EXPECT_FALSE(env.FileExists("/d/f"));  // its name was never synced
}

TEST(FaultInjectionEnvTest, FlipBit) {
  FaultInjectionEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  Write(&env, "/d/f", 0, "A", true);
  ASSERT_TRUE(env.FlipBit("/d/f", 0, 1).ok());
  EXPECT_EQ(Read(&env, "/d/f"), "C");
}

}  // namespace
}  // namespace keel::wal
