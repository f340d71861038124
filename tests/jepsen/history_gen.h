// Random histories of a correct store, for checker tests and measurements:
// processes invoke ops on a few keys, each op takes effect on a reference
// store at a random moment between its invocation and its completion, so
// the history is linearizable by construction. Some ops lose their
// completion (outcome "unknown"), as timed-out requests do.
//
// Thread safety: plain functions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "lincheck.h"

namespace keel::check {

struct GenOptions {
  int processes = 10;
  int keys = 8;
  int ops = 10000;
  double unknown_fraction = 0.02;  // of writes
  uint64_t seed = 1;
};

inline std::vector<Operation> GenerateHistory(const GenOptions& g) {
  std::mt19937_64 rng(g.seed);
  auto uniform = [&](int n) {
    return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng));
  };
  struct Kv {
    std::string value;
    int64_t mod_rev;
  };
  std::map<std::string, Kv> store;
  int64_t rev = 1;  // etcd starts at revision 1
  enum class Phase { kIdle, kCalled, kApplied };
  std::vector<Phase> phase(g.processes, Phase::kIdle);
  std::vector<Operation> cur(g.processes);
  std::vector<Operation> out;
  int64_t t = 0, next_id = 0, next_value = 0;
  int started = 0;
  while (started < g.ops ||
         std::count(phase.begin(), phase.end(), Phase::kIdle) !=
             static_cast<long>(phase.size())) {
    int p = uniform(g.processes);
    t += 1 + uniform(3);
    Operation& op = cur[p];
    switch (phase[p]) {
      case Phase::kIdle: {
        if (started >= g.ops) break;
        started++;
        op = Operation{};
        op.id = next_id++;
        op.process = p;
        op.key = "k" + std::to_string(uniform(g.keys));
        int kind = uniform(10);
        op.type = kind < 4   ? OpType::kGet
                  : kind < 7 ? OpType::kPut
                  : kind < 8 ? OpType::kDelete
                             : OpType::kCas;
        if (op.type == OpType::kPut || op.type == OpType::kCas) {
          op.value = "v" + std::to_string(next_value++);
        }
        if (op.type == OpType::kDelete) op.has_read = true;
        if (op.type == OpType::kCas) {
          op.has_read = true;
          auto it = store.find(op.key);
          if (it == store.end() || uniform(4) == 0) {
            op.cmp = CmpKind::kAbsent;
          } else {
            op.cmp = CmpKind::kValue;
            // Usually the current value (often stale by the time it runs).
            op.expect_value = uniform(3) ? it->second.value : "v-none";
          }
        }
        op.call_ns = t;
        phase[p] = Phase::kCalled;
        break;
      }
      case Phase::kCalled: {
        auto it = store.find(op.key);
        bool exists = it != store.end();
        auto read = [&] {
          op.found = exists;
          if (exists) {
            op.read_value = it->second.value;
            op.read_mod_revision = it->second.mod_rev;
          }
        };
        switch (op.type) {
          case OpType::kGet:
            read();
            op.revision = rev;
            break;
          case OpType::kPut:
            store[op.key] = {op.value, ++rev};
            op.revision = rev;
            break;
          case OpType::kDelete:
            if (exists) {
              op.deleted = 1;
              op.read_value = it->second.value;
              op.read_mod_revision = it->second.mod_rev;
              store.erase(it);
              ++rev;
            }
            op.revision = rev;
            break;
          case OpType::kCas: {
            bool c = op.cmp == CmpKind::kAbsent
                         ? !exists
                         : exists && it->second.value == op.expect_value;
            op.succeeded = c;
            if (c) {
              store[op.key] = {op.value, ++rev};
            } else {
              read();
            }
            op.revision = rev;
            break;
          }
        }
        phase[p] = Phase::kApplied;
        break;
      }
      case Phase::kApplied:
        op.return_ns = t;
        op.outcome = Outcome::kOk;
        if (op.type != OpType::kGet && std::uniform_real_distribution<double>(
                                           0, 1)(rng) < g.unknown_fraction) {
          op.outcome = Outcome::kUnknown;
        }
        out.push_back(op);
        phase[p] = Phase::kIdle;
        break;
    }
  }
  return out;
}

}  // namespace keel::check
