// hwsync/thread_annotations.hpp — Clang thread-safety capability attributes.
//
// With clang and -Wthread-safety, code that touches a HWSYNC_GUARDED_BY(m)
// member without holding m, or returns with m still held, is a compile-time
// warning. Under other compilers the macros expand to nothing.
#pragma once

#if defined(__clang__)
#define HWSYNC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define HWSYNC_THREAD_ANNOTATION(x)
#endif

#define HWSYNC_CAPABILITY(name) HWSYNC_THREAD_ANNOTATION(capability(name))
#define HWSYNC_SCOPED_CAPABILITY HWSYNC_THREAD_ANNOTATION(scoped_lockable)
#define HWSYNC_GUARDED_BY(m) HWSYNC_THREAD_ANNOTATION(guarded_by(m))
#define HWSYNC_PT_GUARDED_BY(m) HWSYNC_THREAD_ANNOTATION(pt_guarded_by(m))
#define HWSYNC_REQUIRES(...) HWSYNC_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define HWSYNC_REQUIRES_SHARED(...) \
  HWSYNC_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define HWSYNC_ACQUIRE(...) HWSYNC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define HWSYNC_ACQUIRE_SHARED(...) HWSYNC_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define HWSYNC_RELEASE(...) HWSYNC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define HWSYNC_RELEASE_SHARED(...) HWSYNC_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define HWSYNC_TRY_ACQUIRE(...) HWSYNC_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define HWSYNC_TRY_ACQUIRE_SHARED(...) \
  HWSYNC_THREAD_ANNOTATION(try_acquire_shared_capability(__VA_ARGS__))
#define HWSYNC_EXCLUDES(...) HWSYNC_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define HWSYNC_NO_THREAD_SAFETY_ANALYSIS HWSYNC_THREAD_ANNOTATION(no_thread_safety_analysis)
