// Inflights: the window of kApp messages sent to one follower and not yet
// acknowledged, bounded in count and in bytes.
//
// Thread safety: none; owned by a Progress.
#pragma once

#include <cstdint>
#include <deque>

#include "raft/types.h"

namespace keel::raft::tracker {

class Inflights {
 public:
  Inflights(size_t max_count, uint64_t max_bytes)
      : max_count_(max_count), max_bytes_(max_bytes) {}

  // Records a message whose last entry is `index` and whose entries total
  // `bytes`. Indexes must be added in increasing order.
  void Add(Index index, uint64_t bytes);
  // Frees every message whose last index is <= to.
  void FreeLE(Index to);
  // Frees the oldest message: the follower answered a heartbeat, so it is
  // alive; if the window's messages were lost, this lets replication go on.
  void FreeFirstOne();
  // No more messages may be sent until some are acknowledged.
  bool Full() const;
  size_t Count() const { return buf_.size(); }
  uint64_t Bytes() const { return bytes_; }
  void Reset();

 private:
  struct Item {
    Index index;
    uint64_t bytes;
  };
  size_t max_count_;
  uint64_t max_bytes_;  // 0 = unbounded
  // Invariant: indexes strictly increase front to back; bytes_ is their sum.
  std::deque<Item> buf_;
  uint64_t bytes_ = 0;
};

}  // namespace keel::raft::tracker
