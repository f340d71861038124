// Env: every file operation the WAL and snapshot store make goes through
// this interface, so the same code runs on a real disk (PosixEnv), in memory
// (MemEnv) and under injected faults (FaultInjectionEnv), in the spirit of
// LevelDB's Env.
//
// The contract mirrors POSIX closely enough that the fault-injecting Env can
// model what a crash does: data written to a file is durable only after
// WritableFile::Sync(); a created, renamed or removed name is durable only
// after SyncDir() on its directory.
//
// Error mapping: ENOSPC becomes Status::NoSpace, any other failure
// Status::IOError; messages name the path.
//
// Thread safety: an Env may be used from many threads. A WritableFile has
// one writer at a time; a RandomAccessFile may be read from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace keel::wal {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes data at offset (pwrite), extending the file if needed.
  virtual Status Write(uint64_t offset, std::string_view data) = 0;
  // fdatasync: data and the size, not other metadata.
  virtual Status Sync() = 0;
  // Makes the file at least `size` bytes long, zero-filled, with the space
  // reserved (fallocate), so later writes neither allocate nor change size.
  virtual Status Allocate(uint64_t size) = 0;
  virtual Status Truncate(uint64_t size) = 0;
  virtual Status Close() = 0;
};

class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads up to n bytes at offset into *out (fewer at the end of the file).
  virtual Status Read(uint64_t offset, size_t n, std::string* out) const = 0;
};

// A whole file's contents for one sequential pass (WAL recovery).
class FileContents {
 public:
  virtual ~FileContents() = default;
  virtual std::string_view data() const = 0;
  // The reader will not look at data()[0, offset) again: its memory may be
  // given back (a mapping's pages leave the resident set).
  virtual void Release(uint64_t offset) { (void)offset; }
};

class Env {
 public:
  virtual ~Env() = default;

  // The process-wide POSIX environment (never deleted).
  static Env* Posix();

  // Opens for writing, creating the file if it is missing; truncates it to
  // zero bytes if `truncate`.
  virtual Result<std::unique_ptr<WritableFile>> OpenWritable(
      const std::string& path, bool truncate) = 0;
  virtual Result<std::unique_ptr<RandomAccessFile>> OpenReadable(
      const std::string& path) = 0;
  virtual Status ReadFile(const std::string& path, std::string* out) = 0;
  // The file's contents for one pass. The default reads it into memory;
  // PosixEnv maps it, so that a 64 MiB WAL segment does not cost 64 MiB of
  // heap while it is scanned.
  virtual Result<std::unique_ptr<FileContents>> ReadWholeFile(
      const std::string& path);
  virtual bool FileExists(const std::string& path) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  // Names (not paths) of the directory's entries, sorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // Creates the directory (and missing parents); OK if it exists.
  virtual Status CreateDir(const std::string& dir) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Atomically replaces `to` by `from` (rename(2)).
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // fsync of the directory: makes creations, renames and removals durable.
  virtual Status SyncDir(const std::string& dir) = 0;
};

// Path helpers shared by the Env implementations and their users.
std::string JoinPath(std::string_view dir, std::string_view name);
std::string DirName(std::string_view path);

}  // namespace keel::wal
