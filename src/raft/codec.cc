#include "raft/codec.h"

#include "common/coding.h"

namespace keel::raft {
namespace {

constexpr char kVersion = 1;

bool GetString(std::string_view* in, std::string* s) {
  std::string_view v;
  if (!GetLengthPrefixed(in, &v)) return false;
  s->assign(v.data(), v.size());
  return true;
}

bool GetVersion(std::string_view* in) {
  if (in->empty() || (*in)[0] != kVersion) return false;
  in->remove_prefix(1);
  return true;
}

void PutIds(std::string* out, const std::vector<NodeId>& ids) {
  PutVarint64(out, ids.size());
  for (NodeId id : ids) PutVarint64(out, id);
}

bool GetIds(std::string_view* in, std::vector<NodeId>* ids) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  ids->clear();
  ids->reserve(n);
  for (uint64_t i = 0; i < n; i++) {
    NodeId id;
    if (!GetVarint64(in, &id)) return false;
    ids->push_back(id);
  }
  return true;
}

void PutEntryFields(std::string* out, const Entry& e) {
  PutVarint64(out, e.term);
  PutVarint64(out, e.index);
  out->push_back(static_cast<char>(e.type));
  PutLengthPrefixed(out, e.data);
}

bool GetEntryFields(std::string_view* in, Entry* e) {
  if (!GetVarint64(in, &e->term) || !GetVarint64(in, &e->index) ||
      in->empty()) {
    return false;
  }
  uint8_t t = static_cast<uint8_t>((*in)[0]);
  if (t > static_cast<uint8_t>(EntryType::kConfChange)) return false;
  e->type = static_cast<EntryType>(t);
  in->remove_prefix(1);
  return GetString(in, &e->data);
}

void PutConfStateFields(std::string* out, const ConfState& cs) {
  PutIds(out, cs.voters);
  PutIds(out, cs.learners);
  PutIds(out, cs.voters_outgoing);
  PutIds(out, cs.learners_next);
  out->push_back(cs.auto_leave ? 1 : 0);
}

bool GetConfStateFields(std::string_view* in, ConfState* cs) {
  if (!GetIds(in, &cs->voters) || !GetIds(in, &cs->learners) ||
      !GetIds(in, &cs->voters_outgoing) || !GetIds(in, &cs->learners_next) ||
      in->empty() || static_cast<uint8_t>((*in)[0]) > 1) {
    return false;
  }
  cs->auto_leave = (*in)[0] == 1;
  in->remove_prefix(1);
  return true;
}

void PutMetadataFields(std::string* out, const SnapshotMetadata& m) {
  PutConfStateFields(out, m.conf_state);
  PutVarint64(out, m.index);
  PutVarint64(out, m.term);
}

bool GetMetadataFields(std::string_view* in, SnapshotMetadata* m) {
  return GetConfStateFields(in, &m->conf_state) && GetVarint64(in, &m->index) &&
         GetVarint64(in, &m->term);
}

}  // namespace

void EncodeEntry(const Entry& e, std::string* out) {
  out->push_back(kVersion);
  PutEntryFields(out, e);
}

bool DecodeEntry(std::string_view in, Entry* e) {
  return GetVersion(&in) && GetEntryFields(&in, e) && in.empty();
}

void EncodeHardState(const HardState& hs, std::string* out) {
  out->push_back(kVersion);
  PutVarint64(out, hs.term);
  PutVarint64(out, hs.vote);
  PutVarint64(out, hs.commit);
}

bool DecodeHardState(std::string_view in, HardState* hs) {
  return GetVersion(&in) && GetVarint64(&in, &hs->term) &&
         GetVarint64(&in, &hs->vote) && GetVarint64(&in, &hs->commit) &&
         in.empty();
}

void EncodeConfState(const ConfState& cs, std::string* out) {
  out->push_back(kVersion);
  PutConfStateFields(out, cs);
}

bool DecodeConfState(std::string_view in, ConfState* cs) {
  return GetVersion(&in) && GetConfStateFields(&in, cs) && in.empty();
}

void EncodeSnapshotMetadata(const SnapshotMetadata& m, std::string* out) {
  out->push_back(kVersion);
  PutMetadataFields(out, m);
}

