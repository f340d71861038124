// Conversions between etcd's protobuf messages (etcdserverpb, mvccpb) and
// the MVCC store's plain C++ types (src/mvcc/types.h). Field for field.
//
// Thread safety: pure functions.
#pragma once

#include "etcdserverpb/rpc.pb.h"
#include "mvcc/types.h"

namespace keel::server {

mvcc::RangeRequest FromPb(const etcdserverpb::RangeRequest& r);
mvcc::PutRequest FromPb(const etcdserverpb::PutRequest& r);
mvcc::DeleteRangeRequest FromPb(const etcdserverpb::DeleteRangeRequest& r);
mvcc::TxnRequest FromPb(const etcdserverpb::TxnRequest& r);

// The store's header revision goes to out->header; the caller fills the
// rest of the header.
void ToPb(const mvcc::KeyValue& kv, mvccpb::KeyValue* out);
void ToPb(const mvcc::RangeResponse& r, etcdserverpb::RangeResponse* out);
// Moves the keys and values (a read's response is built once and dropped).
void ToPb(mvcc::RangeResponse&& r, etcdserverpb::RangeResponse* out);
void ToPb(const mvcc::PutResponse& r, etcdserverpb::PutResponse* out);
void ToPb(const mvcc::DeleteRangeResponse& r,
          etcdserverpb::DeleteRangeResponse* out);
void ToPb(const mvcc::TxnResponse& r, etcdserverpb::TxnResponse* out);

// Does the txn only read (so it can be served without going through Raft)?
bool IsReadOnly(const etcdserverpb::TxnRequest& r);

}  // namespace keel::server
