// FaultInjectionEnv: an in-memory Env that models what a crash and a failing
// disk do, for crash-consistency tests (after LevelDB's fault-injection env).
//
// Crash model. Until WritableFile::Sync(), a file's new bytes live only in
// the "page cache"; until SyncDir(), a created, renamed or removed name is
// not durable either. SimulateCrash() is the power cut: every file goes back
// to its last synced contents, except that a random prefix of the unsynced
// bytes, in whole 512-byte sectors counted from the file's start, may have
// reached the disk (a torn write: disks write sectors atomically, not whole
// requests); unsynced directory changes are undone, newest first.
//
// Faults, each switched on explicitly:
//   - CrashAfterOps(n): the n-th mutating call from now "kills the process":
//     a Write still lands in the page cache, then that call and every later
//     one fails, until SimulateCrash().
//   - SetSyncError(true): fdatasync fails with EIO (data stays unsynced).
//   - SetNoSpace(true): Write and Allocate fail with ENOSPC, writing nothing.
//   - FlipBit(): damages durable bytes in place.
//
// Thread safety: all methods may be called from any thread (one mutex).
// SimulateCrash() must only be called once no file handle is in use.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/rng.h"
#include "wal/mem_env.h"

namespace keel::wal {

class FaultInjectionEnv final : public Env {
 public:
  static constexpr uint64_t kSectorSize = 512;

  FaultInjectionEnv() = default;

  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                     bool truncate) override;
  Result<std::unique_ptr<RandomAccessFile>> OpenReadable(
      const std::string& path) override;
  Status ReadFile(const std::string& path, std::string* out) override;
  bool FileExists(const std::string& path) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Status CreateDir(const std::string& dir) override;
  Status RemoveFile(const std::string& path) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& dir) override;

  void CrashAfterOps(uint64_t n);
  void SetSyncError(bool on);
  void SetNoSpace(bool on);
  bool crashed() const;
  // Mutating calls made so far (what CrashAfterOps counts).
  uint64_t op_count() const;

  // Power loss; see the file comment. With rng == nullptr nothing unsynced
  // survives (no tear). Clears the crashed state and the crash trigger.
  Status SimulateCrash(Rng* rng);
  // Flips one bit of a file's durable contents (a media error).
  Status FlipBit(const std::string& path, uint64_t offset, int bit);

  // For the file classes below. kCrashPoint: this call is where the process
  // dies; a write still lands in the page cache, other calls do nothing.
  enum class Verdict { kProceed, kCrashPoint, kFail };
  Verdict BeforeFileMutation(const std::string& path, bool is_write_or_alloc,
                             Status* error);
  Status BeforeSync(const std::string& path);
  void AfterSync(const std::string& path);
  std::mutex& mu() { return mu_; }

 private:
  enum class DirOpKind { kCreate, kRemove, kRename };
  struct DirOp {
    DirOpKind kind;
    std::string path;      // created/removed file; rename source
    std::string to;        // rename target
    bool had_old = false;  // rename target or removed file existed
    std::string old_data;  // durable contents replaced or removed
  };

  // Counts a mutating call; fails it if the process has "crashed".
  // Requires mu_.
  Status CountOp(bool* crash_now);
  // Durable contents of path as of now. Requires mu_.
  std::string DurableContents(const std::string& path);
  // Remembers the durable contents before the first unsynced change.
  // Requires mu_.
  void MarkDirty(const std::string& path);

  mutable std::mutex mu_;
  MemEnv base_;  // guarded by mu_ (for its mutations)
  // Last synced contents of files changed since their last Sync().
  std::map<std::string, std::string> durable_;  // guarded by mu_
  std::vector<DirOp> dir_ops_;  // guarded by mu_; not yet SyncDir'ed
  uint64_t ops_ = 0;            // guarded by mu_
  uint64_t crash_at_ = 0;       // guarded by mu_; 0: never
  bool crashed_ = false;        // guarded by mu_
  bool sync_error_ = false;     // guarded by mu_
  bool no_space_ = false;       // guarded by mu_
};

}  // namespace keel::wal
