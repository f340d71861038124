// Status and Result<T>: how keel reports expected failures.
//
// OK costs one byte and no allocation; errors are made by the factories
// (Status::Corruption("...")) and checked with ok(). No exceptions cross
// module boundaries: a function that can fail returns Status or Result<T>.
// Broken invariants are bugs and use KEEL_CHECK (check.h) instead.
//
// Thread safety: values; a const Status may be read from many threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "common/check.h"

namespace keel {

class Status {
 public:
  enum class Code : uint8_t {
    kOk = 0,
    kNotFound,
    kCorruption,
    kInvalidArgument,
    kIOError,
    kNoSpace,
    kUnavailable,
    kCompacted,  // raft: the requested index was compacted away
    kSnapshotTemporarilyUnavailable,
    kSnapshotOutOfDate,
    kProposalDropped,   // raft: proposal refused (no leader, transfer...)
    kStepLocalMessage,  // raft: a local message type was stepped
    kStepPeerNotFound,  // raft: a response from an unknown peer
    kAborted,
    kTimedOut,
    kFailedPrecondition,
  };

  Status() = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view m) { return {Code::kNotFound, m}; }
  static Status Corruption(std::string_view m) {
    return {Code::kCorruption, m};
  }
  static Status InvalidArgument(std::string_view m) {
    return {Code::kInvalidArgument, m};
  }
  static Status IOError(std::string_view m) { return {Code::kIOError, m}; }
  static Status NoSpace(std::string_view m) { return {Code::kNoSpace, m}; }
  static Status Unavailable(std::string_view m) {
    return {Code::kUnavailable, m};
  }
  static Status Compacted(
      std::string_view m = "requested index is unavailable due to compaction") {
    return {Code::kCompacted, m};
  }
  static Status SnapshotTemporarilyUnavailable(
      std::string_view m = "snapshot is temporarily unavailable") {
    return {Code::kSnapshotTemporarilyUnavailable, m};
  }
  static Status SnapshotOutOfDate(
      std::string_view m =
          "requested index is older than the existing snapshot") {
    return {Code::kSnapshotOutOfDate, m};
  }
  static Status ProposalDropped(std::string_view m = "raft proposal dropped") {
    return {Code::kProposalDropped, m};
  }
  static Status StepLocalMessage(
      std::string_view m = "raft: cannot step raft local message") {
    return {Code::kStepLocalMessage, m};
  }
  static Status StepPeerNotFound(
      std::string_view m = "raft: cannot step as peer not found") {
    return {Code::kStepPeerNotFound, m};
  }
  static Status Aborted(std::string_view m) { return {Code::kAborted, m}; }
  static Status TimedOut(std::string_view m) { return {Code::kTimedOut, m}; }
  static Status FailedPrecondition(std::string_view m) {
    return {Code::kFailedPrecondition, m};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsCompacted() const { return code_ == Code::kCompacted; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }
  bool IsProposalDropped() const { return code_ == Code::kProposalDropped; }

  // "Corruption: <message>", or "OK".
  std::string ToString() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.msg_ == b.msg_;
  }

 private:
  Status(Code code, std::string_view msg) : code_(code), msg_(msg) {}

  Code code_ = Code::kOk;
  std::string msg_;
};

// Result<T> holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    KEEL_CHECK(!std::get<Status>(v_).ok()) << "Result built from OK status";
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    KEEL_CHECK(ok()) << status().ToString();
    return std::get<T>(v_);
  }
  const T& value() const& {
    KEEL_CHECK(ok()) << status().ToString();
    return std::get<T>(v_);
  }
  T&& value() && {
    KEEL_CHECK(ok()) << status().ToString();
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace keel

#define KEEL_RETURN_IF_ERROR(expr) \
  do {                             \
    ::keel::Status _st = (expr);   \
    if (!_st.ok()) return _st;     \
  } while (0)
