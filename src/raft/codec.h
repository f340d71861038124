// Binary encoding of the Raft core's values, for the WAL and the transport.
//
// Format: fields in a fixed order, integers as LEB128 varints, byte strings
// length-prefixed; every top-level value starts with a one-byte format
// version (1). Decoders return false on any truncated or malformed input and
// never read past the end; they are safe on bytes from a corrupt disk or an
// untrusted peer.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "raft/types.h"

namespace keel::raft {

void EncodeEntry(const Entry& e, std::string* out);
bool DecodeEntry(std::string_view in, Entry* e);

void EncodeHardState(const HardState& hs, std::string* out);
bool DecodeHardState(std::string_view in, HardState* hs);

void EncodeConfState(const ConfState& cs, std::string* out);
bool DecodeConfState(std::string_view in, ConfState* cs);

void EncodeSnapshotMetadata(const SnapshotMetadata& m, std::string* out);
bool DecodeSnapshotMetadata(std::string_view in, SnapshotMetadata* m);

void EncodeConfChange(const ConfChange& cc, std::string* out);
bool DecodeConfChange(std::string_view in, ConfChange* cc);

// Includes the snapshot (metadata and data) of a kSnap message.
void EncodeMessage(const Message& m, std::string* out);
bool DecodeMessage(std::string_view in, Message* m);

}  // namespace keel::raft
