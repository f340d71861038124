#include "wal/mem_env.h"

#include <algorithm>

namespace keel::wal {
namespace {

class MemWritableFile final : public WritableFile {
 public:
  MemWritableFile(std::shared_ptr<MemEnv::File> f) : f_(std::move(f)) {}

  Status Write(uint64_t offset, std::string_view data) override {
    std::lock_guard lock(f_->mu);
    if (f_->data.size() < offset + data.size()) {
      f_->data.resize(offset + data.size());
    }
    std::copy(data.begin(), data.end(), f_->data.begin() + offset);
    return Status::OK();
  }
  Status Sync() override { return Status::OK(); }
  Status Allocate(uint64_t size) override {
    std::lock_guard lock(f_->mu);
    if (f_->data.size() < size) f_->data.resize(size);
    return Status::OK();
  }
  Status Truncate(uint64_t size) override {
    std::lock_guard lock(f_->mu);
    f_->data.resize(size);
    return Status::OK();
  }
  Status Close() override { return Status::OK(); }

 private:
  std::shared_ptr<MemEnv::File> f_;
};

class MemRandomAccessFile final : public RandomAccessFile {
 public:
  MemRandomAccessFile(std::shared_ptr<MemEnv::File> f) : f_(std::move(f)) {}
  Status Read(uint64_t offset, size_t n, std::string* out) const override {
    std::lock_guard lock(f_->mu);
    if (offset >= f_->data.size()) {
      out->clear();
    } else {
      *out = f_->data.substr(offset, n);
    }
    return Status::OK();
  }

 private:
  std::shared_ptr<MemEnv::File> f_;
};

}  // namespace

MemEnv::MemEnv() {
  dirs_.insert("/");
  dirs_.insert(".");
}

Result<std::unique_ptr<WritableFile>> MemEnv::OpenWritable(
    const std::string& path, bool truncate) {
  std::lock_guard lock(mu_);
  if (!dirs_.count(DirName(path))) {
    return Status::IOError("open " + path + ": No such file or directory");
  }
  auto& f = files_[path];
  if (f == nullptr) f = std::make_shared<File>();
  if (truncate) {
    std::lock_guard flock(f->mu);
    f->data.clear();
  }
  return std::unique_ptr<WritableFile>(new MemWritableFile(f));
}

Result<std::unique_ptr<RandomAccessFile>> MemEnv::OpenReadable(
    const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) {
    return Status::IOError("open " + path + ": No such file or directory");
  }
  return std::unique_ptr<RandomAccessFile>(new MemRandomAccessFile(it->second));
}

Status MemEnv::ReadFile(const std::string& path, std::string* out) {
  std::shared_ptr<File> f;
  {
    std::lock_guard lock(mu_);
    auto it = files_.find(path);
    if (it == files_.end()) {
      return Status::IOError("open " + path + ": No such file or directory");
    }
    f = it->second;
  }
  std::lock_guard flock(f->mu);
  *out = f->data;
  return Status::OK();
}

bool MemEnv::FileExists(const std::string& path) {
  std::lock_guard lock(mu_);
  return files_.count(path) > 0 || dirs_.count(path) > 0;
}

Result<uint64_t> MemEnv::FileSize(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) {
    return Status::IOError("stat " + path + ": No such file or directory");
  }
  std::lock_guard flock(it->second->mu);
  return static_cast<uint64_t>(it->second->data.size());
}

Result<std::vector<std::string>> MemEnv::ListDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  if (!dirs_.count(dir)) {
    return Status::IOError("opendir " + dir + ": No such file or directory");
  }
  std::set<std::string> names;
  for (const auto& [path, f] : files_) {
    if (DirName(path) == dir) names.insert(path.substr(path.rfind('/') + 1));
  }
  for (const auto& d : dirs_) {
    if (d != dir && DirName(d) == dir) names.insert(d.substr(d.rfind('/') + 1));
  }
  return std::vector<std::string>(names.begin(), names.end());
}

Status MemEnv::CreateDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  std::string d = dir;
  while (!d.empty() && !dirs_.count(d)) {
    dirs_.insert(d);
    d = DirName(d);
  }
  return Status::OK();
}

Status MemEnv::RemoveFile(const std::string& path) {
  std::lock_guard lock(mu_);
  if (files_.erase(path) == 0) {
    return Status::IOError("unlink " + path + ": No such file or directory");
  }
  return Status::OK();
}

Status MemEnv::RenameFile(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  auto it = files_.find(from);
  if (it == files_.end()) {
    return Status::IOError("rename " + from + ": No such file or directory");
  }
  auto f = it->second;
  files_.erase(it);
  files_[to] = std::move(f);
  return Status::OK();
}

Status MemEnv::SyncDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  if (!dirs_.count(dir)) {
    return Status::IOError("open " + dir + ": No such file or directory");
  }
  return Status::OK();
}

Status MemEnv::SetContents(const std::string& path, std::string data) {
  std::lock_guard lock(mu_);
  auto& f = files_[path];
  if (f == nullptr) f = std::make_shared<File>();
  std::lock_guard flock(f->mu);
  f->data = std::move(data);
  return Status::OK();
}

}  // namespace keel::wal
