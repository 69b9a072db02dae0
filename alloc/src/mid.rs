//! A per-thread cache of mid-size blocks (1,033 bytes to 32 KiB), for the
//! threads that serve requests.
//!
//! Why (issue 9): glibc's per-thread cache (tcache) ends at 1,032 bytes.
//! Above that every `malloc` and `free` goes through the arena's bins
//! (`_int_malloc`, `_int_free`, the unsorted list, coalescing): about 600
//! and 800 instructions, against about 30 for a tcache hit. A keep-alive
//! request through wharf allocates and frees two such blocks (the boxed
//! request future, 4.5 KiB; the upstream connection's 8 KiB read buffer,
//! which hyper replaces while the response's headers still point into the
//! old one), and a `Connection: close` request adds the connection's task
//! cell. Those sizes repeat exactly, so a handful of recently freed blocks
//! per size class serves nearly every one of them.
//!
//! How:
//! - Every block of a cached size, on any thread, is allocated at the full
//!   size of its class (sizes rounded up to 512 bytes), so any block of a
//!   class can serve any request of that class, whichever thread freed it.
//! - Only threads that asked ([`cache_this_thread`]) keep freed blocks:
//!   wharf's worker threads, which live as long as the server. A thread
//!   that ends without its guard would keep its cached blocks forever, so
//!   the guard's drop hands them back to `malloc`. Other threads go
//!   straight to `malloc` and `free`.
//! - At most [`DEPTH`] blocks per class and [`BUDGET`] bytes per thread are
//!   kept; a free beyond that goes to `free`.
//! - No lock and no atomic: the cache is a plain thread-local, with
//!   constant initialisation and no destructor (nothing to register, which
//!   an allocator cannot do while it allocates).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;

/// Class granularity: sizes are rounded up to a multiple of this.
const GRAIN: usize = 512;
/// The smallest cached size: glibc's tcache serves everything below.
const SMALLEST: usize = 1033;
/// The largest cached size.
const LARGEST: usize = 32 * 1024;
const CLASSES: usize = LARGEST / GRAIN;
/// Most blocks kept per class and thread.
pub const DEPTH: usize = 8;
/// Most bytes kept per thread, all classes together.
pub const BUDGET: usize = 512 * 1024;

/// The class of a block of `size` bytes, if such blocks are cached.
#[inline]
fn class(size: usize) -> Option<usize> {
    if size.wrapping_sub(SMALLEST) <= LARGEST - SMALLEST {
        Some((size - 1) / GRAIN)
    } else {
        None
    }
}

/// The size every block of `class` is allocated with.
#[inline]
fn capacity(class: usize) -> usize {
    (class + 1) * GRAIN
}

#[inline]
fn class_layout(class: usize) -> Layout {
    // SAFETY: at most 32 KiB, a multiple of 16.
    unsafe { Layout::from_size_align_unchecked(capacity(class), 16) }
}

struct Cache {
    on: Cell<bool>,
    bytes: Cell<usize>,
    len: [Cell<u8>; CLASSES],
    slots: [[Cell<*mut u8>; DEPTH]; CLASSES],
}

impl Cache {
    const fn new() -> Cache {
        Cache {
            on: Cell::new(false),
            bytes: Cell::new(0),
            len: [const { Cell::new(0) }; CLASSES],
            slots: [const { [const { Cell::new(ptr::null_mut()) }; DEPTH] }; CLASSES],
        }
    }

    fn pop(&self, class: usize) -> Option<*mut u8> {
        let n = self.len[class].get() as usize;
        if !self.on.get() || n == 0 {
            return None;
        }
        self.len[class].set(n as u8 - 1);
        self.bytes.set(self.bytes.get() - capacity(class));
        Some(self.slots[class][n - 1].get())
    }

    fn push(&self, class: usize, block: *mut u8) -> bool {
        let n = self.len[class].get() as usize;
        let bytes = self.bytes.get() + capacity(class);
        if !self.on.get() || n == DEPTH || bytes > BUDGET {
            return false;
        }
        self.slots[class][n].set(block);
        self.len[class].set(n as u8 + 1);
        self.bytes.set(bytes);
        true
    }

    /// Give every cached block back to `malloc`.
    fn flush(&self) {
        for class in 0..CLASSES {
            while let Some(block) = self.pop(class) {
                // SAFETY: cached blocks were allocated with their class layout.
                unsafe { System.dealloc(block, class_layout(class)) };
            }
        }
    }
}

thread_local! {
    static CACHE: Cache = const { Cache::new() };
}

