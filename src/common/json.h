// JSON string literals, for the JSON that keel writes by hand (log lines,
// the gateway's error bodies).
//
// Thread safety: a pure function.
#pragma once

#include <string>
#include <string_view>

namespace keel {

// s as a JSON string literal, quotes included: '"', '\\' and the control
// characters (and DEL, which some log viewers show raw) escaped; other
// bytes, UTF-8 included, are copied.
std::string JsonString(std::string_view s);

}  // namespace keel
