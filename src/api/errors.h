// The errors etcd's v3 gRPC API returns, as (status code, message) pairs.
//
// etcd's Go client does not look at the status code alone: it maps the
// message text back to its typed errors (rpctypes.Error), and etcdctl and
// client libraries compare those. So keel must send the exact message, byte
// for byte, with the exact code. The table is etcd's
// api/v3rpc/rpctypes/error.go; docs/etcd-errors.md lists it with the answers
// observed from a real etcd by tests/proto/etcd_wire_test.cc.
//
// Thread safety: constants and pure functions only.
#pragma once

#include <grpcpp/support/status.h>

namespace keel::api {

struct EtcdError {
  grpc::StatusCode code;
  const char* message;

  grpc::Status ToStatus() const { return grpc::Status(code, message); }
};

// The grpc::Status to return from a handler for `e`.
inline grpc::Status ErrorStatus(const EtcdError& e) { return e.ToStatus(); }

using grpc::StatusCode;

// Requests: keys, values, transactions, revisions.
inline constexpr EtcdError kErrEmptyKey{StatusCode::INVALID_ARGUMENT,
                                        "etcdserver: key is not provided"};
inline constexpr EtcdError kErrKeyNotFound{StatusCode::INVALID_ARGUMENT,
                                           "etcdserver: key not found"};
inline constexpr EtcdError kErrValueProvided{StatusCode::INVALID_ARGUMENT,
                                             "etcdserver: value is provided"};
inline constexpr EtcdError kErrLeaseProvided{StatusCode::INVALID_ARGUMENT,
                                             "etcdserver: lease is provided"};
// Newer than etcd 3.4: 3.4 grants its minimum TTL for a LeaseGrant of 0.
inline constexpr EtcdError kErrTTLZero{StatusCode::INVALID_ARGUMENT,
                                       "etcdserver: ttl is 0"};
inline constexpr EtcdError kErrTooManyOps{
    StatusCode::INVALID_ARGUMENT,
    "etcdserver: too many operations in txn request"};
inline constexpr EtcdError kErrDuplicateKey{
    StatusCode::INVALID_ARGUMENT,
    "etcdserver: duplicate key given in txn request"};
inline constexpr EtcdError kErrCompacted{
    StatusCode::OUT_OF_RANGE,
    "etcdserver: mvcc: required revision has been compacted"};
inline constexpr EtcdError kErrFutureRev{
    StatusCode::OUT_OF_RANGE,
    "etcdserver: mvcc: required revision is a future revision"};
inline constexpr EtcdError kErrNoSpace{
    StatusCode::RESOURCE_EXHAUSTED,
    "etcdserver: mvcc: database space exceeded"};

// Leases.
inline constexpr EtcdError kErrLeaseNotFound{
    StatusCode::NOT_FOUND, "etcdserver: requested lease not found"};
inline constexpr EtcdError kErrLeaseExist{StatusCode::FAILED_PRECONDITION,
                                          "etcdserver: lease already exists"};
inline constexpr EtcdError kErrLeaseTTLTooLarge{
    StatusCode::OUT_OF_RANGE, "etcdserver: too large lease TTL"};

// Membership.
inline constexpr EtcdError kErrMemberExist{
    StatusCode::FAILED_PRECONDITION, "etcdserver: member ID already exist"};
inline constexpr EtcdError kErrPeerURLExist{
    StatusCode::FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"};
inline constexpr EtcdError kErrMemberNotEnoughStarted{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: re-configuration failed due to not enough started members"};
inline constexpr EtcdError kErrMemberBadURLs{
    StatusCode::INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"};
inline constexpr EtcdError kErrMemberNotFound{StatusCode::NOT_FOUND,
                                              "etcdserver: member not found"};
inline constexpr EtcdError kErrMemberNotLearner{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: can only promote a learner member"};
inline constexpr EtcdError kErrLearnerNotReady{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: can only promote a learner member which is in sync with "
    "leader"};
inline constexpr EtcdError kErrTooManyLearners{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: too many learner members in cluster"};

// Request size and rate.
inline constexpr EtcdError kErrRequestTooLarge{
    StatusCode::INVALID_ARGUMENT, "etcdserver: request is too large"};
inline constexpr EtcdError kErrTooManyRequests{StatusCode::RESOURCE_EXHAUSTED,
                                               "etcdserver: too many requests"};

// Authentication and authorization.
inline constexpr EtcdError kErrRootUserNotExist{
    StatusCode::FAILED_PRECONDITION, "etcdserver: root user does not exist"};
inline constexpr EtcdError kErrRootRoleNotExist{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: root user does not have root role"};
inline constexpr EtcdError kErrUserAlreadyExist{
    StatusCode::FAILED_PRECONDITION, "etcdserver: user name already exists"};
inline constexpr EtcdError kErrUserEmpty{StatusCode::INVALID_ARGUMENT,
                                         "etcdserver: user name is empty"};
inline constexpr EtcdError kErrUserNotFound{StatusCode::FAILED_PRECONDITION,
                                            "etcdserver: user name not found"};
inline constexpr EtcdError kErrRoleAlreadyExist{
    StatusCode::FAILED_PRECONDITION, "etcdserver: role name already exists"};
inline constexpr EtcdError kErrRoleNotFound{StatusCode::FAILED_PRECONDITION,
                                            "etcdserver: role name not found"};
inline constexpr EtcdError kErrRoleEmpty{StatusCode::INVALID_ARGUMENT,
                                         "etcdserver: role name is empty"};
inline constexpr EtcdError kErrAuthFailed{
    StatusCode::INVALID_ARGUMENT,
    "etcdserver: authentication failed, invalid user ID or password"};
inline constexpr EtcdError kErrPermissionDenied{
    StatusCode::PERMISSION_DENIED, "etcdserver: permission denied"};
inline constexpr EtcdError kErrRoleNotGranted{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: role is not granted to the user"};
inline constexpr EtcdError kErrPermissionNotGranted{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: permission is not granted to the role"};
inline constexpr EtcdError kErrAuthNotEnabled{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: authentication is not enabled"};
inline constexpr EtcdError kErrInvalidAuthToken{
    StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token"};
inline constexpr EtcdError kErrInvalidAuthMgmt{
    StatusCode::INVALID_ARGUMENT, "etcdserver: invalid auth management"};
inline constexpr EtcdError kErrPermissionNotGiven{
    StatusCode::INVALID_ARGUMENT, "etcdserver: permission not given"};
inline constexpr EtcdError kErrAuthOldRevision{
    StatusCode::INVALID_ARGUMENT, "etcdserver: revision of auth store is old"};

// Leadership, availability and cluster health.
inline constexpr EtcdError kErrNoLeader{StatusCode::UNAVAILABLE,
                                        "etcdserver: no leader"};
inline constexpr EtcdError kErrNotLeader{StatusCode::FAILED_PRECONDITION,
                                         "etcdserver: not leader"};
inline constexpr EtcdError kErrLeaderChanged{StatusCode::UNAVAILABLE,
                                             "etcdserver: leader changed"};
inline constexpr EtcdError kErrNotCapable{StatusCode::UNAVAILABLE,
                                          "etcdserver: not capable"};
inline constexpr EtcdError kErrStopped{StatusCode::UNAVAILABLE,
                                       "etcdserver: server stopped"};
inline constexpr EtcdError kErrTimeout{StatusCode::UNAVAILABLE,
                                       "etcdserver: request timed out"};
inline constexpr EtcdError kErrTimeoutDueToLeaderFail{
    StatusCode::UNAVAILABLE,
    "etcdserver: request timed out, possibly due to previous leader failure"};
inline constexpr EtcdError kErrTimeoutDueToConnectionLost{
    StatusCode::UNAVAILABLE,
    "etcdserver: request timed out, possibly due to connection lost"};
inline constexpr EtcdError kErrUnhealthy{StatusCode::UNAVAILABLE,
                                         "etcdserver: unhealthy cluster"};
inline constexpr EtcdError kErrCorrupt{StatusCode::DATA_LOSS,
                                       "etcdserver: corrupt cluster"};
// etcd names this one ErrGPRCNotSupportedForLearner (sic).
inline constexpr EtcdError kErrNotSupportedForLearner{
    StatusCode::UNAVAILABLE, "etcdserver: rpc not supported for learner"};
inline constexpr EtcdError kErrBadLeaderTransferee{
    StatusCode::FAILED_PRECONDITION, "etcdserver: bad leader transferee"};
// Not in etcd's rpctypes table: its gRPC layer passes it on as Unknown.
inline constexpr EtcdError kErrTimeoutLeaderTransfer{
    StatusCode::UNKNOWN,
    "etcdserver: request timed out, leader transfer took too long"};

// Downgrades (etcd 3.5 and later).
inline constexpr EtcdError kErrClusterVersionUnavailable{
    StatusCode::UNAVAILABLE,
    "etcdserver: cluster version not found during downgrade"};
inline constexpr EtcdError kErrWrongDowngradeVersionFormat{
    StatusCode::INVALID_ARGUMENT,
    "etcdserver: wrong downgrade target version format"};
inline constexpr EtcdError kErrInvalidDowngradeTargetVersion{
    StatusCode::INVALID_ARGUMENT,
    "etcdserver: invalid downgrade target version"};
inline constexpr EtcdError kErrDowngradeInProcess{
    StatusCode::FAILED_PRECONDITION,
    "etcdserver: cluster has a downgrade job in progress"};
inline constexpr EtcdError kErrNoInflightDowngrade{
    StatusCode::FAILED_PRECONDITION, "etcdserver: no inflight downgrade job"};

// Every error above, for tests and for mapping a message back to its code.
inline constexpr EtcdError kAllEtcdErrors[] = {
    kErrEmptyKey,
    kErrKeyNotFound,
    kErrValueProvided,
    kErrLeaseProvided,
    kErrTTLZero,
    kErrTooManyOps,
    kErrDuplicateKey,
    kErrCompacted,
    kErrFutureRev,
    kErrNoSpace,
    kErrLeaseNotFound,
    kErrLeaseExist,
    kErrLeaseTTLTooLarge,
    kErrMemberExist,
    kErrPeerURLExist,
    kErrMemberNotEnoughStarted,
    kErrMemberBadURLs,
    kErrMemberNotFound,
    kErrMemberNotLearner,
    kErrLearnerNotReady,
    kErrTooManyLearners,
    kErrRequestTooLarge,
    kErrTooManyRequests,
    kErrRootUserNotExist,
    kErrRootRoleNotExist,
    kErrUserAlreadyExist,
    kErrUserEmpty,
    kErrUserNotFound,
    kErrRoleAlreadyExist,
    kErrRoleNotFound,
    kErrRoleEmpty,
    kErrAuthFailed,
    kErrPermissionDenied,
    kErrRoleNotGranted,
    kErrPermissionNotGranted,
    kErrAuthNotEnabled,
    kErrInvalidAuthToken,
    kErrInvalidAuthMgmt,
    kErrPermissionNotGiven,
    kErrAuthOldRevision,
    kErrNoLeader,
    kErrNotLeader,
    kErrLeaderChanged,
    kErrNotCapable,
    kErrStopped,
    kErrTimeout,
    kErrTimeoutDueToLeaderFail,
    kErrTimeoutDueToConnectionLost,
    kErrUnhealthy,
    kErrCorrupt,
    kErrNotSupportedForLearner,
    kErrBadLeaderTransferee,
    kErrTimeoutLeaderTransfer,
    kErrClusterVersionUnavailable,
    kErrWrongDowngradeVersionFormat,
    kErrInvalidDowngradeTargetVersion,
    kErrDowngradeInProcess,
    kErrNoInflightDowngrade,
};

}  // namespace keel::api
