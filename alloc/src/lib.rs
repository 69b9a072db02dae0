//! The global allocator: the system's `malloc`, with two changes:
//! - over-aligned blocks (alignment above 16) are carved out of a plain
//!   `malloc` block instead of going through `posix_memalign`;
//! - blocks of up to [`MAX_CACHED`] bytes are allocated at their size
//!   class's full size (glibc's own chunk sizes up to 1,032 bytes, so no
//!   memory is lost there), and the worker threads keep freed ones in a
//!   bounded cache of their own (the `cache` module, [`cache_this_thread`]).
//!
//! Why the first (issue 9, `Connection: close`): every new client connection allocates
//! two 128-byte-aligned blocks, tokio's task cell and the I/O driver's
//! `ScheduledIo` (both cache-line padded). glibc serves those with
//! `_int_memalign`, which bypasses its per-thread cache, takes a larger chunk
//! from the arena, splits off and frees the head and the tail, and merges them
//! back on free: about 1,100 instructions each (callgrind), against about 100
//! for a `malloc` from the thread cache, and the churn shows up again in
//! `malloc_consolidate` and `unlink_chunk`. Over-allocating by the alignment
//! and rounding up keeps those blocks on `malloc`'s fast path for 128 bytes
//! more per block (two per connection).
//!
//! The worker cache exists because glibc's own per-thread cache keeps too
//! few blocks, of too few sizes, for a worker's batches of requests (the
//! `cache` module says how few). Larger blocks go to [`System`] unchanged.
//! mimalloc was measured as the whole allocator and not adopted: it cost 9
//! MiB more RSS under load (bench/README.md). The cache is bounded (512 KiB
//! per worker) and its blocks are `malloc`'s.
//!
//! A crate of its own because it is the project's only `unsafe` code: wharf
//! itself stays `#![forbid(unsafe_code)]` and only names [`Allocator`].
#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{GlobalAlloc, Layout, System};

mod cache;
pub use cache::{cache_this_thread, cached, release_this_thread, BUDGET, CLASS_BUDGET, MAX_CACHED, MAX_PER_CLASS};

/// What `malloc` guarantees on x86_64 and aarch64 Linux (glibc and musl).
const MALLOC_ALIGN: usize = 16;

/// The global allocator (see the module docs).
pub struct Allocator;

/// The `malloc` block an over-aligned `layout` is carved from: `align` more
/// bytes, so that a boundary of `align` that leaves room for the original
/// pointer just before it always lies inside.
fn padded(layout: Layout) -> Option<Layout> {
    let size = layout.size().checked_add(layout.align())?;
    Layout::from_size_align(size, MALLOC_ALIGN).ok()
}

/// Where the aligned block starts in a `malloc` block at `base`: the first
/// multiple of `align` at least 16 bytes in (malloc's blocks are 16-aligned,
/// so there is always room for the base pointer, and the block ends within
/// `align` bytes of padding).
fn carve(base: usize, align: usize) -> usize {
    (base + MALLOC_ALIGN + align - 1) & !(align - 1)
}

unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            return unsafe { plain(layout, false) };
        }
        unsafe { alloc_over_aligned(layout, false) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            return unsafe { plain(layout, true) };
        }
        unsafe { alloc_over_aligned(layout, true) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.align() <= MALLOC_ALIGN {
            return unsafe { plain_free(ptr, layout) };
        }
        // SAFETY: `ptr` came from `alloc_over_aligned` with the same layout
        // (GlobalAlloc's contract), which stored the base just before it.
        unsafe {
            let base = (ptr as *mut usize).sub(1).read();
            plain_free(base as *mut u8, padded(layout).unwrap_unchecked());
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            let old = layout.size();
            // A block above the cached sizes, or one growing out of them, is
            // `malloc`'s to resize (every block here is a `malloc` block).
            if new_size > MAX_CACHED {
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            // Within its class the block already has the room.
            if old <= MAX_CACHED && cache::class_of(old.max(1)) == cache::class_of(new_size.max(1)) {
                return ptr;
            }
        }
        // Into another class (or over-aligned, which nothing on the request
        // path grows): a new block, a copy, the old one freed.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// A block of `layout` (alignment 16 or less): from the thread cache's
/// class for sizes up to [`MAX_CACHED`], else `malloc`'s.
///
/// # Safety
/// GlobalAlloc's contract for `layout`.
#[inline]
unsafe fn plain(layout: Layout, zeroed: bool) -> *mut u8 {
    let size = layout.size();
    if size <= MAX_CACHED {
        return unsafe { cache::alloc(cache::class_of(size.max(1)), zeroed) };
    }
    unsafe {
        if zeroed {
            System.alloc_zeroed(layout)
        } else {
            System.alloc(layout)
        }
    }
}

/// Free a block [`plain`] gave for `layout`.
///
/// # Safety
/// `ptr` came from [`plain`] with a layout of the same size.
#[inline]
unsafe fn plain_free(ptr: *mut u8, layout: Layout) {
    let size = layout.size();
    if size <= MAX_CACHED {
        return unsafe { cache::dealloc(ptr, cache::class_of(size.max(1))) };
    }
    unsafe { System.dealloc(ptr, layout) }
}

/// # Safety
/// `layout.align() > MALLOC_ALIGN`; the result is freed by
/// [`Allocator::dealloc`] with the same layout.
unsafe fn alloc_over_aligned(layout: Layout, zeroed: bool) -> *mut u8 {
    let Some(outer) = padded(layout) else {
        return std::ptr::null_mut();
    };
    let base = unsafe { plain(outer, zeroed) };
    if base.is_null() {
        return base;
    }
    let offset = carve(base as usize, layout.align()) - base as usize;
    // SAFETY: 16 <= offset <= align, so the block [offset, offset + size)
    // and the word before it lie inside the `size + align` bytes.
    unsafe {
        let ptr = base.add(offset);
        (ptr as *mut usize).sub(1).write(base as usize);
        ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // This test binary runs on it, so the tokio test below goes through it.
    #[global_allocator]
    static GLOBAL: Allocator = Allocator;

    #[test]
    fn the_carved_block_is_aligned_leaves_room_for_the_base_and_fits_the_padding() {
        for align in [32usize, 64, 128, 4096] {
            for base in (0..2 * align).step_by(MALLOC_ALIGN).map(|b| b + (1 << 20)) {
                let start = carve(base, align);
                assert_eq!(start % align, 0, "base {base:#x} align {align}");
                assert!(start >= base + MALLOC_ALIGN, "room for the base pointer");
                assert!(start - base <= align, "the block ends inside the padding");
            }
        }
    }

    #[test]
    fn over_aligned_blocks_are_aligned_hold_their_bytes_and_survive_realloc() {
        let a = Allocator;
        for align in [32usize, 128, 4096] {
            for size in [1usize, 24, 128, 1000, 5000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0);
                    for i in 0..size {
                        p.add(i).write(i as u8);
                    }
                    let q = a.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0);
                    assert!(
                        (0..size).all(|i| q.add(i).read() == i as u8),
                        "grown block kept its bytes"
                    );
                    let grown = Layout::from_size_align(size * 3, align).unwrap();
                    let r = a.realloc(q, grown, size / 2 + 1);
                    assert_eq!(r as usize % align, 0);
                    assert!(
                        (0..size / 2 + 1).all(|i| r.add(i).read() == i as u8),
                        "shrunk block kept its bytes"
                    );
                    a.dealloc(r, Layout::from_size_align(size / 2 + 1, align).unwrap());

                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| z.add(i).read() == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn blocks_keep_their_bytes_through_realloc_across_classes_and_out_of_the_cached_sizes() {
        std::thread::spawn(|| unsafe {
            cache_this_thread();
            let a = Allocator;
            let mut layout = Layout::from_size_align(20, 8).unwrap();
            let p = a.alloc(layout);
            for i in 0..20 {
                p.add(i).write(i as u8);
            }
            assert_eq!(a.realloc(p, layout, 24), p, "20 and 24 bytes share a class: no copy");
            let mut p = p;
            for new_size in [24usize, 30, 700, 3000, MAX_CACHED + 1, 100_000, 2000, 24] {
                let q = a.realloc(p, layout, new_size);
                assert!(!q.is_null());
                let kept = 20.min(new_size);
                assert!(
                    (0..kept).all(|i| q.add(i).read() == i as u8),
                    "{} -> {new_size}",
                    layout.size()
                );
                layout = Layout::from_size_align(new_size, 8).unwrap();
                p = q;
            }
            a.dealloc(p, layout);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn over_aligned_blocks_carved_from_cached_blocks_stay_aligned_and_whole() {
        std::thread::spawn(|| unsafe {
            cache_this_thread();
            let a = Allocator;
            for round in 0..3 {
                for align in [32usize, 128, 1024] {
                    let layout = Layout::from_size_align(384, align).unwrap();
                    let p = a.alloc(layout);
                    assert_eq!(p as usize % align, 0, "round {round}");
                    std::ptr::write_bytes(p, 0xEE, 384);
                    let z = a.alloc_zeroed(layout);
                    assert!(
                        (0..384).all(|i| z.add(i).read() == 0),
                        "a reused block comes back zeroed"
                    );
                    a.dealloc(p, layout);
                    a.dealloc(z, layout);
                }
            }
            release_this_thread();
            assert_eq!(cached(512), (0, 0), "released");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_impossible_size_is_refused_with_null_not_wrapped() {
        // The largest valid layout at 128: its padding would pass isize::MAX.
        let layout = Layout::from_size_align(isize::MAX as usize - 127, 128).unwrap();
        assert!(unsafe { Allocator.alloc(layout) }.is_null());
    }

    #[test]
    fn tokio_tasks_and_sockets_work_on_it() {
        // The blocks this allocator exists for: task cells and ScheduledIo.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            server.await.unwrap().unwrap();
        });
    }
}
