#include "wal/fault_injection_env.h"

#include <algorithm>

namespace keel::wal {
namespace {

Status CrashError(const std::string& path) {
  return Status::IOError(path + ": simulated crash (process is dead)");
}

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultInjectionEnv* env, std::string path,
                    std::unique_ptr<WritableFile> base)
      : env_(env), path_(std::move(path)), base_(std::move(base)) {}

  Status Write(uint64_t offset, std::string_view data) override {
    std::lock_guard lock(env_->mu());
    Status error;
    auto v =
        env_->BeforeFileMutation(path_, /*is_write_or_alloc=*/true, &error);
    if (v == FaultInjectionEnv::Verdict::kFail) return error;
    // A write at the crash point still reaches the page cache: that is what
    // makes a torn final write possible.
    KEEL_RETURN_IF_ERROR(base_->Write(offset, data));
    return v == FaultInjectionEnv::Verdict::kCrashPoint ? CrashError(path_)
                                                        : Status::OK();
  }

  Status Sync() override {
    std::lock_guard lock(env_->mu());
    KEEL_RETURN_IF_ERROR(env_->BeforeSync(path_));
    KEEL_RETURN_IF_ERROR(base_->Sync());
    env_->AfterSync(path_);
    return Status::OK();
  }

  Status Allocate(uint64_t size) override {
    std::lock_guard lock(env_->mu());
    Status error;
    auto v = env_->BeforeFileMutation(path_, true, &error);
    if (v == FaultInjectionEnv::Verdict::kFail) return error;
    if (v == FaultInjectionEnv::Verdict::kCrashPoint) return CrashError(path_);
    return base_->Allocate(size);
  }

  Status Truncate(uint64_t size) override {
    std::lock_guard lock(env_->mu());
    Status error;
    auto v = env_->BeforeFileMutation(path_, false, &error);
    if (v == FaultInjectionEnv::Verdict::kFail) return error;
    if (v == FaultInjectionEnv::Verdict::kCrashPoint) return CrashError(path_);
    return base_->Truncate(size);
  }

  Status Close() override { return base_->Close(); }

 private:
  FaultInjectionEnv* const env_;
  const std::string path_;
  std::unique_ptr<WritableFile> base_;
};

}  // namespace

Status FaultInjectionEnv::CountOp(bool* crash_now) {
  *crash_now = false;
  if (crashed_) return Status::IOError("simulated crash (process is dead)");
  ops_++;
  if (crash_at_ != 0 && ops_ >= crash_at_) {
    crashed_ = true;
    *crash_now = true;
  }
  return Status::OK();
}

std::string FaultInjectionEnv::DurableContents(const std::string& path) {
  auto it = durable_.find(path);
  if (it != durable_.end()) return it->second;
  std::string data;
  if (base_.FileExists(path)) (void)base_.ReadFile(path, &data);
  return data;
}

void FaultInjectionEnv::MarkDirty(const std::string& path) {
  if (durable_.count(path)) return;
  std::string data;
  if (base_.FileExists(path)) (void)base_.ReadFile(path, &data);
  durable_[path] = std::move(data);
}

FaultInjectionEnv::Verdict FaultInjectionEnv::BeforeFileMutation(
    const std::string& path, bool is_write_or_alloc, Status* error) {
  bool crash_now;
  *error = CountOp(&crash_now);
  if (!error->ok()) return Verdict::kFail;
  if (crash_now) {
    MarkDirty(path);
    return Verdict::kCrashPoint;
  }
  if (is_write_or_alloc && no_space_) {
    *error = Status::NoSpace("write " + path +
                             ": No space left on device (injected)");
    return Verdict::kFail;
  }
  MarkDirty(path);
  return Verdict::kProceed;
}

Status FaultInjectionEnv::BeforeSync(const std::string& path) {
  bool crash_now;
  KEEL_RETURN_IF_ERROR(CountOp(&crash_now));
  if (crash_now) return CrashError(path);
  if (sync_error_) {
    return Status::IOError("fdatasync " + path +
                           ": Input/output error (injected)");
  }
  return Status::OK();
}

void FaultInjectionEnv::AfterSync(const std::string& path) {
  durable_.erase(path);
}

Result<std::unique_ptr<WritableFile>> FaultInjectionEnv::OpenWritable(
    const std::string& path, bool truncate) {
  std::lock_guard lock(mu_);
  bool crash_now;
  KEEL_RETURN_IF_ERROR(CountOp(&crash_now));
  if (crash_now) return CrashError(path);
  bool exists = base_.FileExists(path);
  if (exists && truncate) MarkDirty(path);
  auto f = base_.OpenWritable(path, truncate);
  if (!f.ok()) return f.status();
  if (!exists) dir_ops_.push_back({DirOpKind::kCreate, path, "", false, ""});
  return std::unique_ptr<WritableFile>(
      new FaultWritableFile(this, path, std::move(f).value()));
}

Result<std::unique_ptr<RandomAccessFile>> FaultInjectionEnv::OpenReadable(
    const std::string& path) {
  return base_.OpenReadable(path);
}

Status FaultInjectionEnv::ReadFile(const std::string& path, std::string* out) {
  return base_.ReadFile(path, out);
}

bool FaultInjectionEnv::FileExists(const std::string& path) {
  return base_.FileExists(path);
}

Result<uint64_t> FaultInjectionEnv::FileSize(const std::string& path) {
  return base_.FileSize(path);
}

Result<std::vector<std::string>> FaultInjectionEnv::ListDir(
    const std::string& dir) {
  return base_.ListDir(dir);
}

