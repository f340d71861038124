// keel-lincheck-gen: writes a random linearizable history (history_gen.h)
// as JSON lines, to measure keel-lincheck on large histories:
//
//   keel-lincheck-gen --ops 20000 --processes 16 --keys 8 --seed 1 > h.jsonl
//   time keel-lincheck h.jsonl
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "history_gen.h"

int main(int argc, char** argv) {
  keel::check::GenOptions g;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char* f = argv[i];
    const char* v = argv[i + 1];
    if (!std::strcmp(f, "--ops")) {
      g.ops = std::atoi(v);
    } else if (!std::strcmp(f, "--processes")) {
      g.processes = std::atoi(v);
    } else if (!std::strcmp(f, "--keys")) {
      g.keys = std::atoi(v);
    } else if (!std::strcmp(f, "--seed")) {
      g.seed = std::strtoull(v, nullptr, 10);
    } else if (!std::strcmp(f, "--unknown")) {
      g.unknown_fraction = std::atof(v);
    } else {
      std::cerr << "unknown flag " << f << "\n";
      return 2;
    }
  }
  for (const auto& op : keel::check::GenerateHistory(g)) {
    std::cout << keel::check::OpToJson(op) << "\n";
  }
  return 0;
}
