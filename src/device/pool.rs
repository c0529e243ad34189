//! A caching allocator for device buffers. Allocating device memory synchronises the device
//! and costs far more than a kernel launch, so a buffer given back is kept, by size class,
//! and handed out again to the next request of its class: a training step that repeats the
//! last one's allocations then allocates nothing. Size classes round a request up to a
//! multiple of 128 elements (512 bytes of f32) below 256 Ki elements (1 MiB) and of 512 Ki
//! elements (2 MiB) above, as PyTorch's caching allocator rounds its small and large
//! blocks. When an allocation fails, the cache is released and the allocation tried once
//! more.
//!
//! Generic over the raw allocator so that the bookkeeping is tested without a GPU; the CUDA
//! backend plugs in `cudarc` (`device::cuda`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where buffers come from.
pub trait RawAllocator {
    type Buffer;
    /// A new buffer of exactly `len` elements.
    fn allocate(&self, len: usize) -> Result<Self::Buffer, String>;
}

/// Counters of a pool, in elements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Handed out and not given back.
    pub in_use: usize,
    /// Kept for reuse.
    pub cached: usize,
    /// The most `in_use + cached` has been: the device memory the pool held at its peak.
    pub peak: usize,
    /// The most `in_use` has been: what the engine's live buffers needed at their peak
    /// (PyTorch's `max_memory_allocated`, where `peak` is its `max_memory_reserved`).
    pub peak_in_use: usize,
    /// Requests served from the cache, and by the raw allocator.
    pub hits: usize,
    pub misses: usize,
}

impl PoolStats {
    /// A buffer of `class` elements goes to a user.
    fn hand_out(&mut self, class: usize) {
        self.in_use += class;
        self.peak_in_use = self.peak_in_use.max(self.in_use);
    }
}

struct State<B> {
    free: HashMap<usize, Vec<B>>,
    stats: PoolStats,
}

/// The caching allocator; share it as `Arc<Pool<_>>` (buffers hold one to come back).
pub struct Pool<A: RawAllocator> {
    raw: A,
    state: Mutex<State<A::Buffer>>,
}

/// The size class of a request of `len` elements: what is really allocated.
pub fn size_class(len: usize) -> usize {
    const SMALL: usize = 128;
    const LARGE: usize = 512 * 1024;
    if len <= 256 * 1024 {
        len.max(1).div_ceil(SMALL) * SMALL
    } else {
        len.div_ceil(LARGE) * LARGE
    }
}

impl<A: RawAllocator> Pool<A> {
    pub fn new(raw: A) -> Arc<Pool<A>> {
        Arc::new(Pool {
            raw,
            state: Mutex::new(State {
                free: HashMap::new(),
                stats: PoolStats::default(),
            }),
        })
    }

