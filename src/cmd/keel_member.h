// `keel member replace`: the client of keel's MemberReplace extension
// (proto/keelpb/keel.proto).
#pragma once

namespace keel::cmd {

// argv[1] == "member"; returns the process exit code.
int MemberMain(int argc, char** argv);

}  // namespace keel::cmd
