// jemalloc's options for the keel member, read by jemalloc at its first
// allocation (the executable's `malloc_conf` overrides the library's empty
// default). Linked only with jemalloc (src/cmd/CMakeLists.txt).
//
// - narenas:1: one arena instead of 4 per core. The threads' caches take
//   the allocations of the hot path either way; more arenas only spread a
//   member's memory over more partly used pages (a loaded leader's peak RSS
//   was 21% above glibc's with the default, 1.00x with one arena).
// - dirty_decay_ms:1000, muzzy_decay_ms:0: freed pages go back to the
//   kernel after about a second instead of ten, so a burst's memory does
//   not linger in the peak RSS.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's interface.
const char* malloc_conf = "narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0";
}
