//! The global allocator of the processes `basidia run` builds (and of the benchmarks).
//!
//! A service host is a multi-threaded tokio program: a message is allocated by the thread that
//! read it and freed by whichever thread ran its worker. glibc's allocator serialises such
//! cross-thread frees on its arena locks and consolidates its free lists whenever a larger block
//! (a boxed future, a task) is asked for; under load that becomes a large share of a service's
//! CPU time. mimalloc frees across threads without a shared lock.
//!
//! mimalloc by default commits its arenas eagerly on Linux, which grows a small service's
//! resident set by whole arenas it may never use; [`Allocator`] turns that off before its first
//! allocation, so memory is committed as it is used.
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: basidia_alloc::Allocator = basidia_alloc::Allocator;
//!
//! let v = vec![1u8; 1024];
//! assert_eq!(v.len(), 1024);
//! ```

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Once;

use mimalloc::MiMalloc;

/// mimalloc with arenas committed on use rather than eagerly. Declare it with
/// `#[global_allocator]` in a binary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allocator;

/// mimalloc's `mi_option_arena_eager_commit` (the fifth entry of its `mi_option_e`).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

static CONFIGURED: Once = Once::new();

fn configure() {
    CONFIGURED.call_once(|| {
        // SAFETY: setting an option is allowed at any time; it allocates nothing.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) }
    });
}

/// The alignment every mimalloc block of at least this size has anyway, as with the C `malloc`
/// (`MI_MAX_ALIGN_SIZE` on 64-bit targets).
const NATURAL_ALIGN: usize = 16;

/// Whether `malloc`-style calls give `align` for a block of `size` bytes. For these (nearly all
/// of Rust's allocations) mimalloc's unaligned entry points are used: its aligned ones take a
/// slow path for every block over 1 KiB (the boxed futures of a call, say), which blocks
/// aligned by their size anyway need not take.
fn natural(align: usize, size: usize) -> bool {
    align <= NATURAL_ALIGN && align <= size
}

// SAFETY: every method forwards to mimalloc's allocator, asking for the layout's alignment
// unless mimalloc gives it anyway (`natural`); `configure` runs before the first allocation and
// does not allocate.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        configure();
        if natural(layout.align(), layout.size()) {
            // SAFETY: mimalloc's malloc; the block is aligned to `layout.align()` (see above).
            unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract is passed on unchanged.
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        configure();
        if natural(layout.align(), layout.size()) {
            // SAFETY: as for `alloc`.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: as for `alloc`.
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from mimalloc.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if natural(layout.align(), new_size) {
            // SAFETY: `ptr` came from this allocator, hence from mimalloc; the new block is
            // aligned as `alloc` explains.
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: `ptr` came from this allocator, hence from mimalloc.
            unsafe { MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}
