#ifndef QTALE_MEMORY_HINTS_H
#define QTALE_MEMORY_HINTS_H

/// Asks the CPU to start loading the cache line at `address` into all cache levels, without waiting
/// for it and without faulting if the address is invalid. Swift has no prefetch of its own, and
/// clang's `_mm_prefetch` is a macro that Swift cannot import; this inline function compiles to one
/// `prefetcht0` inside the Swift caller.
static inline void qtale_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
