#include "server/convert.h"

namespace keel::server {

mvcc::RangeRequest FromPb(const etcdserverpb::RangeRequest& r) {
  mvcc::RangeRequest m;
  m.key = r.key();
  m.range_end = r.range_end();
  m.limit = r.limit();
  m.revision = r.revision();
  m.sort_order = static_cast<mvcc::SortOrder>(r.sort_order());
  m.sort_target = static_cast<mvcc::SortTarget>(r.sort_target());
  m.serializable = r.serializable();
  m.keys_only = r.keys_only();
  m.count_only = r.count_only();
  m.min_mod_revision = r.min_mod_revision();
  m.max_mod_revision = r.max_mod_revision();
  m.min_create_revision = r.min_create_revision();
  m.max_create_revision = r.max_create_revision();
  return m;
}

mvcc::PutRequest FromPb(const etcdserverpb::PutRequest& r) {
  mvcc::PutRequest m;
  m.key = r.key();
  m.value = r.value();
  m.lease = r.lease();
  m.prev_kv = r.prev_kv();
  m.ignore_value = r.ignore_value();
  m.ignore_lease = r.ignore_lease();
  return m;
}

mvcc::DeleteRangeRequest FromPb(const etcdserverpb::DeleteRangeRequest& r) {
  mvcc::DeleteRangeRequest m;
  m.key = r.key();
  m.range_end = r.range_end();
  m.prev_kv = r.prev_kv();
  return m;
}

namespace {

mvcc::RequestOp OpFromPb(const etcdserverpb::RequestOp& op);

mvcc::Compare CompareFromPb(const etcdserverpb::Compare& c) {
  mvcc::Compare m;
  m.result = static_cast<mvcc::Compare::Result>(c.result());
  m.target = static_cast<mvcc::Compare::Target>(c.target());
  m.key = c.key();
  m.range_end = c.range_end();
  using T = mvcc::Compare::Target;
  switch (c.target_union_case()) {
    case etcdserverpb::Compare::kVersion:
      m.union_case = T::kVersion;
      m.version = c.version();
      break;
    case etcdserverpb::Compare::kCreateRevision:
      m.union_case = T::kCreate;
      m.create_revision = c.create_revision();
      break;
    case etcdserverpb::Compare::kModRevision:
      m.union_case = T::kMod;
      m.mod_revision = c.mod_revision();
      break;
    case etcdserverpb::Compare::kValue:
      m.union_case = T::kValue;
      m.value = c.value();
      break;
    case etcdserverpb::Compare::kLease:
      m.union_case = T::kLease;
      m.lease = c.lease();
      break;
    case etcdserverpb::Compare::TARGET_UNION_NOT_SET:
      break;
  }
  return m;
}

mvcc::RequestOp OpFromPb(const etcdserverpb::RequestOp& op) {
  switch (op.request_case()) {
    case etcdserverpb::RequestOp::kRequestRange:
      return mvcc::OpRange(FromPb(op.request_range()));
    case etcdserverpb::RequestOp::kRequestPut:
      return mvcc::OpPut(FromPb(op.request_put()));
    case etcdserverpb::RequestOp::kRequestDeleteRange:
      return mvcc::OpDelete(FromPb(op.request_delete_range()));
    case etcdserverpb::RequestOp::kRequestTxn:
      return mvcc::OpTxn(FromPb(op.request_txn()));
    case etcdserverpb::RequestOp::REQUEST_NOT_SET:
      break;
  }
  // An empty op: etcd treats it as an empty range of key "".
  return mvcc::OpRange(mvcc::RangeRequest{});
}

}  // namespace

mvcc::TxnRequest FromPb(const etcdserverpb::TxnRequest& r) {
  mvcc::TxnRequest m;
  for (const auto& c : r.compare()) m.compare.push_back(CompareFromPb(c));
  for (const auto& op : r.success()) m.success.push_back(OpFromPb(op));
  for (const auto& op : r.failure()) m.failure.push_back(OpFromPb(op));
  return m;
}

void ToPb(const mvcc::KeyValue& kv, mvccpb::KeyValue* out) {
  out->set_key(kv.key);
  out->set_create_revision(kv.create_revision);
  out->set_mod_revision(kv.mod_revision);
  out->set_version(kv.version);
  out->set_value(kv.value);
  out->set_lease(kv.lease);
}

void ToPb(const mvcc::RangeResponse& r, etcdserverpb::RangeResponse* out) {
  out->mutable_header()->set_revision(r.header.revision);
  out->mutable_kvs()->Reserve(static_cast<int>(r.kvs.size()));
  for (const auto& kv : r.kvs) ToPb(kv, out->add_kvs());
  out->set_more(r.more);
  out->set_count(r.count);
}

void ToPb(mvcc::RangeResponse&& r, etcdserverpb::RangeResponse* out) {
  out->mutable_header()->set_revision(r.header.revision);
  out->mutable_kvs()->Reserve(static_cast<int>(r.kvs.size()));
  for (mvcc::KeyValue& kv : r.kvs) {
    mvccpb::KeyValue* o = out->add_kvs();
    o->set_key(std::move(kv.key));
    o->set_create_revision(kv.create_revision);
    o->set_mod_revision(kv.mod_revision);
    o->set_version(kv.version);
    o->set_value(std::move(kv.value));
    o->set_lease(kv.lease);
  }
  out->set_more(r.more);
  out->set_count(r.count);
}

void ToPb(const mvcc::PutResponse& r, etcdserverpb::PutResponse* out) {
  out->mutable_header()->set_revision(r.header.revision);
  if (r.prev_kv) ToPb(*r.prev_kv, out->mutable_prev_kv());
}

void ToPb(const mvcc::DeleteRangeResponse& r,
          etcdserverpb::DeleteRangeResponse* out) {
  out->mutable_header()->set_revision(r.header.revision);
  out->set_deleted(r.deleted);
  for (const auto& kv : r.prev_kvs) ToPb(kv, out->add_prev_kvs());
}

void ToPb(const mvcc::TxnResponse& r, etcdserverpb::TxnResponse* out) {
  out->mutable_header()->set_revision(r.header.revision);
  out->set_succeeded(r.succeeded);
  for (const auto& resp : r.responses) {
    auto* op = out->add_responses();
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, mvcc::RangeResponse>) {
            ToPb(v, op->mutable_response_range());
          } else if constexpr (std::is_same_v<V, mvcc::PutResponse>) {
            ToPb(v, op->mutable_response_put());
          } else if constexpr (std::is_same_v<V, mvcc::DeleteRangeResponse>) {
            ToPb(v, op->mutable_response_delete_range());
          } else {
            ToPb(*v, op->mutable_response_txn());
          }
        },
        resp.response);
  }
}

bool IsReadOnly(const etcdserverpb::TxnRequest& r) {
  auto ops_read_only = [](const auto& ops) {
    for (const auto& op : ops) {
      switch (op.request_case()) {
        case etcdserverpb::RequestOp::kRequestRange:
        case etcdserverpb::RequestOp::REQUEST_NOT_SET:
          break;
        case etcdserverpb::RequestOp::kRequestTxn:
          if (!IsReadOnly(op.request_txn())) return false;
          break;
        default:
          return false;
      }
    }
    return true;
  };
  return ops_read_only(r.success()) && ops_read_only(r.failure());
}

}  // namespace keel::server
