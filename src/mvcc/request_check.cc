#include "mvcc/request_check.h"

#include <set>
#include <string>
#include <vector>

#include "mvcc/errors.h"

namespace keel::mvcc {

namespace {

// A delete's key interval [begin, end); end is taken literally, compared
// as bytes (etcd's StringAffineInterval; the empty end would be infinite
// but a delete never produces one).
struct Interval {
  std::string begin;
  std::string end;
};

bool Covers(const std::vector<Interval>& dels, const std::string& k) {
  for (const Interval& iv : dels) {
    if (iv.begin <= k && k < iv.end) return true;
  }
  return false;
}

Status CheckIntervals(const std::vector<RequestOp>& reqs,
                      std::set<std::string>* puts,
                      std::vector<Interval>* dels) {
  // This level's deletes first: they conflict with puts below too.
  for (const RequestOp& op : reqs) {
    const auto* d = std::get_if<DeleteRangeRequest>(&op.request);
    if (d == nullptr) continue;
    if (!d->range_end.empty()) {
      dels->push_back({d->key, d->range_end});
    } else {
      dels->push_back({d->key, d->key + std::string(1, '\0')});
    }
  }
  for (const RequestOp& op : reqs) {
    const auto* t = std::get_if<Box<TxnRequest>>(&op.request);
    if (t == nullptr) continue;
    std::set<std::string> puts_then, puts_else;
    std::vector<Interval> dels_then, dels_else;
    KEEL_RETURN_IF_ERROR(CheckIntervals((*t)->success, &puts_then, &dels_then));
    KEEL_RETURN_IF_ERROR(CheckIntervals((*t)->failure, &puts_else, &dels_else));
    for (const std::string& k : puts_then) {
      if (puts->count(k) || Covers(*dels, k)) {
        return MvccError(ErrorCode::kDuplicateKey);
      }
      puts->insert(k);
    }
    for (const std::string& k : puts_else) {
      // then/else are exclusive: overlap between them is fine.
      if (puts->count(k) && !puts_then.count(k)) {
        return MvccError(ErrorCode::kDuplicateKey);
      }
      if (Covers(*dels, k)) return MvccError(ErrorCode::kDuplicateKey);
      puts->insert(k);
    }
    dels->insert(dels->end(), dels_then.begin(), dels_then.end());
    dels->insert(dels->end(), dels_else.begin(), dels_else.end());
  }
  for (const RequestOp& op : reqs) {
    const auto* p = std::get_if<PutRequest>(&op.request);
    if (p == nullptr) continue;
    if (puts->count(p->key) || Covers(*dels, p->key)) {
      return MvccError(ErrorCode::kDuplicateKey);
    }
    puts->insert(p->key);
  }
  return Status::OK();
}

Status ValidatePuts(const std::vector<RequestOp>& ops) {
  for (const RequestOp& op : ops) {
    if (const auto* p = std::get_if<PutRequest>(&op.request)) {
      KEEL_RETURN_IF_ERROR(ValidatePut(*p));
    } else if (const auto* t = std::get_if<Box<TxnRequest>>(&op.request)) {
      KEEL_RETURN_IF_ERROR(ValidatePuts((*t)->success));
      KEEL_RETURN_IF_ERROR(ValidatePuts((*t)->failure));
    }
  }
  return Status::OK();
}

bool OpsReadOnly(const std::vector<RequestOp>& ops) {
  for (const RequestOp& op : ops) {
    if (std::holds_alternative<PutRequest>(op.request) ||
        std::holds_alternative<DeleteRangeRequest>(op.request)) {
      return false;
    }
    if (const auto* t = std::get_if<Box<TxnRequest>>(&op.request)) {
      if (!IsTxnReadOnly(**t)) return false;
    }
  }
  return true;
}

}  // namespace

Status ValidatePut(const PutRequest& r) {
  if (r.ignore_value && !r.value.empty()) {
    return MvccError(ErrorCode::kValueProvided);
  }
  if (r.ignore_lease && r.lease != 0) {
    return MvccError(ErrorCode::kLeaseProvided);
  }
  return Status::OK();
}

Status ValidateTxn(const TxnRequest& r) {
  KEEL_RETURN_IF_ERROR(ValidatePuts(r.success));
  KEEL_RETURN_IF_ERROR(ValidatePuts(r.failure));
  {
    std::set<std::string> puts;
    std::vector<Interval> dels;
    KEEL_RETURN_IF_ERROR(CheckIntervals(r.success, &puts, &dels));
  }
  std::set<std::string> puts;
  std::vector<Interval> dels;
  return CheckIntervals(r.failure, &puts, &dels);
}

bool IsTxnReadOnly(const TxnRequest& r) {
  return OpsReadOnly(r.success) && OpsReadOnly(r.failure);
}

// types.h helpers.

Compare Compare::Version(std::string key, Result r, int64_t v) {
  Compare c;
  c.key = std::move(key);
  c.result = r;
  c.target = c.union_case.emplace(Target::kVersion);
  c.version = v;
  return c;
}

Compare Compare::Create(std::string key, Result r, int64_t v) {
  Compare c;
  c.key = std::move(key);
  c.result = r;
  c.target = c.union_case.emplace(Target::kCreate);
  c.create_revision = v;
  return c;
}

Compare Compare::Mod(std::string key, Result r, int64_t v) {
  Compare c;
  c.key = std::move(key);
  c.result = r;
  c.target = c.union_case.emplace(Target::kMod);
  c.mod_revision = v;
  return c;
}

Compare Compare::Value(std::string key, Result r, std::string v) {
  Compare c;
  c.key = std::move(key);
  c.result = r;
  c.target = c.union_case.emplace(Target::kValue);
  c.value = std::move(v);
  return c;
}

Compare Compare::Lease(std::string key, Result r, int64_t v) {
  Compare c;
  c.key = std::move(key);
  c.result = r;
  c.target = c.union_case.emplace(Target::kLease);
  c.lease = v;
  return c;
}

RequestOp OpTxn(TxnRequest r) {
  return RequestOp{Box<TxnRequest>(std::move(r))};
}

}  // namespace keel::mvcc
