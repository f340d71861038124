// Request checks etcd makes before a request reaches the store (its
// v3rpc/key.go): put flag conflicts and the duplicate-key rule of Txn.
// The API layer should call ValidatePut/ValidateTxn before proposing, to
// fail fast; the Store calls them again when applying (they are pure and
// deterministic, so every member agrees).
//
// Thread safety: pure functions.
#pragma once

#include "common/status.h"
#include "mvcc/types.h"

namespace keel::mvcc {

// ignore_value with a value -> kValueProvided; ignore_lease with a lease ->
// kLeaseProvided.
Status ValidatePut(const PutRequest& r);

// Every put in the txn (recursively) passes ValidatePut, and no branch
// writes a key twice (etcd's checkIntervals): a key put twice, or put and
// covered by a delete, at one level or across nested txns -> kDuplicateKey.
// Puts in the success and failure branches of one nested txn may overlap
// (only one runs). As in etcd, a delete's range is [key, range_end) taken
// literally, so a delete with range_end "\0" conflicts with no put.
// The empty key is the API layer's check (kEmptyKey), as is max-ops.
Status ValidateTxn(const TxnRequest& r);

// True when no op (recursively, in either branch) writes.
bool IsTxnReadOnly(const TxnRequest& r);

}  // namespace keel::mvcc
