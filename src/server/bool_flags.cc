#include "server/bool_flags.h"

#include <CLI/CLI.hpp>

namespace keel::server {

CLI::Option* AddBoolFlag(CLI::App& app, const std::string& name,
                         std::string* raw, const std::string& env,
                         const std::string& help) {
  return app.add_option("--" + name, *raw, help)
      ->envname(env)
      ->expected(0, 1)
      ->default_str("true");
}

Status ParseBoolFlag(const std::string& name, const std::string& raw,
                     bool* out) {
  if (raw.empty() || raw == "true" || raw == "1") {
    *out = true;
  } else if (raw == "false" || raw == "0") {
    *out = false;
  } else {
    return Status::InvalidArgument("invalid value \"" + raw + "\" for flag -" +
                                   name);
  }
  return Status::OK();
}

}  // namespace keel::server
