// Store: Txn — compares, the duplicate-key rule, nested txns — following
// etcd's apply.go: every compare on the chosen path (nested ones too) is
// evaluated against the store as it was before the txn; the ops of that
// path are checked before any of them writes; then they run in order,
// each seeing the writes before it, all under one new revision.
#include <algorithm>

#include "mvcc/request_check.h"
#include "mvcc/store.h"
#include "mvcc/store_internal.h"

namespace keel::mvcc {

namespace {

template <typename T>
int Cmp(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

bool CompareKV(const Compare& c, const KeyValue& kv) {
  using T = Compare::Target;
  // etcd reads the oneof only when its case matches the target.
  const bool set = c.union_case == c.target;
  int result = 0;
  switch (c.target) {
    case T::kValue:
      result = Cmp(kv.value, set ? c.value : std::string());
      break;
    case T::kCreate:
      result = Cmp(kv.create_revision, set ? c.create_revision : 0);
      break;
    case T::kMod:
      result = Cmp(kv.mod_revision, set ? c.mod_revision : 0);
      break;
    case T::kVersion:
      result = Cmp(kv.version, set ? c.version : 0);
      break;
    case T::kLease:
      result = Cmp(kv.lease, set ? c.lease : 0);
      break;
  }
  switch (c.result) {
    case Compare::Result::kEqual:
      return result == 0;
    case Compare::Result::kNotEqual:
      return result != 0;
    case Compare::Result::kGreater:
      return result > 0;
    case Compare::Result::kLess:
      return result < 0;
  }
  return true;
}

const std::vector<RequestOp>& Branch(const TxnRequest& r, bool succeeded) {
  return succeeded ? r.success : r.failure;
}

}  // namespace

bool Store::ApplyCompares(const std::vector<Compare>& cmps,
                          const View& v) const {
  for (const Compare& c : cmps) {
    RangeRequest rr;
    rr.key = c.key;
    rr.range_end = c.range_end;
    auto got = RangeIn(rr, v);
    if (!got.ok()) return false;
    if (got->kvs.empty()) {
      // A missing key has no value to compare, not even "".
      if (c.target == Compare::Target::kValue) return false;
      if (!CompareKV(c, KeyValue{})) return false;
      continue;
    }
    for (const KeyValue& kv : got->kvs) {
      if (!CompareKV(c, kv)) return false;
    }
  }
  return true;
}

void Store::CompareToPath(const TxnRequest& r, const View& v,
                          std::vector<bool>* path) const {
  const bool ok = ApplyCompares(r.compare, v);
  path->push_back(ok);
  for (const RequestOp& op : Branch(r, ok)) {
    if (const auto* t = std::get_if<Box<TxnRequest>>(&op.request)) {
      CompareToPath(**t, v, path);
    }
  }
}

Status Store::CheckOps(const TxnRequest& r, const View& v,
                       const std::vector<bool>& path, size_t* pos) const {
  const bool ok = path[(*pos)++];
  for (const RequestOp& op : Branch(r, ok)) {
    if (const auto* t = std::get_if<Box<TxnRequest>>(&op.request)) {
      KEEL_RETURN_IF_ERROR(CheckOps(**t, v, path, pos));
    } else if (const auto* p = std::get_if<PutRequest>(&op.request)) {
      KEEL_RETURN_IF_ERROR(CheckPut(*p, v));
    } else if (const auto* g = std::get_if<RangeRequest>(&op.request)) {
      if (g->revision > v.rev) return MvccError(ErrorCode::kFutureRevision);
      if (g->revision > 0 && g->revision < state_->compact_rev) {
        return MvccError(ErrorCode::kCompacted);
      }
    }
  }
  return Status::OK();
}

Status Store::ApplyTxnOps(const TxnRequest& r, const std::vector<bool>& path,
                          size_t* pos, PendingWrite* w, int64_t read_rev,
                          TxnResponse* out) const {
  const bool ok = path[(*pos)++];
  out->succeeded = ok;
  const auto& ops = Branch(r, ok);
  out->responses.reserve(ops.size());
  for (const RequestOp& op : ops) {
    const View v{w != nullptr ? w->read_rev() : read_rev, w};
    if (const auto* g = std::get_if<RangeRequest>(&op.request)) {
      auto resp = RangeIn(*g, v);
      if (!resp.ok()) return resp.status();
      out->responses.push_back(ResponseOp{std::move(*resp)});
    } else if (const auto* p = std::get_if<PutRequest>(&op.request)) {
      KEEL_CHECK(w != nullptr) << "put in a read-only txn";
      auto resp = PutIn(*p, w);
      if (!resp.ok()) return resp.status();
      out->responses.push_back(ResponseOp{std::move(*resp)});
    } else if (const auto* d = std::get_if<DeleteRangeRequest>(&op.request)) {
      KEEL_CHECK(w != nullptr) << "delete in a read-only txn";
      auto resp = DeleteIn(*d, w);
      if (!resp.ok()) return resp.status();
      out->responses.push_back(ResponseOp{std::move(*resp)});
    } else {
      const auto& t = std::get<Box<TxnRequest>>(op.request);
      Box<TxnResponse> sub;
      KEEL_RETURN_IF_ERROR(ApplyTxnOps(*t, path, pos, w, read_rev, &*sub));
      sub->header.revision = w != nullptr ? w->read_rev() : read_rev;
      out->responses.push_back(ResponseOp{std::move(sub)});
    }
  }
  return Status::OK();
}

Result<TxnResponse> Store::Txn(const TxnRequest& r, ConsistentIndex ci) {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  PendingWrite w{&state_->index, state_->current_rev, ci, {}, {}};
  const View before{w.begin_rev, nullptr};
  TxnResponse resp;
  Status s = ValidateTxn(r);
  std::vector<bool> path;
  if (s.ok()) {
    CompareToPath(r, before, &path);
    size_t pos = 0;
    s = CheckOps(r, before, path, &pos);
  }
  if (s.ok()) {
    size_t pos = 0;
    s = ApplyTxnOps(r, path, &pos, &w, w.begin_rev, &resp);
  }
  if (!s.ok()) {
    w.Rollback();
    KEEL_RETURN_IF_ERROR(Commit(&w));
    return s;
  }
  resp.header.revision = w.read_rev();
  KEEL_RETURN_IF_ERROR(Commit(&w));
  return resp;
}

Result<TxnResponse> Store::ReadTxn(const TxnRequest& r) const {
  if (!IsTxnReadOnly(r)) {
    return Status::InvalidArgument("ReadTxn given a txn that writes");
  }
  std::shared_lock l(mu_);
  const View now{state_->current_rev, nullptr};
  std::vector<bool> path;
  CompareToPath(r, now, &path);
  size_t pos = 0;
  KEEL_RETURN_IF_ERROR(CheckOps(r, now, path, &pos));
  TxnResponse resp;
  pos = 0;
  KEEL_RETURN_IF_ERROR(ApplyTxnOps(r, path, &pos, nullptr, now.rev, &resp));
  resp.header.revision = now.rev;
  return resp;
}

}  // namespace keel::mvcc
