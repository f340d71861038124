// ClusterState: the replicated membership (names, peer and client URLs,
// learner flag) and the active alarms.
//
// It changes only by applying committed entries (configuration changes,
// member attribute updates, alarms), so every member holds the same state
// at the same applied index. It travels as the data of Raft snapshots and
// is rebuilt on restart from the newest snapshot plus the log after it.
//
// Thread safety: a value; the Server guards its copy with a mutex.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace keel::server {

struct MemberInfo {
  uint64_t id = 0;
  std::string name;  // empty until the member published it
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
  bool is_learner = false;
  friend bool operator==(const MemberInfo&, const MemberInfo&) = default;
};

// etcdserverpb.AlarmType values.
enum class AlarmType : int32_t { kNone = 0, kNoSpace = 1, kCorrupt = 2 };

struct ClusterState {
  uint64_t cluster_id = 0;
  std::map<uint64_t, MemberInfo> members;
  // (member id, alarm type) pairs, as etcd's alarm store.
  std::set<std::pair<uint64_t, int32_t>> alarms;

  bool HasAlarm(AlarmType t) const;
  std::string Encode() const;
  bool Decode(std::string_view in);
  friend bool operator==(const ClusterState&, const ClusterState&) = default;
};

}  // namespace keel::server
