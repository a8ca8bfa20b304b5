//! The allocator of a policy instance: a bump arena for what a call
//! allocates, the system allocator (dlmalloc) past it.
//!
//! A call allocates a few dozen small blocks (the request's strings, the
//! configuration values it reads, its hints) and frees them all by the time
//! the host has read its answer; a `fresh` instance serves one call. For
//! blocks like these, dlmalloc's bookkeeping costs more than the work they
//! are for (a sixth of a warm call, measured in `BENCHMARKS.md`). Here an
//! allocation is an aligned bump and a free a counter decrement, and when
//! every arena block is free again (after each call, in `reuse` isolation)
//! the arena starts over.
//!
//! A block that outlives its call (a policy's lazily built static, say)
//! keeps the arena from starting over; once it is full, blocks come from
//! the system allocator as they would without it. Memory stays bounded by
//! [`ARENA_BYTES`] plus what the policy itself keeps.
//!
//! Turn it off with `default-features = false` on `herald-sdk` (to bring
//! your own `#[global_allocator]`, for instance).

use core::alloc::Layout;

/// The arena's size: about a hundred times what a call of the example
/// policies allocates.
pub const ARENA_BYTES: usize = 256 * 1024;

/// The arena's bookkeeping over `len` bytes at some base address, as offsets
/// (so the same logic runs over a static in a guest and a buffer in tests).
#[derive(Debug, Default)]
pub struct Bump {
    /// Where the next block may start.
    top: usize,
    /// Blocks handed out and not yet freed.
    live: usize,
}

impl Bump {
    pub const fn new() -> Bump {
        Bump { top: 0, live: 0 }
    }

    /// A block for `layout` in `[base, base + len)`, or `None` when it does
    /// not fit. `layout.size()` is not zero (`GlobalAlloc`'s contract).
    pub fn alloc(&mut self, base: usize, len: usize, layout: Layout) -> Option<usize> {
        let start = (base + self.top).checked_next_multiple_of(layout.align())?;
        let end = start.checked_add(layout.size())?;
        if end > base + len {
            return None;
        }
        self.top = end - base;
        self.live += 1;
        Some(start)
    }

    /// Free the block at `ptr` if it is in the arena (`false`: it is not,
    /// free it elsewhere).
    pub fn dealloc(&mut self, base: usize, len: usize, ptr: usize, layout: Layout) -> bool {
        if !Self::owns(base, len, ptr) {
            return false;
        }
        self.live -= 1;
        if self.live == 0 {
            self.top = 0;
        } else if ptr + layout.size() == base + self.top {
            // The last block: its room can be handed out again at once.
            self.top = ptr - base;
        }
        true
    }

    /// Resize the arena block at `ptr` where it is: it shrinks, or it is the
    /// last block and the arena has room. `false`: move it.
    pub fn resize_in_place(
        &mut self,
        base: usize,
        len: usize,
        ptr: usize,
        layout: Layout,
        new_size: usize,
    ) -> bool {
        if !Self::owns(base, len, ptr) {
            return false;
        }
        let last = ptr + layout.size() == base + self.top;
        if last
            && ptr
                .checked_add(new_size)
                .is_some_and(|end| end <= base + len)
        {
            self.top = ptr + new_size - base;
            return true;
        }
        new_size <= layout.size()
    }

    /// Whether `ptr` is in the arena.
    pub fn owns(base: usize, len: usize, ptr: usize) -> bool {
        (base..base + len).contains(&ptr)
    }
}

// Single-threaded guests only: with threads (`atomics`), the system
// allocator stays.
#[cfg(all(
    target_arch = "wasm32",
    feature = "arena",
    not(target_feature = "atomics")
))]
mod global {
    use super::{ARENA_BYTES, Bump};
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;
    use std::alloc::System;

    #[repr(C, align(16))]
    struct Storage([u8; ARENA_BYTES]);

    pub struct Arena {
        storage: UnsafeCell<Storage>,
        bump: UnsafeCell<Bump>,
    }

    // A wasm32-wasip2 instance runs one thread: nothing is shared.
    unsafe impl Sync for Arena {}

    impl Arena {
        const fn new() -> Arena {
            Arena {
                storage: UnsafeCell::new(Storage([0; ARENA_BYTES])),
                bump: UnsafeCell::new(Bump::new()),
            }
        }

