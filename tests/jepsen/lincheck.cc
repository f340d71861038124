#include "lincheck.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <unordered_set>

#include "common/check.h"
#include "jepsen/history.pb.h"

namespace keel::check {
namespace {

constexpr int64_t kUnknownRev = -1;

// The model's state for one key. Values are interned per key (0: none).
struct State {
  bool exists = false;
  uint32_t value = 0;
  // The revision of the key's last write (the put's mod_revision, or the
  // delete's revision); kUnknownRev after a write whose outcome was unknown,
  // until a read reveals it; 0 before any write.
  int64_t mod_rev = 0;
  // The highest revision shown by an op linearized so far on this key.
  int64_t floor = 0;

  friend bool operator==(const State&, const State&) = default;
  uint64_t Hash() const {
    uint64_t h = static_cast<uint64_t>(exists) * 0x9e3779b97f4a7c15ULL;
    h ^= (value + 0x7f4a7c15ULL) * 0xbf58476d1ce4e5b9ULL;
    h ^= static_cast<uint64_t>(mod_rev) * 0x94d049bb133111ebULL;
    h ^= static_cast<uint64_t>(floor) * 0x2545f4914f6cdd1dULL;
    return h ^ (h >> 29);
  }
};

// An op prepared for the search of one key.
struct KeyOp {
  const Operation* op;
  uint32_t value = 0;         // interned op->value
  uint32_t expect_value = 0;  // interned op->expect_value
  uint32_t read_value = 0;    // interned op->read_value
};

// Checks that a read of (found, value, mod_revision) at header revision h
// agrees with s, and fixes an unknown mod_revision. False: it cannot.
bool ApplyRead(State* s, bool found, uint32_t value, int64_t mod_rev,
               int64_t h) {
  if (!found) {
    if (s->exists) return false;
  } else {
    if (!s->exists || s->value != value) return false;
    if (s->mod_rev == kUnknownRev) {
      // The unknown write is now known to have mod_revision mod_rev; it was
      // linearized after every op that raised floor.
      if (mod_rev <= s->floor) return false;
      s->mod_rev = mod_rev;
    } else if (s->mod_rev != mod_rev) {
      return false;
    }
  }
  if (s->mod_rev != kUnknownRev && s->mod_rev > h) return false;
  s->floor = std::max(s->floor, h);
  return true;
}

// The compare of a cas against s: 1 true, 0 false, -1 cannot tell (a
// mod_revision compare while the last write's revision is unknown).
int EvalCompare(const State& s, const KeyOp& k) {
  const Operation& op = *k.op;
  switch (op.cmp) {
    case CmpKind::kValue:
      return s.exists && s.value == k.expect_value;
    case CmpKind::kAbsent:
      return !s.exists;
    case CmpKind::kModRevision: {
      if (!s.exists) return op.expect_mod_revision == 0;  // as etcd compares
      if (s.mod_rev == kUnknownRev) return -1;
      return s.mod_rev == op.expect_mod_revision;
    }
    case CmpKind::kNone:
      return 1;
  }
  return 1;
}

// Applies one op to s. False if the op's recorded outcome contradicts s.
bool Step(State* s, const KeyOp& k) {
  const Operation& op = *k.op;
  const bool unknown = op.outcome == Outcome::kUnknown;
  const int64_t h = op.revision;
  auto write = [&](bool exists, uint32_t value) {
    if (unknown) {
      *s = State{exists, value, kUnknownRev, s->floor};
      return true;
    }
    if (h <= s->floor) return false;
    *s = State{exists, value, h, h};
    return true;
  };
  switch (op.type) {
    case OpType::kGet:
      return ApplyRead(s, op.found, k.read_value, op.read_mod_revision, h);
    case OpType::kPut:
      return write(true, k.value);
    case OpType::kDelete: {
      if (unknown) return write(false, 0);
      if (op.deleted == 0) return ApplyRead(s, false, 0, 0, h);
      if (!s->exists) return false;
      if (op.has_read) {
        State probe = *s;
        if (!ApplyRead(&probe, true, k.read_value, op.read_mod_revision, h)) {
          return false;
        }
      }
      return write(false, 0);
    }
    case OpType::kCas: {
      int c = EvalCompare(*s, k);
      if (unknown) {
        if (c == 0) return true;  // a no-op here (or never happened)
        return write(true, k.value);
      }
      if (op.succeeded) {
        if (c == 0) return false;
        return write(true, k.value);
      }
      if (c == 1) return false;
      if (op.has_read) {
        return ApplyRead(s, op.found, k.read_value, op.read_mod_revision, h);
      }
      if (s->mod_rev != kUnknownRev && s->mod_rev > h) return false;
      s->floor = std::max(s->floor, h);
      return true;
    }
  }
  return false;
}

std::string StateString(const State& s,
                        const std::vector<std::string>& values) {
  std::string out = s.exists ? "value=" + values[s.value] : "absent";
  out += " mod_revision=" +
         (s.mod_rev == kUnknownRev ? "?" : std::to_string(s.mod_rev));
  out += " floor=" + std::to_string(s.floor);
  return out;
}

// Memo of explored configurations: (bitset of linearized ops, state).
// Bitsets live in one arena; the set holds indices into it.
class Memo {
 public:
  explicit Memo(size_t words)
      : words_(words), set_(1024, Hasher{this}, Equal{this}) {}
  // Inserts; false if it was already there.
  bool Insert(const std::vector<uint64_t>& bits, uint64_t bits_hash,
              const State& s) {
    size_t idx = states_.size();
    states_.push_back(s);
    hashes_.push_back(bits_hash ^ s.Hash());
    arena_.insert(arena_.end(), bits.begin(), bits.end());
    if (set_.insert(idx).second) return true;
    states_.pop_back();
    hashes_.pop_back();
    arena_.resize(arena_.size() - words_);
    return false;
  }

