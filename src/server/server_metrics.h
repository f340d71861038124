// The member's metrics, under etcd's names, help texts and types, so that
// dashboards and alerts written for etcd work on keel unchanged (see
// docs/operations.md for the list). They live in the process-wide
// metrics::Registry::Default() that /metrics serves.
//
// Some of etcd's names are odd and kept as they are:
// etcd_server_proposals_committed_total and ..._applied_total are gauges
// (the commit and applied index), etcd_server_health_success is a counter
// without _total.
//
// Thread safety: the members are atomics; use from any thread.
#pragma once

#include <chrono>

#include "metrics/metrics.h"

namespace keel::server {

struct ServerMetrics {
  metrics::Gauge& has_leader;
  metrics::Gauge& is_leader;
  metrics::Gauge& is_learner;
  metrics::Counter& leader_changes;
  metrics::Gauge& proposals_committed;
  metrics::Gauge& proposals_applied;
  metrics::Gauge& proposals_pending;
  metrics::Counter& proposals_failed;
  metrics::Counter& slow_apply;
  metrics::Counter& read_indexes_failed;
  metrics::Counter& health_success;
  metrics::Counter& health_failures;
  metrics::Gauge& snapshot_apply_in_progress;
  metrics::Histogram& snap_save_total_duration;
  metrics::Counter& mvcc_put;
  metrics::Counter& mvcc_range;
  metrics::Counter& mvcc_delete;
  metrics::Counter& mvcc_txn;

  static ServerMetrics& Get();
};

// etcd warns about an apply that took longer than this
// (etcdserver's warnApplyDuration).
constexpr std::chrono::milliseconds kWarnApplyDuration{100};

}  // namespace keel::server