        fn base(&self) -> usize {
            self.storage.get() as usize
        }

        #[allow(clippy::mut_from_ref)] // one thread, never re-entered
        fn bump(&self) -> &mut Bump {
            unsafe { &mut *self.bump.get() }
        }
    }

    unsafe impl GlobalAlloc for Arena {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            match self.bump().alloc(self.base(), ARENA_BYTES, layout) {
                Some(ptr) => ptr as *mut u8,
                None => unsafe { System.alloc(layout) },
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if !self
                .bump()
                .dealloc(self.base(), ARENA_BYTES, ptr as usize, layout)
            {
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let base = self.base();
            if !Bump::owns(base, ARENA_BYTES, ptr as usize) {
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            if self
                .bump()
                .resize_in_place(base, ARENA_BYTES, ptr as usize, layout, new_size)
            {
                return ptr;
            }
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                unsafe {
                    core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            new
        }
    }

    #[global_allocator]
    static ALLOCATOR: Arena = Arena::new();
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: usize = 4096;
    const LEN: usize = 256;

    fn l(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_the_arena_starts_over_when_all_are_free() {
        let mut b = Bump::new();
        let a = b.alloc(BASE, LEN, l(3, 1)).unwrap();
        let c = b.alloc(BASE, LEN, l(8, 8)).unwrap();
        let d = b.alloc(BASE, LEN, l(5, 16)).unwrap();
        assert_eq!(a, BASE);
        assert_eq!(c, BASE + 8, "aligned up past the first block");
        assert_eq!(d, BASE + 16);
        assert!(b.dealloc(BASE, LEN, a, l(3, 1)));
        assert!(b.dealloc(BASE, LEN, d, l(5, 16)));
        // The last block's room is reused while another is live...
        assert_eq!(b.alloc(BASE, LEN, l(1, 1)), Some(BASE + 16));
        assert!(b.dealloc(BASE, LEN, BASE + 16, l(1, 1)));
        assert!(b.dealloc(BASE, LEN, c, l(8, 8)));
        // ...and all of it once nothing is.
        assert_eq!(b.alloc(BASE, LEN, l(LEN, 1)), Some(BASE));
    }

    #[test]
    fn what_does_not_fit_or_is_not_ours_goes_to_the_system_allocator() {
        let mut b = Bump::new();
        let keep = b.alloc(BASE, LEN, l(200, 1)).unwrap();
        assert_eq!(
            b.alloc(BASE, LEN, l(100, 1)),
            None,
            "full: the caller falls back"
        );
        assert!(
            !b.dealloc(BASE, LEN, 99_999, l(100, 1)),
            "not an arena block"
        );
        assert!(!Bump::owns(BASE, LEN, BASE + LEN));
        // A block that stays live keeps the arena from starting over.
        let x = b.alloc(BASE, LEN, l(50, 1)).unwrap();
        assert!(b.dealloc(BASE, LEN, x, l(50, 1)));
        assert_eq!(b.alloc(BASE, LEN, l(100, 1)), None);
        assert!(b.dealloc(BASE, LEN, keep, l(200, 1)));
        assert_eq!(b.alloc(BASE, LEN, l(100, 1)), Some(BASE));
    }

    #[test]
    fn the_last_block_grows_in_place_others_only_shrink() {
        let mut b = Bump::new();
        let first = b.alloc(BASE, LEN, l(16, 1)).unwrap();
        let last = b.alloc(BASE, LEN, l(16, 1)).unwrap();
        assert!(b.resize_in_place(BASE, LEN, last, l(16, 1), 64));
        assert_eq!(b.alloc(BASE, LEN, l(1, 1)), Some(BASE + 16 + 64));
        assert!(
            !b.resize_in_place(BASE, LEN, first, l(16, 1), 32),
            "not last: moved"
        );
        assert!(
            b.resize_in_place(BASE, LEN, first, l(16, 1), 8),
            "shrinks where it is"
        );
        let top = BASE + 16 + 64 + 1;
        assert!(b.dealloc(BASE, LEN, top - 1, l(1, 1)));
        assert!(
            !b.resize_in_place(BASE, LEN, last, l(64, 1), LEN),
            "past the end: moved"
        );
    }
}
