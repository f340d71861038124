// Linearizability checker for histories of etcd's key-value API (put, get,
// delete, compare-and-set transactions, all on single keys, with revisions).
//
// Search: Wing & Gong's algorithm with Lowe's memoization (a set of
// (linearized-ops bitset, model state) pairs already explored, so that no
// configuration is explored twice), run per key (P-compositionality, as in
// Porcupine): a history is linearizable iff every key's sub-history is, as
// long as each operation touches one key.
//
// What the per-key model checks, and why that is enough to split by key.
// etcd's revision is global: one counter across all keys. A per-key model
// cannot see other keys, so it checks what a single key reveals and a
// separate pass checks the global order:
//  - per key, the state is (exists, value, mod_revision) plus `floor`, the
//    highest revision any op linearized so far on this key has shown. A get
//    must return the state's value and mod_revision, and its header revision
//    H must be >= the key's last write revision (the read saw that write)
//    and raises floor to H (any later write must get a revision > H). A put
//    (or cas that wrote, or delete that deleted) with revision R needs
//    R > floor: writes to one key take increasing revisions in the order
//    they are linearized. floor is a max over the linearized set, so it
//    adds no states to the memo beyond the bitset.
//  - globally (CheckGlobal): write revisions are unique; if op a completed
//    before op b was invoked then rev(b) >= rev(a), and rev(b) > rev(a) when
//    b wrote; a get's mod_revision <= its header revision. This is the
//    real-time order of the single revision counter, which per-key
//    sub-histories cannot see.
//
// Outcomes. "fail" ops had no effect and are dropped; reads that did not
// complete are dropped (no effect). A write whose outcome is unknown has
// no return: it may be linearized at any point after its invocation, or
// never (the search succeeds once every completed op is linearized). If it
// took effect its revision is unknown; the first read that returns its
// value fixes the mod_revision.
//
// Pruning (CheckOptions::prune_unobserved). An unknown write whose value no
// op ever observed can be removed without changing the verdict, provided
// every op on that key reveals the value it depends on: values are unique
// among the key's writes, deletes return prev_kv, failed cas ops read the
// key, and no cas compares mod_revision. Then if a linearization uses the
// write, dropping it from that linearization changes no observed output.
// The runner records histories that satisfy those conditions; keys that
// don't are searched with every unknown write.
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace keel::check {

enum class OpType : uint8_t { kPut, kGet, kDelete, kCas };
enum class Outcome : uint8_t { kOk, kFail, kUnknown };
enum class CmpKind : uint8_t { kNone, kValue, kModRevision, kAbsent };

struct Operation {
  int64_t id = 0;
  int64_t process = 0;
  OpType type = OpType::kGet;
  std::string key;
  std::string value;
  CmpKind cmp = CmpKind::kNone;
  std::string expect_value;
  int64_t expect_mod_revision = 0;
  int64_t call_ns = 0;
  int64_t return_ns = 0;
  Outcome outcome = Outcome::kOk;
  int64_t revision = 0;
  bool found = false;
  std::string read_value;
  int64_t read_mod_revision = 0;
  bool succeeded = false;
  bool has_read = false;
  int64_t deleted = 0;
  std::string error;
  int32_t member = 0;

  bool Writes() const;  // may change the store (if it took effect)
};

// One JSON object per line (history.proto's Op); blank lines are skipped.
// The error names the line.
Result<std::vector<Operation>> ParseHistory(std::string_view jsonl);
std::string OpToJson(const Operation& op);

struct CheckOptions {
  // Per key: stop (verdict unknown) after exploring this many configurations.
  uint64_t max_steps_per_key = 200'000'000;
  bool prune_unobserved = true;
};

struct KeyResult {
  std::string key;
  bool ok = true;
  bool gave_up = false;  // max_steps_per_key reached
  size_t ops = 0;        // ops searched
  size_t pruned = 0;     // unknown writes removed as unobserved
  uint64_t steps = 0;
  // When !ok: the longest linearizable prefix found (op ids in order), and
  // the completed ops none of which could be linearized after it.
  std::vector<int64_t> best_prefix;
  std::vector<int64_t> stuck;
  std::string state_after_prefix;  // the model state, for people
};

struct CheckResult {
  bool ok = true;
  bool gave_up = false;  // some key's search hit its bound (not ok)
  std::vector<std::string> global_violations;
  std::vector<KeyResult> keys;  // every key checked
  size_t ops = 0;
  uint64_t steps = 0;
};

CheckResult Check(const std::vector<Operation>& history,
                  const CheckOptions& options = {});

// Only the global revision-order checks (see the header comment).
std::vector<std::string> CheckGlobal(const std::vector<Operation>& history);

// Machine-readable verdict (stable field names, used by the runner).
std::string ResultToJson(const CheckResult& r);

}  // namespace keel::check
