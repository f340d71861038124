// etcd's boolean flags for CLI11: "--flag", "--flag=true", "--flag=false"
// (and Go's 1/0), from the command line or an ETCD_* variable. Shared by the
// flags in config.cc and security_config.cc.
//
// Thread safety: functions of their arguments.
#pragma once

#include <string>

#include "common/status.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace keel::server {

// Adds --name to app, read into *raw as a string ("" or "true" when given
// without a value); the caller converts *raw with ParseBoolFlag after
// parsing.
CLI::Option* AddBoolFlag(CLI::App& app, const std::string& name,
                         std::string* raw, const std::string& env,
                         const std::string& help);

// raw as a bool; an error in Go's flag package words otherwise.
Status ParseBoolFlag(const std::string& name, const std::string& raw,
                     bool* out);

}  // namespace keel::server