 private:
  struct Hasher {
    const Memo* m;
    size_t operator()(size_t i) const { return m->hashes_[i]; }
  };
  struct Equal {
    const Memo* m;
    bool operator()(size_t a, size_t b) const {
      return m->hashes_[a] == m->hashes_[b] && m->states_[a] == m->states_[b] &&
             std::memcmp(&m->arena_[a * m->words_], &m->arena_[b * m->words_],
                         m->words_ * sizeof(uint64_t)) == 0;
    }
  };
  size_t words_;
  std::vector<uint64_t> arena_;
  std::vector<State> states_;
  std::vector<uint64_t> hashes_;
  std::unordered_set<size_t, Hasher, Equal> set_;
};

// Wing & Gong / Lowe over one key's ops.
KeyResult SearchKey(const std::string& key, std::vector<KeyOp> ops,
                    const std::vector<std::string>& values,
                    const CheckOptions& options) {
  KeyResult r;
  r.key = key;
  r.ops = ops.size();
  const int n = static_cast<int>(ops.size());

  // Events: calls and returns (unknown ops have no return). At equal times
  // calls sort first, so touching ops count as concurrent.
  struct Event {
    int64_t time;
    bool is_call;
    int op;
  };
  std::vector<Event> events;
  int known = 0;
  for (int i = 0; i < n; i++) {
    events.push_back({ops[i].op->call_ns, true, i});
    if (ops[i].op->outcome == Outcome::kOk) {
      events.push_back({ops[i].op->return_ns, false, i});
      known++;
    }
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const Event& a, const Event& b) {
                     if (a.time != b.time) return a.time < b.time;
                     return a.is_call && !b.is_call;
                   });
  // A doubly linked list over events; head and tail sentinels.
  const int m = static_cast<int>(events.size());
  const int head = m, tail = m + 1;
  std::vector<int> next(m + 2), prev(m + 2), match(m, -1);
  std::vector<int> call_of(n, -1), ret_of(n, -1);
  for (int i = 0; i < m; i++) {
    (events[i].is_call ? call_of : ret_of)[events[i].op] = i;
  }
  for (int i = 0; i < m; i++) {
    if (events[i].is_call) match[i] = ret_of[events[i].op];
  }
  for (int i = 0; i < m; i++) {
    prev[i] = i == 0 ? head : i - 1;
    next[i] = i == m - 1 ? tail : i + 1;
  }
  next[head] = m == 0 ? tail : 0;
  prev[tail] = m == 0 ? head : m - 1;
  auto unlink = [&](int e) {
    next[prev[e]] = next[e];
    prev[next[e]] = prev[e];
  };
  auto relink = [&](int e) {
    next[prev[e]] = e;
    prev[next[e]] = e;
  };
  auto lift = [&](int e) {
    unlink(e);
    if (match[e] >= 0) unlink(match[e]);
  };
  auto unlift = [&](int e) {
    if (match[e] >= 0) relink(match[e]);
    relink(e);
  };

