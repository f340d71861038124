// keel-lincheck: checks a recorded history (JSON lines of history.proto's
// Op) for linearizability against etcd's key-value model (lincheck.h).
//
//   keel-lincheck HISTORY.jsonl [--max-steps N] [--no-prune]
//
// Prints the verdict as one JSON object on stdout, a summary on stderr.
// Exit status: 0 linearizable, 1 not linearizable, 2 undecided (search
// bound reached), 3 bad input.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "lincheck.h"

int main(int argc, char** argv) {
  std::string path;
  keel::check::CheckOptions options;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--no-prune")) {
      options.prune_unobserved = false;
    } else if (!std::strcmp(argv[i], "--max-steps") && i + 1 < argc) {
      options.max_steps_per_key = std::strtoull(argv[++i], nullptr, 10);
    } else if (path.empty() && argv[i][0] != '-') {
      path = argv[i];
    } else {
      std::cerr << "usage: keel-lincheck HISTORY.jsonl [--max-steps N] "
                   "[--no-prune]\n";
      return 3;
    }
  }
  if (path.empty()) {
    std::cerr << "usage: keel-lincheck HISTORY.jsonl [--max-steps N] "
                 "[--no-prune]\n";
    return 3;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "keel-lincheck: cannot open " << path << "\n";
    return 3;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  auto t0 = std::chrono::steady_clock::now();
  auto history = keel::check::ParseHistory(buf.str());
  if (!history.ok()) {
    std::cerr << "keel-lincheck: " << path << ": " << history.status().message()
              << "\n";
    return 3;
  }
  auto t1 = std::chrono::steady_clock::now();
  auto result = keel::check::Check(*history, options);
  auto t2 = std::chrono::steady_clock::now();
  std::cout << keel::check::ResultToJson(result) << "\n";
  auto ms = [](auto d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  std::cerr << "keel-lincheck: " << history->size() << " ops, "
            << result.keys.size() << " keys, " << result.steps
            << " search steps; parse " << ms(t1 - t0) << " ms, check "
            << ms(t2 - t1) << " ms: "
            << (result.ok        ? "linearizable"
                : result.gave_up ? "UNDECIDED (search bound reached)"
                                 : "NOT linearizable")
            << "\n";
  for (const auto& v : result.global_violations) {
    std::cerr << "  global: " << v << "\n";
  }
  for (const auto& k : result.keys) {
    if (k.ok) continue;
    std::cerr << "  key " << k.key << ": "
              << (k.gave_up ? "gave up" : "no linearization") << "; longest "
              << "linearizable prefix has " << k.best_prefix.size()
              << " ops, then state " << k.state_after_prefix
              << "; none of these ops fits next:";
    for (auto id : k.stuck) std::cerr << " " << id;
    std::cerr << "\n";
  }
  if (result.ok) return 0;
  return result.gave_up && result.global_violations.empty() ? 2 : 1;
}
