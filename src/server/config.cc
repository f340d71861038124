#include "server/config.h"

#include <openssl/sha.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "server/bool_flags.h"

namespace keel::server {
namespace {

uint64_t Sha1Prefix(const std::string& bytes) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
       digest);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | digest[i];
  return v;
}

std::string JoinUrls(const std::vector<Url>& urls) {
  std::string s;
  for (const Url& u : urls) {
    if (!s.empty()) s += ",";
    s += u.String();
  }
  return s;
}

Result<std::map<std::string, std::vector<Url>>> ParseInitialCluster(
    const std::string& s) {
  std::map<std::string, std::vector<Url>> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("--initial-cluster: '" + item +
                                     "' is not of the form name=url");
    }
    auto url = ParseUrl(item.substr(eq + 1));
    if (!url.ok()) return url.status();
    out[item.substr(0, eq)].push_back(*url);
  }
  return out;
}

}  // namespace

std::string Url::String() const { return scheme + "://" + HostPort(); }

std::string Url::HostPort() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

Result<Url> ParseUrl(const std::string& raw) {
  std::string s = raw;
  Url u;
  auto p = s.find("://");
  if (p == std::string::npos) {
    return Status::InvalidArgument("URL " + raw +
                                   " must have a scheme (http:// or https://)");
  }
  u.scheme = s.substr(0, p);
  if (u.scheme != "http" && u.scheme != "https" && u.scheme != "unix") {
    return Status::InvalidArgument(
        "URL scheme must be http, https, unix or "
        "unixs: " +
        raw);
  }
  s = s.substr(p + 3);
  while (!s.empty() && s.back() == '/') s.pop_back();
  if (s.find('/') != std::string::npos) {
    return Status::InvalidArgument("URL must not contain a path: " + raw);
  }
  std::string port;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos) {
      return Status::InvalidArgument("bad IPv6 address in URL " + raw);
    }
    u.host = s.substr(1, close - 1);
    if (close + 1 < s.size() && s[close + 1] == ':') port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) {
      return Status::InvalidArgument(
          "URL address does not have the form "
          "\"host:port\": " +
          raw);
    }
    u.host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (u.host.empty() || port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), ::isdigit) ||
      std::stoi(port) > 65535) {
    return Status::InvalidArgument(
        "URL address does not have the form "
        "\"host:port\": " +
        raw);
  }
  u.port = static_cast<uint16_t>(std::stoi(port));
  return u;
}

Result<std::vector<Url>> ParseUrls(const std::string& list) {
  std::vector<Url> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto u = ParseUrl(item);
    if (!u.ok()) return u.status();
    out.push_back(*u);
  }
  return out;
}

uint64_t ComputeMemberId(const std::vector<Url>& peer_urls,
                         const std::string& token) {
  std::vector<std::string> urls;
  for (const Url& u : peer_urls) urls.push_back(u.String());
  std::sort(urls.begin(), urls.end());
  std::string b;
  for (const auto& u : urls) b += u;
  b += token;
  return Sha1Prefix(b);
}

uint64_t ComputeClusterId(std::vector<uint64_t> ids) {
  std::sort(ids.begin(), ids.end());
  std::string b;
  for (uint64_t id : ids) {
    for (int i = 7; i >= 0; i--) b.push_back(static_cast<char>(id >> (8 * i)));
  }
  return Sha1Prefix(b);
}

std::string HexId(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(id));
  return buf;
}

Result<int64_t> ParseGoDurationMs(const std::string& s) {
  auto us = ParseGoDurationUs(s);
  if (!us.ok()) return us.status();
  return *us / 1000;
}