  // Zobrist hash of the linearized set, updated per bit flip.
  std::vector<uint64_t> zobrist(n);
  uint64_t x = 0x853c49e6748fea9bULL ^ static_cast<uint64_t>(n);
  for (auto& z : zobrist) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    z = x * 0x2545f4914f6cdd1dULL;
  }
  const size_t words = (static_cast<size_t>(n) + 63) / 64;
  std::vector<uint64_t> bits(std::max<size_t>(words, 1), 0);
  uint64_t bits_hash = 0;
  Memo memo(bits.size());

  struct Frame {
    int entry;
    State state;
  };
  std::vector<Frame> stack;
  State state;
  int remaining = known;
  size_t best_depth = 0;
  bool have_best = false;
  int entry = next[head];
  while (remaining > 0) {
    if (options.max_steps_per_key && r.steps >= options.max_steps_per_key) {
      r.ok = false;
      r.gave_up = true;
      return r;
    }
    if (entry != tail && events[entry].is_call) {
      r.steps++;
      int op = events[entry].op;
      State s = state;
      if (Step(&s, ops[op])) {
        bits[op / 64] |= 1ULL << (op % 64);
        if (memo.Insert(bits, bits_hash ^ zobrist[op], s)) {
          bits_hash ^= zobrist[op];
          stack.push_back({entry, state});
          state = s;
          if (ops[op].op->outcome == Outcome::kOk) remaining--;
          lift(entry);
          entry = next[head];
          continue;
        }
        bits[op / 64] &= ~(1ULL << (op % 64));
      }
      entry = next[entry];
      continue;
    }
    // A return (or the end of the list): the op that returns here must be
    // linearized before anything later; backtrack.
    if (!have_best || stack.size() > best_depth) {
      have_best = true;
      best_depth = stack.size();
      r.best_prefix.clear();
      for (const Frame& f : stack) {
        r.best_prefix.push_back(ops[events[f.entry].op].op->id);
      }
      r.stuck.clear();
      for (int e = next[head]; e != tail; e = next[e]) {
        if (!events[e].is_call) break;
        if (ops[events[e].op].op->outcome == Outcome::kOk) {
          r.stuck.push_back(ops[events[e].op].op->id);
        }
      }
      r.state_after_prefix = StateString(state, values);
    }
    if (stack.empty()) {
      r.ok = false;
      return r;
    }
    Frame f = stack.back();
    stack.pop_back();
    int op = events[f.entry].op;
    state = f.state;
    bits[op / 64] &= ~(1ULL << (op % 64));
    bits_hash ^= zobrist[op];
    if (ops[op].op->outcome == Outcome::kOk) remaining++;
    unlift(f.entry);
    entry = next[f.entry];
  }
  r.best_prefix.clear();
  r.stuck.clear();
  return r;
}

