// QueryMembership: how a member joining an existing cluster (etcd's
// --initial-cluster-state existing) learns the cluster id and the current
// members from a peer, before it has a member id of its own (see the
// kMembers stream in wire.h).
//
// Thread safety: a blocking function, meant for start-up; no shared state.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace keel::transport {

struct MembershipAnswer {
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;  // who answered
  std::string membership;  // the server's encoded membership, as sent
};

class TlsContext;

// Dials url ("http://host:port" or, with tls, "https://host:port": the
// peer TLS settings, this member's peer certificate presented), asks, and
// waits at most `timeout`.
Result<MembershipAnswer> QueryMembership(const std::string& url,
                                         std::chrono::milliseconds timeout,
                                         TlsContext* tls = nullptr);

}  // namespace keel::transport
