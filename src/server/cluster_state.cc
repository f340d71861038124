#include "server/cluster_state.h"

#include "common/coding.h"

namespace keel::server {
namespace {

constexpr char kVersion = 1;

void PutStrings(std::string* out, const std::vector<std::string>& v) {
  PutVarint64(out, v.size());
  for (const auto& s : v) PutLengthPrefixed(out, s);
}

bool GetStrings(std::string_view* in, std::vector<std::string>* v) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  v->clear();
  for (uint64_t i = 0; i < n; i++) {
    std::string_view s;
    if (!GetLengthPrefixed(in, &s)) return false;
    v->emplace_back(s);
  }
  return true;
}

}  // namespace

bool ClusterState::HasAlarm(AlarmType t) const {
  for (const auto& [id, type] : alarms) {
    if (type == static_cast<int32_t>(t)) return true;
  }
  return false;
}

std::string ClusterState::Encode() const {
  std::string out;
  out.push_back(kVersion);
  PutVarint64(&out, cluster_id);
  PutVarint64(&out, members.size());
  for (const auto& [id, m] : members) {
    PutVarint64(&out, m.id);
    PutLengthPrefixed(&out, m.name);
    PutStrings(&out, m.peer_urls);
    PutStrings(&out, m.client_urls);
    out.push_back(m.is_learner ? 1 : 0);
  }
  PutVarint64(&out, alarms.size());
  for (const auto& [id, type] : alarms) {
    PutVarint64(&out, id);
    PutVarint64(&out, static_cast<uint64_t>(type));
  }
  return out;
}

bool ClusterState::Decode(std::string_view in) {
  ClusterState s;
  if (in.empty() || in[0] != kVersion) return false;
  in.remove_prefix(1);
  uint64_t n;
  if (!GetVarint64(&in, &s.cluster_id) || !GetVarint64(&in, &n) ||
      n > in.size()) {
    return false;
  }
  for (uint64_t i = 0; i < n; i++) {
    MemberInfo m;
    std::string_view name;
    if (!GetVarint64(&in, &m.id) || !GetLengthPrefixed(&in, &name) ||
        !GetStrings(&in, &m.peer_urls) || !GetStrings(&in, &m.client_urls) ||
        in.empty()) {
      return false;
    }
    m.name = std::string(name);
    m.is_learner = in[0] == 1;
    in.remove_prefix(1);
    s.members[m.id] = std::move(m);
  }
  if (!GetVarint64(&in, &n) || n > in.size()) return false;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t id, type;
    if (!GetVarint64(&in, &id) || !GetVarint64(&in, &type)) return false;
    s.alarms.emplace(id, static_cast<int32_t>(type));
  }
  if (!in.empty()) return false;
  *this = std::move(s);
  return true;
}

}  // namespace keel::server
