// etcd's checks on a client request before it is proposed or read
// (v3rpc/key.go), shared by the blocking and the asynchronous request paths.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "etcdserverpb/rpc.pb.h"

namespace keel::server {

// etcd's "key is not provided" for an empty key.
Status CheckRangeKey(const std::string& key);
// Op counts against --max-txn-ops and non-empty keys, nested txns too.
Status CheckTxn(const etcdserverpb::TxnRequest& r, uint64_t max_ops);

}  // namespace keel::server
