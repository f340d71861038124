// MemEnv: an Env that keeps files and directories in memory.
//
// Everything is "durable" the moment it is written: MemEnv never loses data.
// It is the fast base for unit tests and for FaultInjectionEnv, which adds
// the crash semantics on top. Directories must be created before files are
// put in them, as on a real file system, so a missing CreateDir() is caught.
//
// Thread safety: all methods may be called from any thread; open files keep
// their contents alive after RemoveFile(), like an unlinked inode.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "wal/env.h"

namespace keel::wal {

class MemEnv final : public Env {
 public:
  MemEnv();

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

  // Replaces a file's contents outright (tests, FaultInjectionEnv).
  Status SetContents(const std::string& path, std::string data);

  struct File {
    std::mutex mu;
    std::string data;  // guarded by mu
  };

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<File>> files_;  // guarded by mu_
  std::set<std::string> dirs_;                          // guarded by mu_
};

}  // namespace keel::wal
