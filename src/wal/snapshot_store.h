// SnapshotStore: raft snapshots as checksummed files in one directory.
//
// A file is "<term:016x>-<index:016x>.snap":
//
//   magic "KEELSNP1" | fixed32 meta_len | metadata (raft codec) |
//   fixed64 data_len | fixed32 header_crc | data | fixed32 data_crc
//
// header_crc covers every byte before it, data_crc the data; both are
// masked CRC32C. Save() is atomic: write "<name>.tmp", fdatasync, rename,
// fsync the directory, so a crash leaves either the old set of files or
// the new one, never half a snapshot under a final name. Load() verifies
// both checksums and reports damage as Status::Corruption naming the file
// and offset.
//
// Thread safety: none of its own; DiskStorage calls it from its writer
// thread (Save, Retain) and at open (List, Load).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "raft/types.h"
#include "wal/env.h"

namespace keel::wal {

struct SnapshotFile {
  std::string path;
  raft::Term term = 0;
  raft::Index index = 0;
};

class SnapshotStore {
 public:
  SnapshotStore(Env* env, std::string dir, int keep);

  // Creates the directory and removes temporary files of interrupted saves.
  Status Init();
  Status Save(const raft::Snapshot& snap);
  Result<raft::Snapshot> Load(const std::string& path) const;
  // Snapshot files, highest index first.
  Result<std::vector<SnapshotFile>> List() const;
  // Deletes all but the newest `keep` files; never the one at `in_use`.
  Status Retain(raft::Index in_use);

  static std::string FileName(raft::Term term, raft::Index index);
  static void Encode(const raft::Snapshot& snap, std::string* out);
  // `path` only names the file in error messages.
  static Status Decode(const std::string& path, std::string_view data,
                       raft::Snapshot* snap);
  const std::string& dir() const { return dir_; }

 private:
  Env* const env_;
  const std::string dir_;
  const int keep_;
};

}  // namespace keel::wal
