#include "raft/tracker/inflights.h"

#include "common/check.h"

namespace keel::raft::tracker {

void Inflights::Add(Index index, uint64_t bytes) {
  KEEL_CHECK(!Full()) << "cannot add into a full inflights";
  KEEL_CHECK(buf_.empty() || buf_.back().index < index)
      << "inflight indexes must increase";
  buf_.push_back({index, bytes});
  bytes_ += bytes;
}

void Inflights::FreeLE(Index to) {
  while (!buf_.empty() && buf_.front().index <= to) {
    bytes_ -= buf_.front().bytes;
    buf_.pop_front();
  }
}

void Inflights::FreeFirstOne() {
  if (buf_.empty()) return;
  bytes_ -= buf_.front().bytes;
  buf_.pop_front();
}

bool Inflights::Full() const {
  return buf_.size() >= max_count_ || (max_bytes_ != 0 && bytes_ >= max_bytes_);
}

void Inflights::Reset() {
  buf_.clear();
  bytes_ = 0;
}

}  // namespace keel::raft::tracker
