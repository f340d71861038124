#include "server/test_faults.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

namespace keel::server {

TestFaults::TestFaults(std::string path,
                       std::function<std::map<std::string, uint64_t>()> names,
                       uint64_t seed)
    : path_(std::move(path)), names_(std::move(names)), rng_(seed) {
  spdlog::warn(
      "TEST ONLY: network faults from {} are applied to peer messages "
      "(--experimental-test-fault-file)",
      path_);
  Reload();
  poller_ = std::thread([this] { Poll(); });
}

TestFaults::~TestFaults() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  poller_.join();
}

void TestFaults::Poll() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(20));
    if (stop_) break;
    lock.unlock();
    Reload();
    lock.lock();
  }
}

void TestFaults::Reload() {
  std::string text;
  {
    std::ifstream in(path_);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
  }
  // Names may be published after the file was first read: resolve again
  // each time, but parse (and log) only when the text changed.
  auto names = names_();
  std::map<uint64_t, Rule> rules;
  bool all = false;
  Rule all_rule;
  std::istringstream lines(text);
  std::string line;
  bool changed;
  {
    std::lock_guard lock(mu_);
    changed = text != text_;
  }
  while (std::getline(lines, line)) {
    if (auto hash = line.find('#'); hash != std::string::npos) {
      line.resize(hash);
    }
    std::istringstream f(line);
    std::string verb, to;
    if (!(f >> verb)) continue;
    bool ok = static_cast<bool>(f >> to);
    double p = 1;
    int delay_ms = 0, jitter_ms = 0;
    if (ok && verb == "drop") {
      if (!(f >> p)) p = 1;
    } else if (ok && verb == "delay") {
      ok = static_cast<bool>(f >> delay_ms) && delay_ms >= 0;
      if (!(f >> jitter_ms)) jitter_ms = 0;
    } else {
      ok = false;
    }
    if (!ok) {
      if (changed) spdlog::warn("fault file {}: bad line '{}'", path_, line);
      continue;
    }
    auto merge = [&](Rule* r) {
      if (verb == "drop") {
        r->drop_probability = p;
      } else {
        r->delay_ms = delay_ms;
        r->jitter_ms = jitter_ms;
      }
    };
    if (to == "*") {
      all = true;
      merge(&all_rule);
      continue;
    }
    uint64_t id = 0;
    if (auto it = names.find(to); it != names.end()) {
      id = it->second;
    } else {
      try {
        id = std::stoull(to, nullptr, 16);
      } catch (...) {
        id = 0;
      }
    }
    if (id == 0) continue;  // a name not known (yet)
    merge(&rules[id]);
  }
  std::lock_guard lock(mu_);
  if (changed) {
    spdlog::info("fault file {}: {} rule(s) now in force", path_,
                 rules.size() + (all ? 1 : 0));
  }
  text_ = std::move(text);
  rules_ = std::move(rules);
  all_ = all;
  all_rule_ = all_rule;
}

transport::FaultDecision TestFaults::Decide(const raft::Message& m) {
  std::lock_guard lock(mu_);
  const Rule* r = nullptr;
  if (auto it = rules_.find(m.to); it != rules_.end()) {
    r = &it->second;
  } else if (all_) {
    r = &all_rule_;
  }
  if (!r) return transport::FaultDecision::Deliver();
  if (r->drop_probability >= 1 ||
      (r->drop_probability > 0 && std::uniform_real_distribution<double>(
                                      0, 1)(rng_) < r->drop_probability)) {
    return transport::FaultDecision::Drop();
  }
  if (r->delay_ms == 0 && r->jitter_ms == 0) {
    return transport::FaultDecision::Deliver();
  }
  int ms = r->delay_ms;
  if (r->jitter_ms > 0) {
    ms += std::uniform_int_distribution<int>(0, r->jitter_ms)(rng_);
  }
  return transport::FaultDecision::Delay(std::chrono::milliseconds(ms));
}

}  // namespace keel::server
