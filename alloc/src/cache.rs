//! A per-thread cache of freed small and medium blocks, for the threads that
//! serve requests (each worker calls [`cache_this_thread`] when it starts and
//! [`release_this_thread`] when it ends).
//!
//! Why (issue 9): glibc's own per-thread cache keeps 7 blocks per size and
//! only blocks up to 1,032 bytes. A worker serves its connections in
//! batches: one wake-up of the runtime runs dozens of requests, each
//! allocating the same few sizes before any of them frees. The 8th block of a
//! size, and every request's boxed future (about 2.9 KiB), took `malloc`'s
//! slow paths (`_int_malloc`, `_int_free` sorting chunks into bins): about
//! 120 instructions per `malloc` and 110 per `free`, 6 of each per
//! keep-alive request and 16 per `Connection: close` request (callgrind).
//! Here a hit is a pop from a list and a free a push.
//!
//! Bounded: a thread keeps at most [`MAX_PER_CLASS`] blocks and
//! [`CLASS_BUDGET`] bytes of one size class, and [`BUDGET`] bytes in all;
//! beyond that blocks go back to `free`. The per-class cap keeps one class
//! (say, after a burst of large futures) from taking the whole budget.
//!
//! Sizes: every block of [`MAX_CACHED`] bytes or less, on every thread, is
//! allocated at its class's full size, so that any block of a class can
//! serve any request of that class, whichever thread freed it. The classes
//! are glibc's own usable sizes (24, 40, 56, … 1,032 bytes: a chunk of 16
//! × n bytes holds 16 × n − 8), then 64 bytes apart, so rounding a request up
//! to its class costs no memory below 1,032 bytes: `malloc` would have given
//! that chunk anyway.
//!
//! A worker's cached blocks go back to `free` when the worker ends; a thread
//! that opted in and exits without [`release_this_thread`] leaves its cache
//! behind (at most [`BUDGET`]): no destructor runs inside an allocator here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// The largest size kept: the boxed request futures fit, hyper's 8 KiB
/// buffers (one per connection, not per request) do not.
pub const MAX_CACHED: usize = 4096;
/// Small classes: glibc's usable chunk sizes, 24 to 1,032 bytes, 16 apart.
const SMALL_MIN: usize = 24;
const SMALL_STEP: usize = 16;
const SMALL_CLASSES: usize = 64;
const SMALL_MAX: usize = SMALL_MIN + SMALL_STEP * (SMALL_CLASSES - 1);
/// Medium classes: 64 bytes apart above that (a request wastes at most 63
/// bytes of its block), the last one holding [`MAX_CACHED`].
const MEDIUM_STEP: usize = 64;
pub const CLASSES: usize = SMALL_CLASSES + (MAX_CACHED - SMALL_MAX).div_ceil(MEDIUM_STEP);
/// Most blocks one thread keeps of one class.
pub const MAX_PER_CLASS: u16 = 256;
/// Most bytes one thread keeps of one class.
pub const CLASS_BUDGET: usize = 256 * 1024;
/// Most bytes one thread keeps in all.
pub const BUDGET: usize = 512 * 1024;

/// The class of a size in `1..=MAX_CACHED`.
#[inline]
pub fn class_of(size: usize) -> usize {
    debug_assert!((1..=MAX_CACHED).contains(&size));
    if size <= SMALL_MAX {
        size.saturating_sub(SMALL_MIN).div_ceil(SMALL_STEP)
    } else {
        SMALL_CLASSES + (size - SMALL_MAX - 1) / MEDIUM_STEP
    }
}

/// The bytes every block of class `c` has.
#[inline]
pub fn class_size(c: usize) -> usize {
    if c < SMALL_CLASSES {
        SMALL_MIN + c * SMALL_STEP
    } else {
        SMALL_MAX + (c - SMALL_CLASSES + 1) * MEDIUM_STEP
    }
}

struct Cache {
    enabled: bool,
    /// Each class's free blocks, linked through their first word.
    heads: [*mut u8; CLASSES],
    counts: [u16; CLASSES],
    bytes: usize,
}

thread_local! {
    // `const` and no `Drop`: a plain thread-local, no lazy set-up, no destructor.
    static CACHE: UnsafeCell<Cache> = const {
        UnsafeCell::new(Cache { enabled: false, heads: [ptr::null_mut(); CLASSES], counts: [0; CLASSES], bytes: 0 })
    };
}