Status FaultInjectionEnv::CreateDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  if (crashed_) return CrashError(dir);
  return base_.CreateDir(dir);
}

Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  std::lock_guard lock(mu_);
  bool crash_now;
  KEEL_RETURN_IF_ERROR(CountOp(&crash_now));
  if (crash_now) return CrashError(path);
  if (!base_.FileExists(path)) return base_.RemoveFile(path);
  std::string old = DurableContents(path);
  KEEL_RETURN_IF_ERROR(base_.RemoveFile(path));
  durable_.erase(path);
  dir_ops_.push_back({DirOpKind::kRemove, path, "", true, std::move(old)});
  return Status::OK();
}

Status FaultInjectionEnv::RenameFile(const std::string& from,
                                     const std::string& to) {
  std::lock_guard lock(mu_);
  bool crash_now;
  KEEL_RETURN_IF_ERROR(CountOp(&crash_now));
  if (crash_now) return CrashError(from);
  bool had_old = base_.FileExists(to);
  std::string old = had_old ? DurableContents(to) : "";
  KEEL_RETURN_IF_ERROR(base_.RenameFile(from, to));
  auto it = durable_.find(from);
  if (it != durable_.end()) {
    durable_[to] = std::move(it->second);
    durable_.erase(from);
  } else {
    durable_.erase(to);
  }
  dir_ops_.push_back({DirOpKind::kRename, from, to, had_old, std::move(old)});
  return Status::OK();
}

Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  bool crash_now;
  KEEL_RETURN_IF_ERROR(CountOp(&crash_now));
  if (crash_now) return CrashError(dir);
  KEEL_RETURN_IF_ERROR(base_.SyncDir(dir));
  std::erase_if(dir_ops_, [&](const DirOp& op) {
    return DirName(op.path) == dir &&
           (op.kind != DirOpKind::kRename || DirName(op.to) == dir);
  });
  return Status::OK();
}

void FaultInjectionEnv::CrashAfterOps(uint64_t n) {
  std::lock_guard lock(mu_);
  crash_at_ = ops_ + n;
}

void FaultInjectionEnv::SetSyncError(bool on) {
  std::lock_guard lock(mu_);
  sync_error_ = on;
}

void FaultInjectionEnv::SetNoSpace(bool on) {
  std::lock_guard lock(mu_);
  no_space_ = on;
}

bool FaultInjectionEnv::crashed() const {
  std::lock_guard lock(mu_);
  return crashed_;
}

uint64_t FaultInjectionEnv::op_count() const {
  std::lock_guard lock(mu_);
  return ops_;
}

Status FaultInjectionEnv::SimulateCrash(Rng* rng) {
  std::lock_guard lock(mu_);
  for (auto& [path, durable] : durable_) {
    if (!base_.FileExists(path)) continue;
    std::string current;
    KEEL_RETURN_IF_ERROR(base_.ReadFile(path, &current));
    std::string result = durable;
    if (rng != nullptr) {
      // The unsynced region starts at the first byte that differs; whole
      // sectors from there may have been written before the power went.
      size_t common = std::min(current.size(), durable.size());
      size_t d = 0;
      while (d < common && current[d] == durable[d]) d++;
      uint64_t start = d / kSectorSize * kSectorSize;
      uint64_t end = std::max(current.size(), durable.size());
      uint64_t sectors = (end - start + kSectorSize - 1) / kSectorSize;
      uint64_t keep = rng->Uniform(sectors + 1);
      if (keep == sectors) {
        result = current;
      } else {
        uint64_t keep_end =
            std::min<uint64_t>(start + keep * kSectorSize, current.size());
        if (result.size() < keep_end) result.resize(keep_end);
        if (keep_end > start) {
          std::copy(current.begin() + start, current.begin() + keep_end,
                    result.begin() + start);
        }
      }
    }
    KEEL_RETURN_IF_ERROR(base_.SetContents(path, std::move(result)));
  }
  durable_.clear();
  for (auto it = dir_ops_.rbegin(); it != dir_ops_.rend(); ++it) {
    switch (it->kind) {
      case DirOpKind::kCreate:
        if (base_.FileExists(it->path)) {
          KEEL_RETURN_IF_ERROR(base_.RemoveFile(it->path));
        }
        break;
      case DirOpKind::kRemove:
        KEEL_RETURN_IF_ERROR(base_.SetContents(it->path, it->old_data));
        break;
      case DirOpKind::kRename:
        KEEL_RETURN_IF_ERROR(base_.RenameFile(it->to, it->path));
        if (it->had_old) {
          KEEL_RETURN_IF_ERROR(base_.SetContents(it->to, it->old_data));
        }
        break;
    }
  }
  dir_ops_.clear();
  crashed_ = false;
  crash_at_ = 0;
  return Status::OK();
}

Status FaultInjectionEnv::FlipBit(const std::string& path, uint64_t offset,
                                  int bit) {
  std::lock_guard lock(mu_);
  std::string data;
  KEEL_RETURN_IF_ERROR(base_.ReadFile(path, &data));
  if (offset >= data.size()) {
    return Status::InvalidArgument("FlipBit beyond the end of " + path);
  }
  data[offset] = static_cast<char>(data[offset] ^ (1 << bit));
  KEEL_RETURN_IF_ERROR(base_.SetContents(path, std::move(data)));
  auto it = durable_.find(path);
  if (it != durable_.end() && offset < it->second.size()) {
    it->second[offset] = static_cast<char>(it->second[offset] ^ (1 << bit));
  }
  return Status::OK();
}

}  // namespace keel::wal
