// ServerConfig: a member's settings, from etcd's flags and ETCD_* variables.
//
// Names, defaults and meaning follow etcd 3.5 so that an etcd command line
// (or environment) starts a keel member unchanged. Parsing and validation
// produce a clear error instead of starting with inconsistent settings.
// Member and cluster ids are computed as etcd computes them, so that they
// match what operators know from etcd for the same --initial-cluster.
//
// Thread safety: values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/security_config.h"

namespace keel::server {

// A parsed URL such as "http://127.0.0.1:2379".
struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;
  uint16_t port = 0;
  std::string String() const;    // scheme://host:port
  std::string HostPort() const;  // host:port, IPv6 hosts in brackets
};
Result<Url> ParseUrl(const std::string& s);
Result<std::vector<Url>> ParseUrls(const std::string& comma_separated);

struct ServerConfig {
  std::string name = "default";
  std::string data_dir;  // default: <name>.etcd
  std::vector<Url> listen_client_urls;
  std::vector<Url> advertise_client_urls;
  std::vector<Url> listen_peer_urls;
  std::vector<Url> initial_advertise_peer_urls;
  // name -> peer URLs, from --initial-cluster.
  std::map<std::string, std::vector<Url>> initial_cluster;
  std::string initial_cluster_state = "new";  // or "existing"
  std::string initial_cluster_token = "etcd-cluster";
  int heartbeat_ms = 100;
  int election_ms = 1000;
  // The election timeout in heartbeat ticks, as the Raft core counts it.
  int ElectionTicks() const { return std::max(2, election_ms / heartbeat_ms); }
  uint64_t snapshot_count = 100000;
  int64_t quota_backend_bytes = 0;       // 0: the default, 2 GiB
  uint64_t max_request_bytes = 1572864;  // 1.5 MiB
  uint64_t max_txn_ops = 128;
  bool pre_vote = true;
  // etcd's --initial-election-tick-advance: once its peers are connected, a
  // starting member fast-forwards its election ticks, so that a fresh
  // cluster elects a leader without waiting out a whole election timeout.
  // (A one-member cluster always does, as etcd.)
  bool initial_election_tick_advance = true;
  // Disaster recovery: restart as a one-member cluster with all the data.
  bool force_new_cluster = false;
  // Refuse membership changes that could cost the quorum (etcd's default).
  bool strict_reconfig_check = true;
  // etcd's --experimental-initial-corrupt-check and
  // --experimental-corrupt-check-time ("5s", "1m"; empty or 0: off).
  bool initial_corrupt_check = false;
  // Plaintext gRPC on the client URLs through keel's HTTP/2 front
  // (api/h2_front.h) rather than gRPC C++ alone.
  bool grpc_front = true;
  std::string corrupt_check_time;
  std::string log_level = "info";
  // --experimental-watch-progress-notify-interval (etcd's default 10m).
  int64_t watch_progress_notify_interval_ms = 10 * 60 * 1000;
  // --experimental-commit-notice-delay (RaftNodeOptions::commit_notice_delay).
  int64_t commit_notice_delay_us = 1000;
  SecurityConfig security;  // TLS and auth (security_config.h)
  // "zap" (etcd's structured logger) or "capnslog" (accepted; same output).
  std::string logger = "zap";
  // "default" (stderr), "stderr", "stdout", or file paths.
  std::vector<std::string> log_outputs = {"default"};
  // "console" (human-readable) or "json" (one JSON object per line).
  std::string log_format = "console";
  // Extra URLs serving /metrics and /health (besides the client URLs).
  std::vector<Url> listen_metrics_urls;
  // "basic" or "extensive" (adds gRPC handling-time histograms).
  std::string metrics = "basic";

  // Test only (tests/jepsen), keel extensions; never set in production.
  // Network faults for this member's peer messages from a rules file
  // (src/server/test_faults.h).
  std::string test_fault_file;
  // UNSAFE: linearizable reads skip ReadIndex and read local state, so a
  // deposed leader or a lagging follower serves stale data. Exists so the
  // fault-injection suite can prove its checker catches stale reads.
  bool unsafe_skip_read_index = false;

  int64_t QuotaBytes() const {
    return quota_backend_bytes > 0 ? quota_backend_bytes : (2LL << 30);
  }
};

// Parses argv (and ETCD_* variables for flags not given). On --help or
// --version, returns NotFound with the text to print in the message.
Result<ServerConfig> ParseFlags(int argc, const char* const* argv);

// Checks the settings together; the message says what is wrong.
Status Validate(const ServerConfig& c);

// etcd's member id: the first 8 bytes (big-endian) of the SHA-1 of the
// sorted peer URLs concatenated, followed by the cluster token.
uint64_t ComputeMemberId(const std::vector<Url>& peer_urls,
                         const std::string& token);
// etcd's cluster id: the first 8 bytes of the SHA-1 of the sorted member
// ids, each as 8 big-endian bytes.
uint64_t ComputeClusterId(std::vector<uint64_t> member_ids);

std::string HexId(uint64_t id);

// A Go time.Duration string ("10m", "1.5s", "100ms", "1h2m3s") in
// milliseconds.
Result<int64_t> ParseGoDurationMs(const std::string& s);
Result<int64_t> ParseGoDurationUs(const std::string& s);

}  // namespace keel::server
