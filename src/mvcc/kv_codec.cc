#include "mvcc/kv_codec.h"

#include "common/coding.h"

namespace keel::mvcc {

namespace {
constexpr char kPutRow = 1;
constexpr char kTombstoneRow = 2;
}  // namespace

std::string EncodeRow(const Row& row) {
  std::string out;
  out.reserve(row.kv.key.size() + row.kv.value.size() + 24);
  out.push_back(row.tombstone ? kTombstoneRow : kPutRow);
  PutLengthPrefixed(&out, row.kv.key);
  if (row.tombstone) return out;
  PutVarint64(&out, static_cast<uint64_t>(row.kv.create_revision));
  PutVarint64(&out, static_cast<uint64_t>(row.kv.mod_revision));
  PutVarint64(&out, static_cast<uint64_t>(row.kv.version));
  PutVarint64(&out, static_cast<uint64_t>(row.kv.lease));
  PutLengthPrefixed(&out, row.kv.value);
  return out;
}

bool DecodeRow(std::string_view in, Row* row) {
  if (in.empty()) return false;
  const char kind = in[0];
  in.remove_prefix(1);
  std::string_view key;
  if (!GetLengthPrefixed(&in, &key)) return false;
  *row = Row{};
  row->kv.key.assign(key);
  if (kind == kTombstoneRow) {
    row->tombstone = true;
    return in.empty();
  }
  if (kind != kPutRow) return false;
  uint64_t c, m, v, l;
  std::string_view value;
  if (!GetVarint64(&in, &c) || !GetVarint64(&in, &m) || !GetVarint64(&in, &v) ||
      !GetVarint64(&in, &l) || !GetLengthPrefixed(&in, &value) || !in.empty()) {
    return false;
  }
  row->kv.create_revision = static_cast<int64_t>(c);
  row->kv.mod_revision = static_cast<int64_t>(m);
  row->kv.version = static_cast<int64_t>(v);
  row->kv.lease = static_cast<int64_t>(l);
  row->kv.value.assign(value);
  return true;
}

std::string EncodeConsistentIndex(const ConsistentIndex& ci) {
  std::string out;
  PutFixed64(&out, ci.index);
  PutFixed64(&out, ci.term);
  return out;
}

bool DecodeConsistentIndex(std::string_view in, ConsistentIndex* ci) {
  return in.size() == 16 && GetFixed64(&in, &ci->index) &&
         GetFixed64(&in, &ci->term);
}

std::string EncodeInt64(int64_t v) {
  std::string out;
  PutFixed64(&out, static_cast<uint64_t>(v));
  return out;
}

bool DecodeInt64(std::string_view in, int64_t* v) {
  uint64_t u;
  if (in.size() != 8 || !GetFixed64(&in, &u)) return false;
  *v = static_cast<int64_t>(u);
  return true;
}

std::string LeaseMetaKey(int64_t id) {
  std::string out(kMetaLeasePrefix);
  const auto u = static_cast<uint64_t>(id);
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((u >> shift) & 0xff));
  }
  return out;
}

}  // namespace keel::mvcc
