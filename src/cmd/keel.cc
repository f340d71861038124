// keel: a member of a keel cluster.
//
// At this stage keel runs the consensus core as a single member on a real
// clock: it elects itself, commits its term's entry and keeps ticking. The
// etcd v3 client API, peers and the data directory come with the server
// work (see README). Flags use etcd's names and defaults.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <random>
#include <thread>

#include "raft/raw_node.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"keel: a strongly consistent key-value store (etcd v3 API)"};
  std::string name = "default";
  std::string data_dir;
  int heartbeat_ms = 100;
  int election_ms = 1000;
  std::string log_level = "info";
  app.add_option("--name", name, "Human-readable name for this member")
      ->envname("ETCD_NAME");
  app.add_option("--data-dir", data_dir, "Path to the data directory")
      ->envname("ETCD_DATA_DIR");
  app.add_option("--heartbeat-interval", heartbeat_ms,
                 "Time (in milliseconds) of a heartbeat interval")
      ->envname("ETCD_HEARTBEAT_INTERVAL");
  app.add_option("--election-timeout", election_ms,
                 "Time (in milliseconds) for an election to timeout")
      ->envname("ETCD_ELECTION_TIMEOUT");
  app.add_option("--log-level", log_level,
                 "Configures log level: debug, info, warn, error")
      ->envname("ETCD_LOG_LEVEL");
  CLI11_PARSE(app, argc, argv);
  if (data_dir.empty()) data_dir = name + ".etcd";
  if (heartbeat_ms <= 0 || election_ms < 5 * heartbeat_ms) {
    spdlog::critical(
        "--election-timeout[{}ms] should be at least 5 times as "
        "--heartbeat-interval[{}ms]",
        election_ms, heartbeat_ms);
    return 1;
  }
  spdlog::set_level(spdlog::level::from_str(log_level));

  using namespace keel::raft;
  MemoryStorage storage;
  Snapshot boot;
  boot.metadata = {ConfState{{1}, {}, {}, {}, false}, 1, 1};
  (void)storage.ApplySnapshot(boot);
  storage.SetHardState({1, kNone, 1});
  keel::SeededRng rng(std::random_device{}());
  Config config;
  config.id = 1;
  config.storage = &storage;
  config.rng = &rng;
  config.applied = 1;
  config.heartbeat_tick = 1;
  config.election_tick = election_ms / heartbeat_ms;
  config.pre_vote = true;
  config.check_quorum = true;
  auto node = RawNode::Create(config);
  if (!node.ok()) {
    spdlog::critical("cannot start: {}", node.status().ToString());
    return 1;
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  spdlog::info("starting keel member name={} data-dir={} (in memory for now)",
               name, data_dir);
  auto tick = std::chrono::milliseconds(heartbeat_ms);
  auto next = std::chrono::steady_clock::now() + tick;
  while (!g_stop) {
    std::this_thread::sleep_until(next);
    next += tick;
    (*node)->Tick();
    while ((*node)->HasReady()) {
      Ready rd = (*node)->GetReady();
      if (rd.soft_state) {
        spdlog::info("raft: member {} is {} at term {}, leader {}", name,
                     StateRoleName(rd.soft_state->role), (*node)->term(),
                     rd.soft_state->lead);
      }
      (void)storage.Append(rd.entries);
      if (!rd.hard_state.IsEmpty()) storage.SetHardState(rd.hard_state);
      for (const Entry& e : rd.committed_entries) {
        spdlog::debug("applied entry {} of term {}", e.index, e.term);
      }
      (*node)->Advance(rd);
    }
  }
  spdlog::info("stopping keel member {}", name);
  return 0;
}