Result<int64_t> ParseGoDurationUs(const std::string& s) {
  auto bad = [&] {
    return Status::InvalidArgument("time: invalid duration \"" + s + "\"");
  };
  if (s == "0") return int64_t{0};
  if (s.empty()) return bad();
  double total_ms = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() &&
           (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) {
      i++;
    }
    if (i == start) return bad();
    double v = std::strtod(s.substr(start, i - start).c_str(), nullptr);
    size_t u = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) {
      i++;
    }
    const std::string unit = s.substr(u, i - u);
    double ms;
    if (unit == "ns") {
      ms = 1e-6;
    } else if (unit == "us" || unit == "\u00b5s") {
      ms = 1e-3;
    } else if (unit == "ms") {
      ms = 1;
    } else if (unit == "s") {
      ms = 1000;
    } else if (unit == "m") {
      ms = 60 * 1000;
    } else if (unit == "h") {
      ms = 3600 * 1000;
    } else {
      return bad();
    }
    total_ms += v * ms;
  }
  return static_cast<int64_t>(total_ms * 1000);
}

Result<ServerConfig> ParseFlags(int argc, const char* const* argv) {
  ServerConfig c;
  std::string listen_client = "http://localhost:2379";
  std::string advertise_client = "http://localhost:2379";
  std::string listen_peer = "http://localhost:2380";
  std::string advertise_peer = "http://localhost:2380";
  std::string initial_cluster;
  std::string pre_vote = "true";
  std::string initial_election_tick_advance = "true";
  std::string progress_interval = "10m0s";
  std::string commit_notice_delay = "1ms";
  std::string force_new_cluster = "false";
  std::string strict_reconfig = "true";
  std::string initial_corrupt_check = "false";
  std::string grpc_front = "true";
  std::string listen_metrics;
  std::string log_outputs = "default";
  CLI::App app{
      "keel: a strongly consistent key-value store that speaks the "
      "etcd v3 API"};
  app.set_version_flag("--version", "keel 0.1.0 (etcd API 3.5)");
  // Go's flag package (etcd) lets a repeated flag's last value win.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--name", c.name, "Human-readable name for this member.")
      ->envname("ETCD_NAME");
  app.add_option("--data-dir", c.data_dir, "Path to the data directory.")
      ->envname("ETCD_DATA_DIR");
  app.add_option("--listen-client-urls", listen_client,
                 "List of URLs to listen on for client traffic.")
      ->envname("ETCD_LISTEN_CLIENT_URLS");
  app.add_option("--advertise-client-urls", advertise_client,
                 "List of this member's client URLs to advertise to the "
                 "public.")
      ->envname("ETCD_ADVERTISE_CLIENT_URLS");
  app.add_option("--listen-peer-urls", listen_peer,
                 "List of URLs to listen on for peer traffic.")
      ->envname("ETCD_LISTEN_PEER_URLS");
  app.add_option("--initial-advertise-peer-urls", advertise_peer,
                 "List of this member's peer URLs to advertise to the rest "
                 "of the cluster.")
      ->envname("ETCD_INITIAL_ADVERTISE_PEER_URLS");
  app.add_option("--initial-cluster", initial_cluster,
                 "Initial cluster configuration for bootstrapping.")
      ->envname("ETCD_INITIAL_CLUSTER");
  app.add_option("--initial-cluster-state", c.initial_cluster_state,
                 "Initial cluster state ('new' or 'existing').")
      ->envname("ETCD_INITIAL_CLUSTER_STATE");
  app.add_option("--initial-cluster-token", c.initial_cluster_token,
                 "Initial cluster token for the etcd cluster during "
                 "bootstrap.")
      ->envname("ETCD_INITIAL_CLUSTER_TOKEN");
  app.add_option("--heartbeat-interval", c.heartbeat_ms,
                 "Time (in milliseconds) of a heartbeat interval.")
      ->envname("ETCD_HEARTBEAT_INTERVAL");
  app.add_option("--election-timeout", c.election_ms,
                 "Time (in milliseconds) for an election to timeout.")
      ->envname("ETCD_ELECTION_TIMEOUT");
  app.add_option("--snapshot-count", c.snapshot_count,
                 "Number of committed transactions to trigger a snapshot to "
                 "disk.")
      ->envname("ETCD_SNAPSHOT_COUNT");
  app.add_option("--quota-backend-bytes", c.quota_backend_bytes,
                 "Raise alarms when backend size exceeds the given quota (0 "
                 "defaults to low space quota).")
      ->envname("ETCD_QUOTA_BACKEND_BYTES");
  app.add_option("--max-request-bytes", c.max_request_bytes,
                 "Maximum client request size in bytes the server will "
                 "accept.")
      ->envname("ETCD_MAX_REQUEST_BYTES");
  app.add_option("--max-txn-ops", c.max_txn_ops,
                 "Maximum number of operations permitted in a transaction.")
      ->envname("ETCD_MAX_TXN_OPS");
  AddBoolFlag(app, "pre-vote", &pre_vote, "ETCD_PRE_VOTE",
              "Enable to run an additional Raft election phase.");
  AddBoolFlag(app, "initial-election-tick-advance",
              &initial_election_tick_advance,
              "ETCD_INITIAL_ELECTION_TICK_ADVANCE",
              "Whether to fast-forward initial election ticks on boot for "
              "faster election.");
  AddBoolFlag(app, "force-new-cluster", &force_new_cluster,
              "ETCD_FORCE_NEW_CLUSTER",
              "Force to create a new one member cluster.");
  AddBoolFlag(app, "strict-reconfig-check", &strict_reconfig,
              "ETCD_STRICT_RECONFIG_CHECK",
              "Reject reconfiguration requests that would cause quorum "
              "loss.");
  AddBoolFlag(app, "experimental-initial-corrupt-check", &initial_corrupt_check,
              "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK",
              "Enable to check data corruption before serving any client/"
              "peer traffic.");
  AddBoolFlag(app, "experimental-grpc-front", &grpc_front,
              "",
              "Serve plaintext gRPC clients with keel's own HTTP/2 server "
              "(unary KV calls natively, the rest relayed to gRPC C++); "
              "false: gRPC C++ serves them all.");
  app.add_option("--experimental-commit-notice-delay", commit_notice_delay,
                 "How long a leader may keep back a message that only tells "
                 "a follower a new commit index, so that the next append "
                 "carries it (0: send at once, as etcd does).");
  app.add_option("--experimental-corrupt-check-time", c.corrupt_check_time,
                 "Duration of time between cluster corruption check passes "
                 "(e.g. 5s, 1m; 0 disables).")
      ->envname("ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME");
  app.add_option("--log-level", c.log_level,
                 "Configures log level. Only supports debug, info, warn, "
                 "error, panic, or fatal.")
      ->envname("ETCD_LOG_LEVEL");
  app.add_option("--experimental-test-fault-file", c.test_fault_file,
                 "TEST ONLY: apply network faults to peer messages from the "
                 "rules in this file (keel's fault-injection suite).");
  app.add_flag("--experimental-unsafe-skip-read-index",
               c.unsafe_skip_read_index,
               "TEST ONLY, UNSAFE: serve linearizable reads without "
               "ReadIndex (stale reads); proves the fault-injection suite "
               "catches them.");
  app.add_option("--experimental-watch-progress-notify-interval",
                 progress_interval,
                 "Duration of periodical watch progress notification.")
      ->envname("ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL");
  SecurityFlags security_flags;
  AddSecurityFlags(app, &c.security, &security_flags);
  app.add_option("--logger", c.logger,
                 "Currently only supports 'zap' for structured logging "
                 "('capnslog' is accepted and logs the same way).")
      ->envname("ETCD_LOGGER");
  app.add_option("--log-outputs", log_outputs,
                 "Specify 'stdout' or 'stderr' to skip journald logging even "
                 "when running under systemd, or list of comma separated "
                 "output targets.")
      ->envname("ETCD_LOG_OUTPUTS");
  app.add_option("--log-format", c.log_format,
                 "Configures log format. Only supports json, console.")
      ->envname("ETCD_LOG_FORMAT");
  app.add_option("--listen-metrics-urls", listen_metrics,
                 "List of URLs to listen on for the metrics and health "
                 "endpoints.")
      ->envname("ETCD_LISTEN_METRICS_URLS");
  app.add_option("--metrics", c.metrics,
                 "Set level of detail for exported metrics, specify "
                 "'extensive' to include server side grpc histogram "
                 "metrics.")
      ->envname("ETCD_METRICS");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return Status::NotFound(app.help());
  } catch (const CLI::CallForVersion&) {
    return Status::NotFound(app.version());
  } catch (const CLI::ParseError& e) {
    return Status::InvalidArgument(e.what());
  }
  KEEL_RETURN_IF_ERROR(ParseBoolFlag("pre-vote", pre_vote, &c.pre_vote));
  KEEL_RETURN_IF_ERROR(ParseBoolFlag("initial-election-tick-advance",
                                     initial_election_tick_advance,
                                     &c.initial_election_tick_advance));
  // A Go duration flag, in microseconds; etcd's message when it is not one.
  auto duration_flag = [](const char* name, const std::string& value,
                          int64_t* us) -> Status {
    auto parsed = ParseGoDurationUs(value);
    if (!parsed.ok()) {
      return Status::InvalidArgument("invalid value \"" + value +
                                     "\" for flag -" + name + ": " +
                                     parsed.status().message());
    }
    *us = *parsed;
    return Status::OK();
  };
  int64_t progress_us = 0;
  KEEL_RETURN_IF_ERROR(duration_flag(
      "experimental-watch-progress-notify-interval", progress_interval,
      &progress_us));
  c.watch_progress_notify_interval_ms = progress_us / 1000;
  KEEL_RETURN_IF_ERROR(duration_flag("experimental-commit-notice-delay",
                                     commit_notice_delay,
                                     &c.commit_notice_delay_us));
  KEEL_RETURN_IF_ERROR(ParseBoolFlag("force-new-cluster", force_new_cluster,
                                     &c.force_new_cluster));
  KEEL_RETURN_IF_ERROR(ParseBoolFlag("strict-reconfig-check", strict_reconfig,
                                     &c.strict_reconfig_check));
  KEEL_RETURN_IF_ERROR(
      ParseBoolFlag("experimental-grpc-front", grpc_front, &c.grpc_front));
  KEEL_RETURN_IF_ERROR(ParseBoolFlag("experimental-initial-corrupt-check",
                                     initial_corrupt_check,
                                     &c.initial_corrupt_check));
  auto parse = [](const std::string& flag, const std::string& v,
                  std::vector<Url>* out) -> Status {
    auto urls = ParseUrls(v);
    if (!urls.ok()) {
      return Status::InvalidArgument("--" + flag + ": " +
                                     urls.status().message());
    }
    if (urls->empty())
      return Status::InvalidArgument("--" + flag + " is empty");
    *out = std::move(urls).value();
    return Status::OK();
  };
  KEEL_RETURN_IF_ERROR(
      parse("listen-client-urls", listen_client, &c.listen_client_urls));
  KEEL_RETURN_IF_ERROR(parse("advertise-client-urls", advertise_client,
                             &c.advertise_client_urls));
  KEEL_RETURN_IF_ERROR(
      parse("listen-peer-urls", listen_peer, &c.listen_peer_urls));
  KEEL_RETURN_IF_ERROR(parse("initial-advertise-peer-urls", advertise_peer,
                             &c.initial_advertise_peer_urls));
  KEEL_RETURN_IF_ERROR(FinishSecurityFlags(security_flags, c.listen_client_urls,
                                           c.listen_peer_urls, &c.security));
  if (!listen_metrics.empty()) {
    KEEL_RETURN_IF_ERROR(
        parse("listen-metrics-urls", listen_metrics, &c.listen_metrics_urls));
  }
  c.log_outputs.clear();
  {
    std::stringstream ss(log_outputs);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (!item.empty()) c.log_outputs.push_back(item);
    }
    if (c.log_outputs.empty()) c.log_outputs.push_back("default");
  }
  if (initial_cluster.empty()) {
    // etcd: the cluster of this member alone, under its name.
    c.initial_cluster[c.name] = c.initial_advertise_peer_urls;
  } else {
    auto ic = ParseInitialCluster(initial_cluster);
    if (!ic.ok()) return ic.status();
    c.initial_cluster = std::move(ic).value();
  }
  if (c.data_dir.empty()) c.data_dir = c.name + ".etcd";
  KEEL_RETURN_IF_ERROR(Validate(c));
  return c;
}

