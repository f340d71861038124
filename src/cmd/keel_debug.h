// `keel debug`: test-only tools that damage a stopped member on purpose.
#pragma once

namespace keel::cmd {

// argv[1] == "debug"; returns the process exit code.
int DebugMain(int argc, char** argv);

}  // namespace keel::cmd