    /// A buffer of at least `len` elements (its size class), from the cache when one is free.
    /// Its contents are whatever the last user left.
    pub fn take(self: &Arc<Self>, len: usize) -> Result<Pooled<A>, String> {
        let class = size_class(len);
        let mut state = self.lock();
        if let Some(buffer) = state.free.get_mut(&class).and_then(Vec::pop) {
            let stats = &mut state.stats;
            stats.hits += 1;
            stats.cached -= class;
            stats.hand_out(class);
            return Ok(self.pooled(buffer, class));
        }
        // What the engine holds, for the error: the usual cure is a smaller batch or patch.
        let held = |why: String, in_use: usize| {
            format!(
                "{why} (the engine's buffers already hold {:.1} MiB; a smaller batch or patch needs less)",
                in_use as f64 * 4.0 / (1 << 20) as f64
            )
        };
        let buffer = match self.raw.allocate(class) {
            Ok(buffer) => buffer,
            Err(_) if state.stats.cached > 0 => {
                // Out of memory with buffers cached: give them back to the device, try again.
                Self::release(&mut state);
                let in_use = state.stats.in_use;
                self.raw.allocate(class).map_err(|why| held(why, in_use))?
            }
            Err(why) => return Err(held(why, state.stats.in_use)),
        };
        let stats = &mut state.stats;
        stats.misses += 1;
        stats.hand_out(class);
        stats.peak = stats.peak.max(stats.in_use + stats.cached);
        Ok(self.pooled(buffer, class))
    }

    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }

    /// Gives every cached buffer back to the device (PyTorch's `empty_cache`): before another
    /// process needs the memory. Buffers in use stay.
    pub fn release_cached(&self) {
        Self::release(&mut self.lock());
    }

    fn release(state: &mut State<A::Buffer>) {
        state.free.clear();
        state.stats.cached = 0;
    }

    /// Starts new peaks from what the pool holds now (to measure one phase of a run).
    pub fn reset_peak(&self) {
        let stats = &mut self.lock().stats;
        stats.peak = stats.in_use + stats.cached;
        stats.peak_in_use = stats.in_use;
    }

    fn pooled(self: &Arc<Self>, buffer: A::Buffer, class: usize) -> Pooled<A> {
        Pooled {
            buffer: Some(buffer),
            class,
            pool: Arc::clone(self),
        }
    }

    fn give_back(&self, buffer: A::Buffer, class: usize) {
        let mut state = self.lock();
        state.stats.in_use -= class;
        state.stats.cached += class;
        state.free.entry(class).or_default().push(buffer);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<A::Buffer>> {
        // The state stays consistent across a panic elsewhere (every update is complete
        // before the guard drops), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A buffer of a pool's; back to the pool's cache when dropped.
pub struct Pooled<A: RawAllocator> {
    buffer: Option<A::Buffer>,
    class: usize,
    pool: Arc<Pool<A>>,
}

impl<A: RawAllocator> Pooled<A> {
    /// Elements the buffer holds (its size class, at least what was asked for).
    pub fn capacity(&self) -> usize {
        self.class
    }
}

impl<A: RawAllocator> std::ops::Deref for Pooled<A> {
    type Target = A::Buffer;
    fn deref(&self) -> &A::Buffer {
        self.buffer.as_ref().expect("present until dropped")
    }
}

impl<A: RawAllocator> std::ops::DerefMut for Pooled<A> {
    fn deref_mut(&mut self) -> &mut A::Buffer {
        self.buffer.as_mut().expect("present until dropped")
    }
}

impl<A: RawAllocator> Drop for Pooled<A> {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer, self.class);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A fake device: host vectors within a budget of live elements, counting allocations.
    struct Host {
        budget: usize,
        live: Rc<Cell<usize>>,
        calls: Cell<usize>,
    }

    /// A fake device buffer: gives its elements back to the budget when dropped.
    struct HostBuffer {
        data: Vec<f32>,
        live: Rc<Cell<usize>>,
    }

    impl Drop for HostBuffer {
        fn drop(&mut self) {
            self.live.set(self.live.get() - self.data.len());
        }
    }

    impl Host {
        fn new(budget: usize) -> Host {
            Host {
                budget,
                live: Rc::new(Cell::new(0)),
                calls: Cell::new(0),
            }
        }
    }

    impl RawAllocator for Host {
        type Buffer = HostBuffer;
        fn allocate(&self, len: usize) -> Result<HostBuffer, String> {
            self.calls.set(self.calls.get() + 1);
            if self.live.get() + len > self.budget {
                return Err(format!("out of memory: {len} more elements"));
            }
            self.live.set(self.live.get() + len);
            Ok(HostBuffer {
                data: vec![0.0; len],
                live: Rc::clone(&self.live),
            })
        }
    }

    #[test]
    fn size_classes_round_up() {
        assert_eq!(size_class(0), 128);
        assert_eq!(size_class(1), 128);
        assert_eq!(size_class(128), 128);
        assert_eq!(size_class(129), 256);
        assert_eq!(size_class(256 * 1024), 256 * 1024);
        assert_eq!(size_class(256 * 1024 + 1), 512 * 1024);
        assert_eq!(size_class(3 * 512 * 1024 - 5), 3 * 512 * 1024);
    }

    #[test]
    fn a_repeated_step_allocates_nothing_new() {
        let pool = Pool::new(Host::new(1 << 24));
        let step = |pool: &Arc<Pool<Host>>| {
            let a = pool.take(1000).unwrap();
            let b = pool.take(300_000).unwrap();
            assert!(a.data.len() >= 1000 && b.data.len() >= 300_000);
            assert_eq!(a.capacity(), 1024);
            drop(a);
            // Same class as `a`, free again: served from the cache within the step.
            let c = pool.take(1020).unwrap();
            (b, c)
        };
        drop(step(&pool));
        assert_eq!(pool.raw.calls.get(), 2);
        drop(step(&pool));
        assert_eq!(pool.raw.calls.get(), 2, "the second step allocated");
        let stats = pool.stats();
        assert_eq!(stats.in_use, 0);
        assert_eq!(stats.cached, 1024 + 512 * 1024);
        assert_eq!(stats.peak, 1024 + 512 * 1024);
        // a and b, then b and c: never more than one buffer of each class at once.
        assert_eq!(stats.peak_in_use, 1024 + 512 * 1024);
        assert_eq!((stats.hits, stats.misses), (4, 2));
        pool.reset_peak();
        let small = pool.take(100).unwrap();
        let stats = pool.stats();
        assert_eq!(
            (stats.peak_in_use, stats.peak),
            (128, 1024 + 512 * 1024 + 128)
        );
        drop(small);
    }

    #[test]
    fn out_of_memory_releases_the_cache_and_retries() {
        let pool = Pool::new(Host::new(4096));
        drop(pool.take(2000).unwrap());
        assert_eq!(pool.stats().cached, 2048);
        // 2048 cached + 3072 asked > 4096: the cache goes back to the device, then it fits.
        let big = pool.take(3000).unwrap();
        assert_eq!(big.capacity(), 3072);
        assert_eq!(pool.raw.calls.get(), 3, "one failed try, one retry");
        let stats = pool.stats();
        assert_eq!((stats.cached, stats.in_use), (0, 3072));
        assert_eq!(pool.raw.live.get(), 3072);
        // Beyond the device even with nothing cached: the raw allocator's error.
        let err = pool.take(2000).err().expect("over budget");
        assert!(err.contains("out of memory"), "{err}");
        drop(big);
        assert_eq!(pool.stats().in_use, 0);
    }

    #[test]
    fn released_cache_goes_back_to_the_device() {
        let pool = Pool::new(Host::new(1 << 20));
        let kept = pool.take(1000).unwrap();
        drop(pool.take(5000).unwrap());
        assert_eq!(pool.raw.live.get(), 1024 + 5120);
        pool.release_cached();
        assert_eq!(pool.raw.live.get(), 1024, "the buffer in use stays");
        let stats = pool.stats();
        assert_eq!((stats.cached, stats.in_use), (0, 1024));
        drop(kept);
        assert_eq!(pool.stats().cached, 1024);
    }
}
