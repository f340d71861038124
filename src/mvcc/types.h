// Plain C++ mirrors of etcd's KV API messages (api/mvccpb/kv.proto and the
// KV part of api/etcdserverpb/rpc.proto), so the store has no protobuf
// dependency. Field names and meanings follow etcd; the API layer copies
// fields one to one. Byte strings are std::string.
//
// Key ranges (RangeRequest, DeleteRangeRequest, Compare) follow etcd:
//   range_end empty        -> just `key`
//   range_end == "\0"      -> every key >= key (key "\0" too: everything)
//   otherwise              -> [key, range_end)
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace keel::mvcc {

// A heap-allocated value with value semantics (copy = deep copy): lets a
// variant hold the recursive TxnRequest / TxnResponse.
template <typename T>
class Box {
 public:
  Box() : p_(std::make_unique<T>()) {}
  Box(T v) : p_(std::make_unique<T>(std::move(v))) {}  // NOLINT: implicit
  Box(const Box& o) : p_(std::make_unique<T>(*o.p_)) {}
  Box(Box&& o) noexcept : p_(std::move(o.p_)) {}
  Box& operator=(const Box& o) {
    if (this != &o) p_ = std::make_unique<T>(*o.p_);
    return *this;
  }
  Box& operator=(Box&& o) noexcept {
    p_ = std::move(o.p_);
    return *this;
  }
  T& operator*() { return *p_; }
  const T& operator*() const { return *p_; }
  T* operator->() { return p_.get(); }
  const T* operator->() const { return p_.get(); }

 private:
  std::unique_ptr<T> p_;  // never null except after a move
};

// mvccpb.KeyValue.
struct KeyValue {
  std::string key;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // 1 on create, +1 per put, 0 after delete
  std::string value;
  int64_t lease = 0;

  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

// The store's part of etcdserverpb.ResponseHeader; cluster_id, member_id
// and raft_term are filled by the server.
struct ResponseHeader {
  int64_t revision = 0;  // store revision after (or as seen by) the op
};

enum class SortOrder : uint8_t { kNone = 0, kAscend = 1, kDescend = 2 };
enum class SortTarget : uint8_t {
  kKey = 0,
  kVersion = 1,
  kCreate = 2,
  kMod = 3,
  kValue = 4
};

struct RangeRequest {
  std::string key;
  std::string range_end;
  int64_t limit = 0;     // 0: no limit
  int64_t revision = 0;  // <= 0: current
  SortOrder sort_order = SortOrder::kNone;
  SortTarget sort_target = SortTarget::kKey;
  bool serializable = false;  // read path choice; the store ignores it
  bool keys_only = false;
  bool count_only = false;
  int64_t min_mod_revision = 0;  // 0: no filter (same for the other three)
  int64_t max_mod_revision = 0;
  int64_t min_create_revision = 0;
  int64_t max_create_revision = 0;
};

struct RangeResponse {
  ResponseHeader header;
  std::vector<KeyValue> kvs;
  bool more = false;  // more keys matched than `limit` returned
  int64_t count = 0;  // keys in the range at the revision (before limit and
                      // before the min/max filters, as etcd)
};

struct PutRequest {
  std::string key;
  std::string value;
  int64_t lease = 0;
  bool prev_kv = false;
  bool ignore_value = false;  // keep the current value
  bool ignore_lease = false;  // keep the current lease
};

struct PutResponse {
  ResponseHeader header;
  std::optional<KeyValue> prev_kv;
};

struct DeleteRangeRequest {
  std::string key;
  std::string range_end;
  bool prev_kv = false;
};

struct DeleteRangeResponse {
  ResponseHeader header;
  int64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;
};

// etcdserverpb.Compare. target_union is a oneof in etcd: set `union_case`
// to the field that carries the operand (the helpers below do). As in
// etcd, an operand whose case differs from `target` compares as 0 / "".
struct Compare {
  enum class Result : uint8_t {
    kEqual = 0,
    kGreater = 1,
    kLess = 2,
    kNotEqual = 3
  };
  enum class Target : uint8_t {
    kVersion = 0,
    kCreate = 1,
    kMod = 2,
    kValue = 3,
    kLease = 4
  };
  Result result = Result::kEqual;
  Target target = Target::kVersion;
  std::string key;
  std::optional<Target> union_case;  // which operand is set, if any
  int64_t version = 0;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  std::string value;
  int64_t lease = 0;
  std::string range_end;  // non-empty: every key in range must satisfy

  static Compare Version(std::string key, Result r, int64_t v);
  static Compare Create(std::string key, Result r, int64_t v);
  static Compare Mod(std::string key, Result r, int64_t v);
  static Compare Value(std::string key, Result r, std::string v);
  static Compare Lease(std::string key, Result r, int64_t v);
};

struct TxnRequest;
struct TxnResponse;

// etcdserverpb.RequestOp: exactly one request.
struct RequestOp {
  std::variant<RangeRequest, PutRequest, DeleteRangeRequest, Box<TxnRequest>>
      request;
};

struct ResponseOp {
  std::variant<RangeResponse, PutResponse, DeleteRangeResponse,
               Box<TxnResponse>>
      response;
};

struct TxnRequest {
  std::vector<Compare> compare;
  std::vector<RequestOp> success;
  std::vector<RequestOp> failure;
};

struct TxnResponse {
  ResponseHeader header;
  bool succeeded = false;
  std::vector<ResponseOp> responses;
};

struct CompactResponse {
  ResponseHeader header;
};

// The Raft entry being applied: stored atomically with the data it
// produced, so that replay after a crash starts at index + 1.
struct ConsistentIndex {
  uint64_t index = 0;
  uint64_t term = 0;
  friend bool operator==(const ConsistentIndex&,
                         const ConsistentIndex&) = default;
};

struct HashKVResult {
  uint32_t hash = 0;
  int64_t revision = 0;          // the store's current revision
  int64_t compact_revision = 0;  // the store's compacted revision (-1: none)
  int64_t hash_revision = 0;     // the revision the hash covers
};

struct DbStats {
  uint64_t size_bytes = 0;         // SST files + memtables (etcd's dbSize)
  uint64_t size_in_use_bytes = 0;  // RocksDB's live-data estimate
  uint64_t keys = 0;               // keys in the index (tombstoned included)
};

// Describes a snapshot written by Store::ExportSnapshot.
struct SnapshotInfo {
  ConsistentIndex consistent_index;
  int64_t revision = 0;
  int64_t compact_revision = -1;
  uint64_t size_bytes = 0;
};

// mvccpb.Event: one change of a write revision, as a watcher sees it. A
// delete carries only the key and mod_revision (the delete's revision), as
// etcd's.
struct Event {
  enum class Type : uint8_t { kPut = 0, kDelete = 1 };
  Type type = Type::kPut;
  KeyValue kv;
  // The key as it was at mod_revision - 1, when the reader asked for it and
  // that revision is not compacted.
  std::optional<KeyValue> prev_kv;

  friend bool operator==(const Event&, const Event&) = default;
};

// Convenience constructors for ops (tests and the API layer).
inline RequestOp OpRange(RangeRequest r) { return RequestOp{std::move(r)}; }
inline RequestOp OpPut(PutRequest r) { return RequestOp{std::move(r)}; }
inline RequestOp OpDelete(DeleteRangeRequest r) {
  return RequestOp{std::move(r)};
}
RequestOp OpTxn(TxnRequest r);

}  // namespace keel::mvcc
