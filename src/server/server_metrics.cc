#include "server/server_metrics.h"

namespace keel::server {

ServerMetrics& ServerMetrics::Get() {
  auto& r = metrics::Registry::Default();
  static ServerMetrics* m = new ServerMetrics{
      r.AddGauge("etcd_server_has_leader",
                 "Whether or not a leader exists. 1 is existence, 0 is not."),
      r.AddGauge("etcd_server_is_leader",
                 "Whether or not this member is a leader. 1 if is, 0 "
                 "otherwise."),
      r.AddGauge("etcd_server_is_learner",
                 "Whether or not this member is a learner. 1 if is, 0 "
                 "otherwise."),
      r.AddCounter("etcd_server_leader_changes_seen_total",
                   "The number of leader changes seen."),
      r.AddGauge("etcd_server_proposals_committed_total",
                 "The total number of consensus proposals committed."),
      r.AddGauge("etcd_server_proposals_applied_total",
                 "The total number of consensus proposals applied."),
      r.AddGauge("etcd_server_proposals_pending",
                 "The current number of pending proposals to commit."),
      r.AddCounter("etcd_server_proposals_failed_total",
                   "The total number of failed proposals seen."),
      r.AddCounter("etcd_server_slow_apply_total",
                   "The total number of slow apply requests (likely "
                   "overloaded from slow disk)."),
      r.AddCounter("etcd_server_read_indexes_failed_total",
                   "The total number of failed read indexes seen."),
      r.AddCounter("etcd_server_health_success",
                   "The total number of successful health checks"),
      r.AddCounter("etcd_server_health_failures",
                   "The total number of failed health checks"),
      r.AddGauge("etcd_server_snapshot_apply_in_progress_total",
                 "1 if the server is applying the incoming snapshot. 0 if "
                 "none."),
      r.AddHistogram("etcd_debugging_snap_save_total_duration_seconds",
                     "The total latency distributions of save called by "
                     "snapshot.",
                     metrics::ExponentialBuckets(0.001, 2, 14)),
      r.AddCounter("etcd_mvcc_put_total",
                   "Total number of puts seen by this member."),
      r.AddCounter("etcd_mvcc_range_total",
                   "Total number of ranges seen by this member."),
      r.AddCounter("etcd_mvcc_delete_total",
                   "Total number of deletes seen by this member."),
      r.AddCounter("etcd_mvcc_txn_total",
                   "Total number of txns seen by this member."),
  };
  return *m;
}

}  // namespace keel::server