bool DecodeSnapshotMetadata(std::string_view in, SnapshotMetadata* m) {
  return GetVersion(&in) && GetMetadataFields(&in, m) && in.empty();
}

void EncodeConfChange(const ConfChange& cc, std::string* out) {
  out->push_back(kVersion);
  out->push_back(static_cast<char>(cc.transition));
  PutVarint64(out, cc.changes.size());
  for (const auto& c : cc.changes) {
    out->push_back(static_cast<char>(c.type));
    PutVarint64(out, c.node_id);
  }
  PutLengthPrefixed(out, cc.context);
}

bool DecodeConfChange(std::string_view in, ConfChange* cc) {
  if (!GetVersion(&in) || in.empty()) return false;
  uint8_t t = static_cast<uint8_t>(in[0]);
  if (t > static_cast<uint8_t>(ConfChangeTransition::kJointExplicit)) {
    return false;
  }
  cc->transition = static_cast<ConfChangeTransition>(t);
  in.remove_prefix(1);
  uint64_t n;
  if (!GetVarint64(&in, &n) || n > in.size()) return false;
  cc->changes.clear();
  for (uint64_t i = 0; i < n; i++) {
    if (in.empty()) return false;
    uint8_t ct = static_cast<uint8_t>(in[0]);
    if (ct > static_cast<uint8_t>(ConfChangeType::kAddLearnerNode)) {
      return false;
    }
    in.remove_prefix(1);
    ConfChangeSingle c;
    c.type = static_cast<ConfChangeType>(ct);
    if (!GetVarint64(&in, &c.node_id)) return false;
    cc->changes.push_back(c);
  }
  return GetString(&in, &cc->context) && in.empty();
}

void EncodeMessage(const Message& m, std::string* out) {
  out->push_back(kVersion);
  out->push_back(static_cast<char>(m.type));
  PutVarint64(out, m.to);
  PutVarint64(out, m.from);
  PutVarint64(out, m.term);
  PutVarint64(out, m.log_term);
  PutVarint64(out, m.index);
  PutVarint64(out, m.commit);
  out->push_back(m.reject ? 1 : 0);
  PutVarint64(out, m.reject_hint);
  PutLengthPrefixed(out, m.context);
  PutVarint64(out, m.entries.size());
  for (const auto& e : m.entries) PutEntryFields(out, e);
  out->push_back(m.snapshot ? 1 : 0);
  if (m.snapshot) {
    PutMetadataFields(out, m.snapshot->metadata);
    PutLengthPrefixed(out, m.snapshot->data);
  }
}

bool DecodeMessage(std::string_view in, Message* m) {
  if (!GetVersion(&in) || in.empty()) return false;
  uint8_t t = static_cast<uint8_t>(in[0]);
  if (t > static_cast<uint8_t>(MessageType::kPreVoteResp)) return false;
  m->type = static_cast<MessageType>(t);
  in.remove_prefix(1);
  if (!GetVarint64(&in, &m->to) || !GetVarint64(&in, &m->from) ||
      !GetVarint64(&in, &m->term) || !GetVarint64(&in, &m->log_term) ||
      !GetVarint64(&in, &m->index) || !GetVarint64(&in, &m->commit) ||
      in.empty() || static_cast<uint8_t>(in[0]) > 1) {
    return false;
  }
  m->reject = in[0] == 1;
  in.remove_prefix(1);
  if (!GetVarint64(&in, &m->reject_hint) || !GetString(&in, &m->context)) {
    return false;
  }
  uint64_t n;
  if (!GetVarint64(&in, &n) || n > in.size()) return false;
  m->entries.clear();
  m->entries.reserve(n);
  for (uint64_t i = 0; i < n; i++) {
    Entry e;
    if (!GetEntryFields(&in, &e)) return false;
    m->entries.push_back(std::move(e));
  }
  if (in.empty() || static_cast<uint8_t>(in[0]) > 1) return false;
  bool has_snap = in[0] == 1;
  in.remove_prefix(1);
  m->snapshot.reset();
  if (has_snap) {
    auto snap = std::make_shared<Snapshot>();
    if (!GetMetadataFields(&in, &snap->metadata) ||
        !GetString(&in, &snap->data)) {
      return false;
    }
    m->snapshot = std::move(snap);
  }
  return in.empty();
}

}  // namespace keel::raft
