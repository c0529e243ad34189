//! Per-thread reusable scratch memory for CPU kernels (im2col column buffers).
//!
//! A fresh multi-megabyte `Vec` per call costs a page fault per 4 KiB plus zeroing, which
//! measured as a third of a conv's time; reusing one buffer per thread removes both.

use std::cell::RefCell;

use super::Real;

thread_local! {
    // f64 words, so the buffer is aligned for both f32 and f64 views.
    static SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` elements whose contents are unspecified: `f` must write
/// before it reads. The buffer is kept for the thread's next call (at most the largest size
/// asked for). A nested call gets a fresh allocation instead.
pub fn with_scratch<T: Real, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let words = (len * size_of::<T>()).div_ceil(size_of::<f64>());
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut backing) => {
            if backing.len() < words {
                backing.resize(words, 0.0);
            }
            let all: &mut [T] = bytemuck::cast_slice_mut(&mut backing[..words]);
            f(&mut all[..len])
        }
        Err(_) => f(&mut vec![T::zero(); len]),
    })
}
