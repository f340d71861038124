// Helpers shared by the WAL tests.
//
// Thread safety: GateEnv may be used from many threads; the rest are
// single-threaded helpers.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "raft/types.h"
#include "wal/mem_env.h"

namespace keel::wal::testing {

inline raft::Entry MakeEntry(raft::Index index, raft::Term term,
                             size_t bytes = 20) {
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; i++) {
    data[i] = static_cast<char>('a' + (index * 7 + i) % 26);
  }
  return raft::Entry{term, index, raft::EntryType::kNormal, std::move(data)};
}

inline std::vector<raft::Entry> MakeEntries(raft::Index lo, raft::Index hi,
                                            raft::Term term,
                                            size_t bytes = 20) {
  std::vector<raft::Entry> out;
  for (raft::Index i = lo; i < hi; i++)
    out.push_back(MakeEntry(i, term, bytes));
  return out;
}

// Waits for pred() with a deadline instead of sleeping a fixed time.
template <typename Pred>
bool WaitUntil(std::mutex& mu, std::condition_variable& cv, Pred pred,
               std::chrono::seconds deadline = std::chrono::seconds(30)) {
  std::unique_lock lock(mu);
  return cv.wait_for(lock, deadline, pred);
}

// A MemEnv whose fdatasync counts calls and can be held closed, to observe
// how many appends share one sync.
class GateEnv final : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                     bool truncate) override;
  Result<std::unique_ptr<RandomAccessFile>> OpenReadable(
      const std::string& path) override {
    return base_.OpenReadable(path);
  }
  Status ReadFile(const std::string& path, std::string* out) override {
    return base_.ReadFile(path, out);
  }
  bool FileExists(const std::string& path) override {
    return base_.FileExists(path);
  }
  Result<uint64_t> FileSize(const std::string& path) override {
    return base_.FileSize(path);
  }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    return base_.ListDir(dir);
  }
  Status CreateDir(const std::string& dir) override {
    return base_.CreateDir(dir);
  }
  Status RemoveFile(const std::string& path) override {
    return base_.RemoveFile(path);
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    return base_.RenameFile(from, to);
  }
  Status SyncDir(const std::string& dir) override { return base_.SyncDir(dir); }

  // While closed, fdatasync blocks (a slow disk we control).
  void SetGate(bool open) {
    std::lock_guard lock(mu_);
    open_ = open;
    cv_.notify_all();
  }
  int syncs() const {
    std::lock_guard lock(mu_);
    return syncs_;
  }
  int blocked() const {
    std::lock_guard lock(mu_);
    return blocked_;
  }
  // Waits (with a deadline) until a sync is blocked on the gate.
  bool WaitBlocked() {
    return WaitUntil(mu_, cv_, [&] { return blocked_ > 0; });
  }
  void OnSync() {
    std::unique_lock lock(mu_);
    blocked_++;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    blocked_--;
    syncs_++;
  }

 private:
  MemEnv base_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;  // guarded by mu_
  int syncs_ = 0;     // guarded by mu_
  int blocked_ = 0;   // guarded by mu_
};

class GateFile final : public WritableFile {
 public:
  GateFile(GateEnv* env, std::unique_ptr<WritableFile> f)
      : env_(env), f_(std::move(f)) {}
  Status Write(uint64_t off, std::string_view d) override {
    return f_->Write(off, d);
  }
  Status Sync() override {
    env_->OnSync();
    return f_->Sync();
  }
  Status Allocate(uint64_t n) override { return f_->Allocate(n); }
  Status Truncate(uint64_t n) override { return f_->Truncate(n); }
  Status Close() override { return f_->Close(); }

 private:
  GateEnv* env_;
  std::unique_ptr<WritableFile> f_;
};

inline Result<std::unique_ptr<WritableFile>> GateEnv::OpenWritable(
    const std::string& path, bool truncate) {
  auto f = base_.OpenWritable(path, truncate);
  if (!f.ok()) return f.status();
  return std::unique_ptr<WritableFile>(
      new GateFile(this, std::move(f).value()));
}

}  // namespace keel::wal::testing