/// Cache freed blocks on the calling thread from now on. Call
/// [`release_this_thread`] before the thread ends (see the module docs).
pub fn cache_this_thread() {
    // SAFETY: the cell is this thread's; no reference to it outlives the call.
    CACHE.with(|c| unsafe { (*c.get()).enabled = true });
}

/// Stop caching on the calling thread and give every block it keeps back
/// to `free`.
pub fn release_this_thread() {
    loop {
        // One block at a time, `free` outside the cell.
        let taken = CACHE.with(|cell| {
            // SAFETY: this thread's cell, not re-entered.
            let cache = unsafe { &mut *cell.get() };
            cache.enabled = false;
            let c = cache.heads.iter().position(|h| !h.is_null())?;
            let head = cache.heads[c];
            // SAFETY: as in `alloc`.
            cache.heads[c] = unsafe { (head as *mut *mut u8).read() };
            cache.counts[c] -= 1;
            cache.bytes -= class_size(c);
            Some((head, c))
        });
        let Some((p, c)) = taken else { return };
        // SAFETY: a malloc block no longer in the cache.
        unsafe { System.dealloc(p, Layout::from_size_align_unchecked(class_size(c), 16)) };
    }
}

/// A block of class `c` (of its class's size, 16-aligned), from this
/// thread's cache or from `malloc`.
///
/// # Safety
/// `c < CLASSES`.
#[inline]
pub unsafe fn alloc(c: usize, zeroed: bool) -> *mut u8 {
    let hit = CACHE.with(|cell| {
        // SAFETY: this thread's cell, not re-entered (malloc does not call back).
        let cache = unsafe { &mut *cell.get() };
        let head = cache.heads[c];
        if head.is_null() {
            return head;
        }
        // SAFETY: a cached block is at least 24 bytes, its first word the next link.
        cache.heads[c] = unsafe { (head as *mut *mut u8).read() };
        cache.counts[c] -= 1;
        cache.bytes -= class_size(c);
        head
    });
    let size = class_size(c);
    if hit.is_null() {
        // SAFETY: a non-zero size, malloc's alignment.
        let layout = unsafe { Layout::from_size_align_unchecked(size, 16) };
        return unsafe {
            if zeroed {
                System.alloc_zeroed(layout)
            } else {
                System.alloc(layout)
            }
        };
    }
    if zeroed {
        // SAFETY: the block has `size` bytes.
        unsafe { ptr::write_bytes(hit, 0, size) };
    }
    hit
}

/// Give back a block of class `c` got from [`alloc`].
///
/// # Safety
/// `p` came from [`alloc`] with class `c`, on any thread, and is not used again.
#[inline]
pub unsafe fn dealloc(p: *mut u8, c: usize) {
    let kept = CACHE.with(|cell| {
        // SAFETY: as in `alloc`.
        let cache = unsafe { &mut *cell.get() };
        let size = class_size(c);
        if !cache.enabled
            || cache.counts[c] >= MAX_PER_CLASS
            || usize::from(cache.counts[c]) * size + size > CLASS_BUDGET
            || cache.bytes + size > BUDGET
        {
            return false;
        }
        // SAFETY: the block has at least 24 bytes, 16-aligned.
        unsafe { (p as *mut *mut u8).write(cache.heads[c]) };
        cache.heads[c] = p;
        cache.counts[c] += 1;
        cache.bytes += size;
        true
    });
    if !kept {
        // SAFETY: a malloc block; glibc's free does not need the size.
        unsafe { System.dealloc(p, Layout::from_size_align_unchecked(class_size(c), 16)) };
    }
}

