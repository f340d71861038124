#include "mvcc/errors.h"

namespace keel::mvcc {

Status MvccError(ErrorCode code) {
  switch (code) {
    case ErrorCode::kCompacted:
      return Status::Compacted(kErrCompacted);
    case ErrorCode::kFutureRevision:
      return Status::InvalidArgument(kErrFutureRevision);
    case ErrorCode::kKeyNotFound:
      return Status::NotFound(kErrKeyNotFound);
    case ErrorCode::kValueProvided:
      return Status::InvalidArgument(kErrValueProvided);
    case ErrorCode::kLeaseProvided:
      return Status::InvalidArgument(kErrLeaseProvided);
    case ErrorCode::kDuplicateKey:
      return Status::InvalidArgument(kErrDuplicateKey);
    case ErrorCode::kLeaseNotFound:
      return Status::NotFound(kErrLeaseNotFound);
    case ErrorCode::kEmptyKey:
      return Status::InvalidArgument(kErrEmptyKey);
    case ErrorCode::kNone:
    case ErrorCode::kStorage:
      break;
  }
  KEEL_UNREACHABLE() << "MvccError(" << static_cast<int>(code) << ")";
  return Status::Corruption("unreachable");
}

ErrorCode ErrorCodeOf(const Status& s) {
  if (s.ok()) return ErrorCode::kNone;
  // Messages are unique per kind, and only MvccError makes them.
  static constexpr ErrorCode kKinds[] = {
      ErrorCode::kCompacted,     ErrorCode::kFutureRevision,
      ErrorCode::kKeyNotFound,   ErrorCode::kValueProvided,
      ErrorCode::kLeaseProvided, ErrorCode::kDuplicateKey,
      ErrorCode::kLeaseNotFound, ErrorCode::kEmptyKey,
  };
  for (ErrorCode k : kKinds) {
    if (MvccError(k) == s) return k;
  }
  return ErrorCode::kStorage;
}

}  // namespace keel::mvcc