// Unknown writes no op observed, on keys where that is safe (lincheck.h).
std::set<const Operation*> Unobserved(
    const std::vector<const Operation*>& ops) {
  std::set<const Operation*> out;
  std::set<std::string> written, observed;
  for (const Operation* op : ops) {
    if (op->type == OpType::kCas && op->cmp == CmpKind::kModRevision) {
      return out;
    }
    if (op->outcome == Outcome::kOk) {
      if (op->type == OpType::kDelete && op->deleted > 0 && !op->has_read) {
        return out;
      }
      if (op->type == OpType::kCas && !op->succeeded && !op->has_read) {
        return out;
      }
    }
    if (op->type == OpType::kPut || op->type == OpType::kCas) {
      if (!written.insert(op->value).second) return out;  // not unique
    }
    if (op->type == OpType::kCas && op->cmp == CmpKind::kValue) {
      observed.insert(op->expect_value);
    }
    if (op->outcome == Outcome::kOk && op->found &&
        (op->type != OpType::kDelete)) {
      observed.insert(op->read_value);
    }
    if (op->outcome == Outcome::kOk && op->type == OpType::kDelete &&
        op->deleted > 0) {
      observed.insert(op->read_value);
    }
  }
  for (const Operation* op : ops) {
    if (op->outcome == Outcome::kUnknown &&
        (op->type == OpType::kPut || op->type == OpType::kCas) &&
        !observed.count(op->value)) {
      out.insert(op);
    }
  }
  return out;
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

Result<Operation> FromProto(const Op& p) {
  Operation o;
  o.id = p.id();
  o.process = p.process();
  if (p.type() == "put") {
    o.type = OpType::kPut;
  } else if (p.type() == "get") {
    o.type = OpType::kGet;
  } else if (p.type() == "delete") {
    o.type = OpType::kDelete;
  } else if (p.type() == "cas") {
    o.type = OpType::kCas;
  } else {
    return Status::InvalidArgument("unknown op type \"" + p.type() + "\"");
  }
  o.key = p.key();
  o.value = p.value();
  if (o.type == OpType::kCas) {
    if (p.cmp() == "value") {
      o.cmp = CmpKind::kValue;
    } else if (p.cmp() == "mod_revision") {
      o.cmp = CmpKind::kModRevision;
    } else if (p.cmp() == "absent") {
      o.cmp = CmpKind::kAbsent;
    } else {
      return Status::InvalidArgument("unknown cas cmp \"" + p.cmp() + "\"");
    }
  }
  o.expect_value = p.expect_value();
  o.expect_mod_revision = p.expect_mod_revision();
  o.call_ns = p.call_ns();
  o.return_ns = p.return_ns();
  if (p.outcome() == "ok") {
    o.outcome = Outcome::kOk;
  } else if (p.outcome() == "fail") {
    o.outcome = Outcome::kFail;
  } else if (p.outcome() == "unknown") {
    o.outcome = Outcome::kUnknown;
  } else {
    return Status::InvalidArgument("unknown outcome \"" + p.outcome() + "\"");
  }
  if (o.outcome == Outcome::kOk && o.return_ns < o.call_ns) {
    return Status::InvalidArgument("op " + std::to_string(o.id) +
                                   " returns before it is called");
  }
  o.revision = p.revision();
  o.found = p.found();
  o.read_value = p.read_value();
  o.read_mod_revision = p.read_mod_revision();
  o.succeeded = p.succeeded();
  o.has_read = p.has_read();
  o.deleted = p.deleted();
  o.error = p.error();
  o.member = p.member();
  return o;
}

}  // namespace

bool Operation::Writes() const {
  return type == OpType::kPut || type == OpType::kDelete ||
         type == OpType::kCas;
}

