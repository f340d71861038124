#include "wal/snapshot_store.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "common/coding.h"
#include "common/crc32c.h"
#include "raft/codec.h"

namespace keel::wal {
namespace {

constexpr std::string_view kMagic = "KEELSNP1";
constexpr std::string_view kSuffix = ".snap";
constexpr std::string_view kTmpSuffix = ".tmp";

bool ParseName(const std::string& name, raft::Term* term, raft::Index* index) {
  unsigned long long t, i;  // NOLINT: sscanf's types
  char tail[8];
  if (name.size() != 38 || name.substr(33) != kSuffix) return false;
  if (std::sscanf(name.c_str(), "%16llx-%16llx%7s", &t, &i, tail) != 3) {
    return false;
  }
  *term = t;
  *index = i;
  return true;
}

Status Corrupt(const std::string& path, uint64_t offset,
               std::string_view what) {
  return Status::Corruption("snapshot: " + std::string(what) + " in " + path +
                            " at offset " + std::to_string(offset));
}

}  // namespace

SnapshotStore::SnapshotStore(Env* env, std::string dir, int keep)
    : env_(env), dir_(std::move(dir)), keep_(std::max(keep, 1)) {}

std::string SnapshotStore::FileName(raft::Term term, raft::Index index) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64 "-%016" PRIx64 ".snap", term,
                index);
  return buf;
}

Status SnapshotStore::Init() {
  KEEL_RETURN_IF_ERROR(env_->CreateDir(dir_));
  auto names = env_->ListDir(dir_);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    if (name.size() > kTmpSuffix.size() &&
        name.substr(name.size() - kTmpSuffix.size()) == kTmpSuffix) {
      KEEL_RETURN_IF_ERROR(env_->RemoveFile(JoinPath(dir_, name)));
    }
  }
  return Status::OK();
}

void SnapshotStore::Encode(const raft::Snapshot& snap, std::string* out) {
  std::string meta;
  raft::EncodeSnapshotMetadata(snap.metadata, &meta);
  out->append(kMagic);
  PutFixed32(out, static_cast<uint32_t>(meta.size()));
  out->append(meta);
  PutFixed64(out, snap.data.size());
  PutFixed32(out, crc32c::Mask(crc32c::Value(*out)));
  out->append(snap.data);
  PutFixed32(out, crc32c::Mask(crc32c::Value(snap.data)));
}

Status SnapshotStore::Decode(const std::string& path, std::string_view data,
                             raft::Snapshot* snap) {
  if (data.size() < kMagic.size() + 4 ||
      data.substr(0, kMagic.size()) != kMagic) {
    return Corrupt(path, 0, "bad magic");
  }
  uint64_t meta_len = DecodeFixed32(data.data() + kMagic.size());
  uint64_t header_len = kMagic.size() + 4 + meta_len + 8;
  if (data.size() < header_len + 4)
    return Corrupt(path, data.size(), "truncated header");
  uint32_t want = crc32c::Unmask(DecodeFixed32(data.data() + header_len));
  if (crc32c::Value(data.data(), header_len) != want) {
    return Corrupt(path, 0,
                   "header checksum mismatch (bytes 0.." +
                       std::to_string(header_len) + ")");
  }
  uint64_t data_len = DecodeFixed64(data.data() + header_len - 8);
  uint64_t data_off = header_len + 4;
  if (data.size() != data_off + data_len + 4) {
    return Corrupt(path, std::min<uint64_t>(data.size(), data_off + data_len),
                   "file length does not match its header");
  }
  std::string_view body = data.substr(data_off, data_len);
  if (crc32c::Value(body) !=
      crc32c::Unmask(DecodeFixed32(data.data() + data_off + data_len))) {
    return Corrupt(path, data_off,
                   "data checksum mismatch (bytes " + std::to_string(data_off) +
                       ".." + std::to_string(data_off + data_len) + ")");
  }
  if (!raft::DecodeSnapshotMetadata(data.substr(kMagic.size() + 4, meta_len),
                                    &snap->metadata)) {
    return Corrupt(path, kMagic.size() + 4, "undecodable metadata");
  }
  snap->data.assign(body);
  return Status::OK();
}

Status SnapshotStore::Save(const raft::Snapshot& snap) {
  std::string bytes;
  Encode(snap, &bytes);
  std::string name = FileName(snap.metadata.term, snap.metadata.index);
  std::string path = JoinPath(dir_, name);
  std::string tmp = path + std::string(kTmpSuffix);
  auto f = env_->OpenWritable(tmp, /*truncate=*/true);
  if (!f.ok()) return f.status();
  Status s = (*f)->Write(0, bytes);
  if (!s.ok()) {
    (void)(*f)->Close();
    (void)env_->RemoveFile(tmp);
    return s;
  }
  s = (*f)->Sync();
  if (!s.ok()) {
    return Status::IOError("snapshot: fatal: " + s.message() +
                           " (fdatasync failed; the member must stop)");
  }
  KEEL_RETURN_IF_ERROR((*f)->Close());
  KEEL_RETURN_IF_ERROR(env_->RenameFile(tmp, path));
  s = env_->SyncDir(dir_);
  if (!s.ok()) {
    return Status::IOError("snapshot: fatal: " + s.message() +
                           " (directory fsync failed; the member must stop)");
  }
  return Status::OK();
}

Result<raft::Snapshot> SnapshotStore::Load(const std::string& path) const {
  std::string data;
  KEEL_RETURN_IF_ERROR(env_->ReadFile(path, &data));
  raft::Snapshot snap;
  KEEL_RETURN_IF_ERROR(Decode(path, data, &snap));
  return snap;
}

Result<std::vector<SnapshotFile>> SnapshotStore::List() const {
  auto names = env_->ListDir(dir_);
  if (!names.ok()) return names.status();
  std::vector<SnapshotFile> out;
  for (const std::string& name : *names) {
    SnapshotFile f;
    if (ParseName(name, &f.term, &f.index)) {
      f.path = JoinPath(dir_, name);
      out.push_back(std::move(f));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.index != b.index ? a.index > b.index : a.term > b.term;
  });
  return out;
}

Status SnapshotStore::Retain(raft::Index in_use) {
  auto files = List();
  if (!files.ok()) return files.status();
  bool removed = false;
  for (size_t i = static_cast<size_t>(keep_); i < files->size(); i++) {
    if ((*files)[i].index == in_use) continue;
    KEEL_RETURN_IF_ERROR(env_->RemoveFile((*files)[i].path));
    removed = true;
  }
  return removed ? env_->SyncDir(dir_) : Status::OK();
}

}  // namespace keel::wal