/// Keep freed mid-size blocks on this thread for its next allocations, until
/// the guard is dropped (which gives them back to `malloc`). For a thread
/// that allocates and frees the same sizes over and over, like a worker
/// serving requests.
pub fn cache_this_thread() -> CacheGuard {
    let was_on = CACHE.with(|c| c.on.replace(true));
    CacheGuard {
        was_on,
        _thread: PhantomData,
    }
}

/// Ends this thread's caching (see [`cache_this_thread`]); not `Send`.
#[must_use = "caching ends when the guard is dropped"]
pub struct CacheGuard {
    was_on: bool,
    _thread: PhantomData<*const ()>,
}

impl Drop for CacheGuard {
    fn drop(&mut self) {
        if !self.was_on {
            CACHE.with(|c| {
                c.flush();
                c.on.set(false);
            });
        }
    }
}

/// # Safety
/// As [`GlobalAlloc::alloc`]; `layout.align() <= 16`.
#[inline]
pub(crate) unsafe fn alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    let Some(class) = class(layout.size()) else {
        return unsafe {
            if zeroed {
                System.alloc_zeroed(layout)
            } else {
                System.alloc(layout)
            }
        };
    };
    if let Some(block) = CACHE.with(|c| c.pop(class)) {
        if zeroed {
            // SAFETY: the block holds `capacity(class) >= size` bytes.
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        return block;
    }
    unsafe {
        if zeroed {
            System.alloc_zeroed(class_layout(class))
        } else {
            System.alloc(class_layout(class))
        }
    }
}

/// # Safety
/// As [`GlobalAlloc::dealloc`]: `block` came from [`alloc`] with `layout`.
#[inline]
pub(crate) unsafe fn dealloc(block: *mut u8, layout: Layout) {
    match class(layout.size()) {
        Some(class) if CACHE.with(|c| c.push(class, block)) => {}
        // SAFETY: `malloc` ignores the size; a cached size was allocated
        // with its class layout.
        Some(class) => unsafe { System.dealloc(block, class_layout(class)) },
        None => unsafe { System.dealloc(block, layout) },
    }
}

/// # Safety
/// As [`GlobalAlloc::realloc`]; `layout.align() <= 16`.
#[inline]
pub(crate) unsafe fn realloc(block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    match (class(layout.size()), class(new_size)) {
        // Neither size is cached: `realloc` may grow in place.
        (None, None) => unsafe { System.realloc(block, layout, new_size) },
        // The block already holds the class's full size.
        (Some(a), Some(b)) if a == b => block,
        // Into, out of or across classes: the new block must be the right
        // kind (class-sized or not), so a new block, a copy, a free.
        _ => unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = alloc(new_layout, false);
            if !new.is_null() {
                ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                dealloc(block, layout);
            }
            new
        },
    }
}

