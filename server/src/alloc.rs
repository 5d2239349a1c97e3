//! The allocator's one setting the relay changes: on a small memory plan
//! (a store relay on a small box), memory freed is given back to the OS at
//! once instead of after mimalloc's default delay of a second, which on a
//! burst of uploads kept several MiB resident that the plan did not count
//! (BENCHMARKS.md, the store relay). A larger relay keeps the delay: giving
//! memory back at once costs system calls on every burst.

/// Plans at or under this many MiB give freed memory back at once.
pub const SMALL_PLAN_MIB: u64 = 64;

// `mi_option_set` and `mi_option_get` are in the mimalloc library the
// `mimalloc` crate links; its Rust bindings declare them only behind a
// feature that pulls in another crate, so the two are declared here.
#[cfg(feature = "mimalloc")]
use mimalloc as _;

#[cfg(feature = "mimalloc")]
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    // Read back only by the test that checks the option's index.
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (the version
/// `libmimalloc-sys` 0.1.49 builds by default; `Cargo.lock` pins it, and
/// the test below checks the index names that option).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Applies the memory plan to the allocator (nothing without the
/// `mimalloc` feature: the system allocator has no such delay).
pub fn plan(memory_mib: u64) {
    #[cfg(feature = "mimalloc")]
    if memory_mib <= SMALL_PLAN_MIB {
        // SAFETY: setting an option is a plain store mimalloc allows at
        // any time; the index is mimalloc's purge delay (see the test).
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    #[cfg(not(feature = "mimalloc"))]
    let _ = memory_mib;
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    /// The allocator's purge delay in milliseconds.
    fn purge_delay_ms() -> i64 {
        // SAFETY: reading an option has no preconditions. c_long is i64 on
        // the 64-bit targets the relay is built for.
        #[allow(clippy::useless_conversion)]
        i64::from(unsafe { super::mi_option_get(super::MI_OPTION_PURGE_DELAY) })
    }

    #[test]
    fn the_index_is_mimallocs_purge_delay() {
        // mimalloc 3's default purge delay is 1000 ms; no other option of
        // its list defaults to that.
        assert_eq!(purge_delay_ms(), 1000);
        super::plan(super::SMALL_PLAN_MIB + 1);
        assert_eq!(purge_delay_ms(), 1000);
        super::plan(16);
        assert_eq!(purge_delay_ms(), 0);
    }
}