/// Blocks of the class of `size` (none above [`MAX_CACHED`]) and bytes in
/// all the calling thread keeps (for tests).
pub fn cached(size: usize) -> (usize, usize) {
    // SAFETY: as in `alloc`.
    CACHE.with(|cell| unsafe {
        let cache = &*cell.get();
        let blocks = (1..=MAX_CACHED)
            .contains(&size)
            .then(|| usize::from(cache.counts[class_of(size)]));
        (blocks.unwrap_or(0), cache.bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a new thread: each test starts with an empty cache of its own.
    fn on_new_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn every_size_gets_the_smallest_class_that_holds_it() {
        for size in 1..=MAX_CACHED {
            let c = class_of(size);
            assert!(c < CLASSES, "size {size}");
            assert!(class_size(c) >= size, "size {size} in class {c} of {}", class_size(c));
            assert!(c == 0 || class_size(c - 1) < size, "size {size} fits class {}", c - 1);
        }
        assert_eq!(class_of(MAX_CACHED), CLASSES - 1);
        for c in 0..CLASSES {
            assert!(
                class_size(c) >= 24 && class_size(c).is_multiple_of(8),
                "class {c}: room and alignment for the link"
            );
        }
        // Below 1,032 bytes the classes are glibc's usable chunk sizes
        // (16 × n − 8): rounding up costs no memory there.
        assert_eq!((0..4).map(class_size).collect::<Vec<_>>(), [24, 40, 56, 72]);
        assert_eq!(class_size(class_of(1032)), 1032);
        assert_eq!(class_size(class_of(1033)), 1096);
    }

    #[test]
    fn a_block_from_a_thread_without_a_cache_serves_a_larger_request_of_its_class() {
        // Allocated small on a thread that never opted in...
        let c = class_of(3080);
        let addr = std::thread::spawn(move || unsafe { alloc(class_of(3017), false) as usize })
            .join()
            .unwrap();
        assert_eq!(class_of(3017), c, "the two sizes share a class");
        on_new_thread(move || unsafe {
            let p = addr as *mut u8;
            cache_this_thread();
            // ...freed on one that did, then handed out for the class's largest size.
            dealloc(p, c);
            let q = alloc(c, false);
            assert_eq!(q, p);
            ptr::write_bytes(q, 0x5A, class_size(c));
            assert!((0..class_size(c)).all(|i| q.add(i).read() == 0x5A));
            dealloc(q, c);
            release_this_thread();
        });
    }

    #[test]
    fn a_freed_block_serves_the_next_request_of_its_class_and_comes_back_zeroed_when_asked() {
        on_new_thread(|| {
            cache_this_thread();
            unsafe {
                let c = class_of(2900);
                let p = alloc(c, false);
                ptr::write_bytes(p, 0xAB, class_size(c));
                dealloc(p, c);
                assert_eq!(cached(2900).0, 1);
                let q = alloc(c, true);
                assert_eq!(q, p, "the cached block is reused");
                assert!((0..class_size(c)).all(|i| q.add(i).read() == 0), "zeroed in full");
                assert_eq!(cached(2900).0, 0);
                dealloc(q, c);
            }
        });
    }

    #[test]
    fn a_thread_that_did_not_opt_in_keeps_nothing() {
        on_new_thread(|| unsafe {
            let c = class_of(100);
            dealloc(alloc(c, false), c);
            assert_eq!(cached(100), (0, 0));
        });
    }

    #[test]
    fn a_class_keeps_at_most_its_caps_and_the_thread_at_most_its_budget() {
        on_new_thread(|| unsafe {
            cache_this_thread();
            let fill = |size: usize, n: usize| {
                let c = class_of(size);
                let blocks: Vec<*mut u8> = (0..n).map(|_| alloc(c, false)).collect();
                for p in blocks {
                    dealloc(p, c);
                }
            };
            fill(64, usize::from(MAX_PER_CLASS) + 10);
            assert_eq!(cached(64).0, usize::from(MAX_PER_CLASS), "the count cap");
            fill(MAX_CACHED, 100);
            let big = class_size(class_of(MAX_CACHED));
            assert_eq!(cached(MAX_CACHED).0, CLASS_BUDGET / big, "the class's byte cap");
            for size in [2000, 2600, 3300] {
                fill(size, 100);
            }
            let (_, bytes) = cached(MAX_CACHED);
            assert!(bytes <= BUDGET, "{bytes} bytes cached, budget {BUDGET}");
            assert!(bytes > BUDGET - big, "the budget is used: {bytes}");
            release_this_thread();
            assert_eq!(cached(64), (0, 0), "all given back");
            fill(64, 3);
            assert_eq!(cached(64), (0, 0), "and no longer caching");
        });
    }
}