/// Blocks and bytes cached on this thread now (for tests).
#[cfg(test)]
fn cached() -> (usize, usize) {
    CACHE.with(|c| (c.len.iter().map(|n| n.get() as usize).sum(), c.bytes.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    /// Run `f` on a thread of its own, so that caching states don't mix.
    fn on_a_new_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn sizes_above_glibcs_cache_up_to_32k_have_a_class_big_enough() {
        assert_eq!(class(1032), None, "glibc's tcache serves it");
        assert_eq!(class(0), None);
        assert_eq!(class(LARGEST + 1), None);
        assert_eq!(class(usize::MAX), None);
        for size in SMALLEST..=LARGEST {
            let c = class(size).unwrap();
            assert!(capacity(c) >= size && capacity(c) - size < GRAIN, "size {size}");
            assert!(c < CLASSES);
        }
        assert_eq!(capacity(class(1033).unwrap()), 1536);
        assert_eq!(capacity(class(8192).unwrap()), 8192);
    }

    #[test]
    fn a_caching_thread_reuses_the_block_it_freed_for_the_same_class() {
        on_a_new_thread(|| {
            let _guard = cache_this_thread();
            unsafe {
                let a = alloc(layout(4552), false);
                dealloc(a, layout(4552));
                assert_eq!(cached(), (1, 4608));
                let b = alloc(layout(4500), false);
                assert_eq!(a, b, "4,500 and 4,552 bytes share the 4,608-byte class");
                assert_eq!(cached(), (0, 0));
                dealloc(b, layout(4500));
            }
        });
    }

    #[test]
    fn a_thread_that_did_not_ask_keeps_nothing_and_the_guard_gives_back_everything() {
        on_a_new_thread(|| unsafe {
            let a = alloc(layout(8192), false);
            dealloc(a, layout(8192));
            assert_eq!(cached(), (0, 0), "not a caching thread");
            {
                let _guard = cache_this_thread();
                let blocks: Vec<_> = (0..3).map(|_| alloc(layout(8192), false)).collect();
                for b in blocks {
                    dealloc(b, layout(8192));
                }
                assert_eq!(cached(), (3, 3 * 8192));
            }
            assert_eq!(cached(), (0, 0), "the guard's drop freed them");
            let a = alloc(layout(8192), false);
            dealloc(a, layout(8192));
            assert_eq!(cached(), (0, 0), "caching ended with the guard");
        });
    }

    #[test]
    fn a_nested_guard_leaves_the_outer_one_caching() {
        on_a_new_thread(|| unsafe {
            let _outer = cache_this_thread();
            drop(cache_this_thread());
            let a = alloc(layout(2000), false);
            dealloc(a, layout(2000));
            assert_eq!(cached(), (1, 2048));
        });
    }

    #[test]
    fn at_most_depth_blocks_per_class_and_the_budget_per_thread_are_kept() {
        on_a_new_thread(|| unsafe {
            let _guard = cache_this_thread();
            let blocks: Vec<_> = (0..3 * DEPTH).map(|_| alloc(layout(3000), false)).collect();
            for b in blocks {
                dealloc(b, layout(3000));
            }
            assert_eq!(cached(), (DEPTH, DEPTH * 3072));
            let sizes: Vec<usize> = (0..200).map(|i| SMALLEST + i * 157 % (LARGEST - SMALLEST)).collect();
            let blocks: Vec<_> = sizes.iter().map(|&s| (alloc(layout(s), false), s)).collect();
            for (b, s) in blocks {
                dealloc(b, layout(s));
            }
            assert!(cached().1 <= BUDGET, "{:?}", cached());
        });
    }

    #[test]
    fn a_zeroed_block_from_the_cache_is_zeroed() {
        on_a_new_thread(|| unsafe {
            let _guard = cache_this_thread();
            let a = alloc(layout(6000), false);
            ptr::write_bytes(a, 0xAA, 6000);
            dealloc(a, layout(6000));
            let z = alloc(layout(5800), true);
            assert_eq!(z, a, "the cached block");
            assert!((0..5800).all(|i| z.add(i).read() == 0));
            dealloc(z, layout(5800));
        });
    }

    #[test]
    fn realloc_within_into_out_of_and_across_classes_keeps_the_bytes() {
        on_a_new_thread(|| unsafe {
            let _guard = cache_this_thread();
            let sizes = [100, 1000, 1033, 1100, 1600, 5000, 4700, 40_000, 70_000, 20_000, 900, 64];
            let mut size = 24;
            let mut p = alloc(layout(size), false);
            for i in 0..size {
                p.add(i).write(i as u8);
            }
            for &next in &sizes {
                p = realloc(p, layout(size), next);
                assert!(!p.is_null());
                let kept = size.min(next);
                assert!((0..kept).all(|i| p.add(i).read() == i as u8), "{size} -> {next}");
                for i in kept..next {
                    p.add(i).write(i as u8);
                }
                size = next;
            }
            dealloc(p, layout(size));
        });
    }

    #[test]
    fn a_random_mix_of_allocations_on_two_caching_threads_never_overlaps() {
        // Blocks are freed on the other thread too: a block allocated by
        // one thread and cached by another must still be whole.
        let (tx, rx) = std::sync::mpsc::channel::<(usize, usize)>();
        let producer = std::thread::spawn(move || {
            let _guard = cache_this_thread();
            let mut seed = 7u64;
            for round in 0..4000usize {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let size = 1 + (seed >> 33) as usize % 40_000;
                unsafe {
                    let p = alloc(layout(size), round % 3 == 0);
                    ptr::write_bytes(p, (round % 251) as u8, size);
                    tx.send((p as usize, size)).unwrap();
                }
            }
        });
        let _guard = cache_this_thread();
        let mut held: Vec<(usize, usize, u8)> = Vec::new();
        for (round, (p, size)) in rx.iter().enumerate() {
            let fill = (round % 251) as u8;
            held.push((p, size, fill));
            // This thread's own allocations come from what it cached.
            let own = 1 + (round * 7919) % 40_000;
            unsafe {
                let q = alloc(layout(own), false);
                ptr::write_bytes(q, 0x5A, own);
                held.push((q as usize, own, 0x5A));
            }
            while held.len() > 16 {
                let (p, size, fill) = held.swap_remove(round % held.len());
                let p = p as *mut u8;
                unsafe {
                    assert!((0..size).all(|i| p.add(i).read() == fill), "a block was overwritten");
                    dealloc(p, layout(size));
                }
            }
        }
        producer.join().unwrap();
        for (p, size, fill) in held {
            let p = p as *mut u8;
            unsafe {
                assert!((0..size).all(|i| p.add(i).read() == fill));
                dealloc(p, layout(size));
            }
        }
    }
}
