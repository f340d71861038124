// Errors of the MVCC store, with etcd's exact client-visible messages.
//
// Every expected failure of the store is a keel::Status made by MvccError():
// its message is etcd's string (what etcdctl prints), its keel code a rough
// class. The API layer recovers the precise kind with ErrorCodeOf() and maps
// it to etcd's gRPC code (e.g. kCompacted and kFutureRevision are OutOfRange,
// kKeyNotFound and kDuplicateKey InvalidArgument, kLeaseNotFound NotFound).
// Storage failures (RocksDB) keep keel's kIOError/kCorruption codes and
// classify as kStorage.
//
// Thread safety: constants and pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.h"

namespace keel::mvcc {

inline constexpr std::string_view kErrCompacted =
    "etcdserver: mvcc: required revision has been compacted";
inline constexpr std::string_view kErrFutureRevision =
    "etcdserver: mvcc: required revision is a future revision";
inline constexpr std::string_view kErrKeyNotFound = "etcdserver: key not found";
inline constexpr std::string_view kErrValueProvided =
    "etcdserver: value is provided";
inline constexpr std::string_view kErrLeaseProvided =
    "etcdserver: lease is provided";
inline constexpr std::string_view kErrDuplicateKey =
    "etcdserver: duplicate key given in txn request";
inline constexpr std::string_view kErrLeaseNotFound =
    "etcdserver: requested lease not found";
inline constexpr std::string_view kErrEmptyKey =
    "etcdserver: key is not provided";

enum class ErrorCode : uint8_t {
  kNone = 0,        // Status is OK
  kCompacted,       // gRPC OutOfRange
  kFutureRevision,  // gRPC OutOfRange
  kKeyNotFound,     // gRPC InvalidArgument
  kValueProvided,   // gRPC InvalidArgument
  kLeaseProvided,   // gRPC InvalidArgument
  kDuplicateKey,    // gRPC InvalidArgument
  kLeaseNotFound,   // gRPC NotFound
  kEmptyKey,        // gRPC InvalidArgument
  kStorage,         // anything else: RocksDB, corruption, IO (gRPC Internal)
};

// The Status for an etcd error kind; code must not be kNone or kStorage.
Status MvccError(ErrorCode code);

// The kind of a Status returned by the store.
ErrorCode ErrorCodeOf(const Status& s);

}  // namespace keel::mvcc
