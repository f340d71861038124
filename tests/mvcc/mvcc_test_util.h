// Helpers for the MVCC tests: a temporary store directory and short
// request builders.
//
// Thread safety: test-only; one fixture per test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "mvcc/errors.h"
#include "mvcc/store.h"

namespace keel::mvcc::testing {

// A fresh directory under /tmp, removed on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> n{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("keel-mvcc-" + std::to_string(::getpid()) + "-" +
              std::to_string(n++)))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::unique_ptr<Store> OpenStore(const std::string& dir,
                                        StoreOptions opts = {}) {
  auto s = Store::Open(dir, std::move(opts));
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

inline PutRequest P(std::string key, std::string value, int64_t lease = 0) {
  PutRequest p;
  p.key = std::move(key);
  p.value = std::move(value);
  p.lease = lease;
  return p;
}

inline RangeRequest R(std::string key, std::string end = "", int64_t rev = 0) {
  RangeRequest r;
  r.key = std::move(key);
  r.range_end = std::move(end);
  r.revision = rev;
  return r;
}

inline DeleteRangeRequest D(std::string key, std::string end = "") {
  DeleteRangeRequest d;
  d.key = std::move(key);
  d.range_end = std::move(end);
  return d;
}

inline const std::string kAll(1, '\0');

}  // namespace keel::mvcc::testing
