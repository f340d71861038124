// Server metrics read at scrape time from the member's state: database
// size, key count, revisions, quota, identity, and per-peer traffic from
// the transport's counters.
#include "server/server.h"
#include "server/server_metrics.h"

namespace keel::server {
namespace {

// Families this file registers; removed again on Stop.
constexpr const char* kFuncNames[] = {
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_debugging_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_server_quota_backend_bytes",
    "etcd_server_id",
    "etcd_server_version",
    "etcd_cluster_version",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_sent_failures_total",
    "etcd_network_active_peers",
};

}  // namespace

void Server::RegisterMetrics() {
  auto& r = metrics::Registry::Default();
  metrics::RegisterProcessMetrics(r);
  ServerMetrics::Get();  // registers the event-driven ones
  r.AddGaugeFunc(
      "etcd_mvcc_db_total_size_in_bytes",
      "Total size of the underlying database physically allocated in bytes.",
      [this] { return static_cast<double>(store_->Stats().size_bytes); });
  r.AddGaugeFunc(
      "etcd_debugging_mvcc_db_total_size_in_bytes",
      "Total size of the underlying database physically allocated in bytes.",
      [this] { return static_cast<double>(store_->Stats().size_bytes); });
  r.AddGaugeFunc(
      "etcd_mvcc_db_total_size_in_use_in_bytes",
      "Total size of the underlying database logically in use in bytes.",
      [this] {
        return static_cast<double>(store_->Stats().size_in_use_bytes);
      });
  r.AddGaugeFunc("etcd_debugging_mvcc_keys_total", "Total number of keys.",
                 [this] { return static_cast<double>(store_->Stats().keys); });
  r.AddGaugeFunc(
      "etcd_debugging_mvcc_current_revision", "The current revision of store.",
      [this] { return static_cast<double>(store_->CurrentRevision()); });
  r.AddGaugeFunc("etcd_debugging_mvcc_compact_revision",
                 "The revision of the last compaction in store.", [this] {
                   return static_cast<double>(store_->CompactRevision());
                 });
  r.AddGaugeFunc("etcd_server_quota_backend_bytes",
                 "Current backend storage quota size in bytes.",
                 [this] { return static_cast<double>(config_.QuotaBytes()); });
  const std::string id = HexId(member_id_);
  r.AddCollector(
      "etcd_server_id",
      "Server or member ID in hexadecimal format. 1 for "
      "'server_id' label with current ID.",
      metrics::Type::kGauge, [id] {
        return std::vector<metrics::Sample>{{{{"server_id", id}}, 1}};
      });
  r.AddCollector(
      "etcd_server_version",
      "Which version is running. 1 for 'server_version' label "
      "with current version.",
      metrics::Type::kGauge, [] {
        return std::vector<metrics::Sample>{{{{"server_version", "3.5.0"}}, 1}};
      });
  r.AddCollector(
      "etcd_cluster_version",
      "Which version is running. 1 for 'cluster_version' label "
      "with current cluster version",
      metrics::Type::kGauge, [] {
        return std::vector<metrics::Sample>{{{{"cluster_version", "3.5"}}, 1}};
      });
  // Per-peer traffic, from the transport's own counters.
  auto peer_samples = [this](auto value, const char* label) {
    return [this, value, label] {
      std::vector<metrics::Sample> out;
      if (!transport_) return out;
      for (const auto& [peer, st] : transport_->AllStats()) {
        if (peer == member_id_) continue;
        out.push_back({{{label, HexId(peer)}}, value(st)});
      }
      return out;
    };
  };
  r.AddCollector("etcd_network_peer_sent_bytes_total",
                 "The total number of bytes sent to peers.",
                 metrics::Type::kCounter,
                 peer_samples(
                     [](const transport::PeerStats& s) {
                       return static_cast<double>(s.bytes_sent);
                     },
                     "To"));
  r.AddCollector("etcd_network_peer_received_bytes_total",
                 "The total number of bytes received from peers.",
                 metrics::Type::kCounter,
                 peer_samples(
                     [](const transport::PeerStats& s) {
                       return static_cast<double>(s.bytes_received);
                     },
                     "From"));
  r.AddCollector("etcd_network_peer_sent_failures_total",
                 "The total number of send failures from peers.",
                 metrics::Type::kCounter,
                 peer_samples(
                     [](const transport::PeerStats& s) {
                       return static_cast<double>(s.msgs_dropped);
                     },
                     "To"));
  const std::string local = id;
  r.AddCollector("etcd_network_active_peers",
                 "The current number of active peer connections.",
                 metrics::Type::kGauge, [this, local] {
                   std::vector<metrics::Sample> out;
                   if (!transport_) return out;
                   for (const auto& [peer, st] : transport_->AllStats()) {
                     if (peer == member_id_) continue;
                     out.push_back({{{"Local", local}, {"Remote", HexId(peer)}},
                                    st.connected ? 1.0 : 0.0});
                   }
                   return out;
                 });
}

void Server::UnregisterMetrics() {
  auto& r = metrics::Registry::Default();
  for (const char* name : kFuncNames) r.RemoveFunc(name);
}

}  // namespace keel::server
