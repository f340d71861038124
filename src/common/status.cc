#include "common/status.h"

namespace keel {

std::string Status::ToString() const {
  const char* name = "";
  switch (code_) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      name = "NotFound";
      break;
    case Code::kCorruption:
      name = "Corruption";
      break;
    case Code::kInvalidArgument:
      name = "InvalidArgument";
      break;
    case Code::kIOError:
      name = "IOError";
      break;
    case Code::kNoSpace:
      name = "NoSpace";
      break;
    case Code::kUnavailable:
      name = "Unavailable";
      break;
    case Code::kCompacted:
      name = "Compacted";
      break;
    case Code::kSnapshotTemporarilyUnavailable:
      name = "SnapshotTemporarilyUnavailable";
      break;
    case Code::kSnapshotOutOfDate:
      name = "SnapshotOutOfDate";
      break;
    case Code::kProposalDropped:
      name = "ProposalDropped";
      break;
    case Code::kStepLocalMessage:
      name = "StepLocalMessage";
      break;
    case Code::kStepPeerNotFound:
      name = "StepPeerNotFound";
      break;
    case Code::kAborted:
      name = "Aborted";
      break;
    case Code::kTimedOut:
      name = "TimedOut";
      break;
    case Code::kFailedPrecondition:
      name = "FailedPrecondition";
      break;
  }
  return std::string(name) + ": " + msg_;
}

}  // namespace keel