Result<std::vector<Operation>> ParseHistory(std::string_view jsonl) {
  std::vector<Operation> out;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  size_t line_no = 0;
  std::set<int64_t> ids;
  while (!jsonl.empty()) {
    size_t nl = jsonl.find('\n');
    std::string_view line = jsonl.substr(0, nl);
    jsonl = nl == std::string_view::npos ? std::string_view()
                                         : jsonl.substr(nl + 1);
    line_no++;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    Op p;
    auto st = google::protobuf::util::JsonStringToMessage(std::string(line), &p,
                                                          opts);
    if (!st.ok()) {
      return Status::InvalidArgument("line " + std::to_string(line_no) + ": " +
                                     std::string(st.message()));
    }
    auto op = FromProto(p);
    if (!op.ok()) {
      return Status::InvalidArgument("line " + std::to_string(line_no) + ": " +
                                     op.status().message());
    }
    if (!ids.insert(op->id).second) {
      return Status::InvalidArgument("line " + std::to_string(line_no) +
                                     ": duplicate op id " +
                                     std::to_string(op->id));
    }
    out.push_back(std::move(*op));
  }
  return out;
}

std::vector<std::string> CheckGlobal(const std::vector<Operation>& history) {
  std::vector<std::string> v;
  constexpr size_t kMaxReports = 20;
  auto report = [&](std::string s) {
    if (v.size() < kMaxReports) v.push_back(std::move(s));
  };
  std::vector<const Operation*> ok;
  for (const auto& op : history) {
    if (op.outcome == Outcome::kOk) ok.push_back(&op);
  }
  auto wrote = [](const Operation* op) {
    return (op->type == OpType::kPut) ||
           (op->type == OpType::kDelete && op->deleted > 0) ||
           (op->type == OpType::kCas && op->succeeded);
  };
  std::map<int64_t, const Operation*> write_revs;
  for (const Operation* op : ok) {
    if (op->found && op->type != OpType::kDelete &&
        op->read_mod_revision > op->revision) {
      report("op " + std::to_string(op->id) + " read mod_revision " +
             std::to_string(op->read_mod_revision) + " above its revision " +
             std::to_string(op->revision));
    }
    if (!wrote(op)) continue;
    auto [it, fresh] = write_revs.emplace(op->revision, op);
    if (!fresh) {
      report("ops " + std::to_string(it->second->id) + " and " +
             std::to_string(op->id) + " both wrote revision " +
             std::to_string(op->revision));
    }
  }
  // Real time: whatever completed before b was invoked has a revision no
  // higher than b's (lower, if b wrote).
  std::vector<const Operation*> by_return = ok, by_call = ok;
  std::sort(by_return.begin(), by_return.end(),
            [](auto* a, auto* b) { return a->return_ns < b->return_ns; });
  std::sort(by_call.begin(), by_call.end(),
            [](auto* a, auto* b) { return a->call_ns < b->call_ns; });
  const Operation* max_op = nullptr;
  size_t j = 0;
  for (const Operation* b : by_call) {
    while (j < by_return.size() && by_return[j]->return_ns < b->call_ns) {
      if (!max_op || by_return[j]->revision > max_op->revision) {
        max_op = by_return[j];
      }
      j++;
    }
    if (!max_op) continue;
    if (b->revision < max_op->revision ||
        (wrote(b) && b->revision == max_op->revision)) {
      report("op " + std::to_string(b->id) + " (revision " +
             std::to_string(b->revision) + ") began after op " +
             std::to_string(max_op->id) + " (revision " +
             std::to_string(max_op->revision) +
             ") completed: revisions went back in real time");
    }
  }
  return v;
}

