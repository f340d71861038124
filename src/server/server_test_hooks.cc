// The Server's test-only hooks, enabled by explicit keel-only flags that the
// fault-injection suite (tests/jepsen) passes; see config.h.
#include <spdlog/spdlog.h>

#include "server/server.h"

namespace keel::server {

void Server::InstallTestHooks(transport::Options* to) {
  if (config_.unsafe_skip_read_index) {
    spdlog::warn(
        "UNSAFE, TEST ONLY: linearizable reads skip ReadIndex and may return "
        "stale data (--experimental-unsafe-skip-read-index)");
  }
  if (config_.test_fault_file.empty()) return;
  auto names = [this] {
    std::map<std::string, uint64_t> out;
    for (const auto& [name, urls] : config_.initial_cluster) {
      out[name] = ComputeMemberId(urls, config_.initial_cluster_token);
    }
    std::lock_guard lock(state_mu_);
    for (const auto& [id, m] : cluster_.members) {
      if (!m.name.empty()) out[m.name] = id;
    }
    return out;
  };
  test_faults_ =
      std::make_unique<TestFaults>(config_.test_fault_file, names, member_id_);
  to->fault_hook = [this](const raft::Message& m) {
    transport::FaultDecision d = test_faults_->Decide(m);
    // A snapshot lost on the wire would leave the leader waiting for its
    // outcome forever: report the failure, as a broken connection does.
    if (d.kind == transport::FaultDecision::Kind::kDrop &&
        m.type == raft::MessageType::kSnap) {
      node_->ReportSnapshot(m.to, false);
    }
    return d;
  };
}

}  // namespace keel::server
