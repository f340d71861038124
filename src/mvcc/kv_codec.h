// On-disk encoding of the data rows and meta values of the MVCC store.
//
// Data row value (column family "default", key = EncodeRevision):
//   byte     kind         1 = put, 2 = tombstone (delete)
//   lenpref  key
//   -- put rows only --
//   varint   create_revision, mod_revision, version, lease (as uint64)
//   lenpref  value
// A tombstone row carries only the key; its revision is the delete's.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mvcc/types.h"

namespace keel::mvcc {

struct Row {
  bool tombstone = false;
  KeyValue kv;  // for a tombstone only kv.key is meaningful
};

std::string EncodeRow(const Row& row);
bool DecodeRow(std::string_view in, Row* row);

// Meta keys (column family "meta"). Values are fixed64 little-endian
// (ConsistentIndex: index then term).
inline constexpr std::string_view kMetaConsistentIndex = "consistent_index";
inline constexpr std::string_view kMetaRevision = "current_revision";
inline constexpr std::string_view kMetaCompactRevision = "compact_revision";
inline constexpr std::string_view kMetaFinishedCompactRevision =
    "finished_compact_revision";

// Lease records (etcd's "lease" bucket): key kMetaLeasePrefix + the id as
// fixed64 big-endian (so they sort by id); value ttl then remaining_ttl,
// fixed64 each.
inline constexpr std::string_view kMetaLeasePrefix = "lease/";
std::string LeaseMetaKey(int64_t id);

std::string EncodeConsistentIndex(const ConsistentIndex& ci);
bool DecodeConsistentIndex(std::string_view in, ConsistentIndex* ci);
std::string EncodeInt64(int64_t v);
bool DecodeInt64(std::string_view in, int64_t* v);

}  // namespace keel::mvcc