CheckResult Check(const std::vector<Operation>& history,
                  const CheckOptions& options) {
  CheckResult res;
  res.global_violations = CheckGlobal(history);
  std::map<std::string, std::vector<const Operation*>> by_key;
  for (const auto& op : history) {
    if (op.outcome == Outcome::kFail) continue;
    if (op.outcome == Outcome::kUnknown && !op.Writes()) continue;
    by_key[op.key].push_back(&op);
  }
  for (auto& [key, kops] : by_key) {
    std::set<const Operation*> pruned;
    if (options.prune_unobserved) pruned = Unobserved(kops);
    std::vector<std::string> values{""};
    std::map<std::string, uint32_t> ids;
    auto intern = [&](const std::string& v) {
      auto [it, fresh] = ids.emplace(v, values.size());
      if (fresh) values.push_back(v);
      return it->second;
    };
    std::vector<KeyOp> ops;
    for (const Operation* op : kops) {
      if (pruned.count(op)) continue;
      KeyOp k{op};
      k.value = intern(op->value);
      k.expect_value = intern(op->expect_value);
      k.read_value = intern(op->read_value);
      ops.push_back(k);
    }
    KeyResult kr = SearchKey(key, std::move(ops), values, options);
    kr.pruned = pruned.size();
    res.ops += kr.ops;
    res.steps += kr.steps;
    if (!kr.ok) res.ok = false;
    if (kr.gave_up) res.gave_up = true;
    res.keys.push_back(std::move(kr));
  }
  if (!res.global_violations.empty()) res.ok = false;
  return res;
}

std::string ResultToJson(const CheckResult& r) {
  auto ids = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); i++) {
      if (i) s += ",";
      s += std::to_string(v[i]);
    }
    return s + "]";
  };
  std::string out = "{\"ok\":" + std::string(r.ok ? "true" : "false");
  out += ",\"gave_up\":" + std::string(r.gave_up ? "true" : "false");
  out += ",\"ops\":" + std::to_string(r.ops);
  out += ",\"steps\":" + std::to_string(r.steps);
  out += ",\"global_violations\":[";
  for (size_t i = 0; i < r.global_violations.size(); i++) {
    if (i) out += ",";
    out += "\"" + JsonEscape(r.global_violations[i]) + "\"";
  }
  out += "],\"keys\":[";
  bool first = true;
  for (const auto& k : r.keys) {
    if (!first) out += ",";
    first = false;
    out += "{\"key\":\"" + JsonEscape(k.key) + "\"";
    out += ",\"ok\":" + std::string(k.ok ? "true" : "false");
    out += ",\"gave_up\":" + std::string(k.gave_up ? "true" : "false");
    out += ",\"ops\":" + std::to_string(k.ops);
    out += ",\"pruned\":" + std::to_string(k.pruned);
    out += ",\"steps\":" + std::to_string(k.steps);
    if (!k.ok) {
      out += ",\"best_prefix\":" + ids(k.best_prefix);
      out += ",\"stuck\":" + ids(k.stuck);
      out += ",\"state_after_prefix\":\"" + JsonEscape(k.state_after_prefix) +
             "\"";
    }
    out += "}";
  }
  return out + "]}";
}

std::string OpToJson(const Operation& op) {
  Op p;
  static const char* kTypes[] = {"put", "get", "delete", "cas"};
  static const char* kOutcomes[] = {"ok", "fail", "unknown"};
  static const char* kCmps[] = {"", "value", "mod_revision", "absent"};
  p.set_id(op.id);
  p.set_process(op.process);
  p.set_type(kTypes[static_cast<int>(op.type)]);
  p.set_key(op.key);
  p.set_value(op.value);
  p.set_cmp(kCmps[static_cast<int>(op.cmp)]);
  p.set_expect_value(op.expect_value);
  p.set_expect_mod_revision(op.expect_mod_revision);
  p.set_call_ns(op.call_ns);
  p.set_return_ns(op.return_ns);
  p.set_outcome(kOutcomes[static_cast<int>(op.outcome)]);
  p.set_revision(op.revision);
  p.set_found(op.found);
  p.set_read_value(op.read_value);
  p.set_read_mod_revision(op.read_mod_revision);
  p.set_succeeded(op.succeeded);
  p.set_has_read(op.has_read);
  p.set_deleted(op.deleted);
  p.set_error(op.error);
  p.set_member(op.member);
  std::string out;
  google::protobuf::util::JsonPrintOptions po;
  po.preserve_proto_field_names = true;
  KEEL_CHECK(google::protobuf::util::MessageToJsonString(p, &out, po).ok());
  return out;
}

}  // namespace keel::check