Status Validate(const ServerConfig& c) {
  if (c.heartbeat_ms <= 0) {
    return Status::InvalidArgument("--heartbeat-interval must be positive");
  }
  if (5 * c.heartbeat_ms > c.election_ms) {
    return Status::InvalidArgument(
        "--election-timeout[" + std::to_string(c.election_ms) +
        "ms] should be at least as 5 times as --heartbeat-interval[" +
        std::to_string(c.heartbeat_ms) + "ms]");
  }
  if (c.election_ms > 50000) {
    return Status::InvalidArgument("--election-timeout[" +
                                   std::to_string(c.election_ms) +
                                   "ms] is too long, and should be set less "
                                   "than 50000ms");
  }
  if (c.initial_cluster_state != "new" &&
      c.initial_cluster_state != "existing") {
    return Status::InvalidArgument(
        "invalid value \"" + c.initial_cluster_state +
        "\" for flag -initial-cluster-state: must be 'new' or 'existing'");
  }
  if (c.max_txn_ops == 0) {
    return Status::InvalidArgument("--max-txn-ops must be positive");
  }
  if (c.snapshot_count == 0) {
    return Status::InvalidArgument("--snapshot-count must be positive");
  }
  static const char* kLevels[] = {"debug", "info",  "warn",
                                  "error", "panic", "fatal"};
  if (std::find(std::begin(kLevels), std::end(kLevels), c.log_level) ==
      std::end(kLevels)) {
    return Status::InvalidArgument("unknown log level: " + c.log_level);
  }
  if (c.logger != "zap" && c.logger != "capnslog") {
    return Status::InvalidArgument("unknown logger option \"" + c.logger +
                                   "\"");
  }
  if (c.log_format != "json" && c.log_format != "console") {
    return Status::InvalidArgument("unknown log format: " + c.log_format +
                                   ", supported values: json, console");
  }
  if (c.metrics != "basic" && c.metrics != "extensive") {
    return Status::InvalidArgument("unknown metrics option \"" + c.metrics +
                                   "\" (want basic or extensive)");
  }
  auto it = c.initial_cluster.find(c.name);
  if (it == c.initial_cluster.end()) {
    return Status::InvalidArgument("couldn't find local name \"" + c.name +
                                   "\" in the initial cluster configuration");
  }
  // The URLs this member advertises must be the ones the cluster lists.
  std::vector<std::string> a, b;
  for (const Url& u : it->second) a.push_back(u.String());
  for (const Url& u : c.initial_advertise_peer_urls) b.push_back(u.String());
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  if (a != b) {
    return Status::InvalidArgument(
        "--initial-cluster has " + c.name + "=" + JoinUrls(it->second) +
        " but missing from --initial-advertise-peer-urls=" +
        JoinUrls(c.initial_advertise_peer_urls));
  }
  std::map<std::string, std::string> seen;
  for (const auto& [name, urls] : c.initial_cluster) {
    for (const Url& u : urls) {
      auto [pos, fresh] = seen.emplace(u.String(), name);
      if (!fresh) {
        return Status::InvalidArgument("--initial-cluster has duplicate url " +
                                       u.String() + " (members " + pos->second +
                                       " and " + name + ")");
      }
    }
  }
  return Status::OK();
}

}  // namespace keel::server
