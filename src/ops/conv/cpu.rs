//! CPU convolution: im2col + GEMM (the `gemm` crate) for fprop, dgrad and wgrad.
//!
//! Column buffers hold `patch_len x tile` elements, where a tile is a run of output positions
//! small enough to keep the buffer under `COLUMN_BUDGET` elements, so 3D volumes never need a
//! full-size im2col matrix. Outputs of fprop and dgrad are overwritten; wgrad overwrites too
//! (the tape adds gradients up itself).

use rayon::prelude::*;

use super::geometry::ConvGeometry;
use crate::ops::Real;

/// Largest column buffer, in elements (64 MiB of f32).
const COLUMN_BUDGET: usize = 1 << 24;

/// A strided matrix view for `gemm`: element (r, c) sits at `r * row_stride + c * col_stride`.
#[derive(Clone, Copy)]
pub struct MatLayout {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatLayout {
    pub fn row_major(rows: usize, cols: usize) -> Self {
        MatLayout {
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// The same storage read as its transpose.
    pub fn t(self) -> Self {
        MatLayout {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
    fn max_index(&self) -> usize {
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
    }
}

/// `dst = (accumulate ? dst : 0) + lhs * rhs`, threaded with rayon when the product is large.
pub fn matmul<T: Real>(
    dst: &mut [T],
    d: MatLayout,
    lhs: &[T],
    l: MatLayout,
    rhs: &[T],
    r: MatLayout,
    accumulate: bool,
) {
    assert!(d.rows == l.rows && d.cols == r.cols && l.cols == r.rows, "matmul dims");
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    if l.cols == 0 {
        if !accumulate {
            for i in 0..d.rows {
                for j in 0..d.cols {
                    dst[i * d.row_stride + j * d.col_stride] = T::zero();
                }
            }
        }
        return;
    }
    assert!(d.max_index() < dst.len() && l.max_index() < lhs.len() && r.max_index() < rhs.len());
    let work = d.rows * d.cols * l.cols;
    let parallelism = if work >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every index each layout can produce inside its slice,
    // and `dst` is exclusively borrowed so it cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.as_mut_ptr(),
            d.col_stride as isize,
            d.row_stride as isize,
            accumulate,
            lhs.as_ptr(),
            l.col_stride as isize,
            l.row_stride as isize,
            rhs.as_ptr(),
            r.col_stride as isize,
            r.row_stride as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Output positions handled per column buffer.
fn tile_len(g: &ConvGeometry) -> usize {
    (COLUMN_BUDGET / g.patch_len().max(1)).clamp(1, g.output_volume().max(1))
}

/// Calls `f(oz, oy, ox_begin, ox_end, col_offset)` for every run of output positions along W
/// inside `[p0, p1)`, where `col_offset` is the run's first column in the tile.
fn for_each_run(g: &ConvGeometry, p0: usize, p1: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let [_, oh, ow] = g.output;
    let mut p = p0;
    while p < p1 {
        let ox0 = p % ow;
        let oy = (p / ow) % oh;
        let oz = p / (ow * oh);
        let ox1 = ow.min(ox0 + (p1 - p));
        f(oz, oy, ox0, ox1, p - p0);
        p += ox1 - ox0;
    }
}

/// The range of `ox` in `[ox0, ox1)` whose input column `ox * s + k - pad` lies in `[0, w)`.
fn valid_ox(ox0: usize, ox1: usize, s: usize, k: usize, pad: usize, w: usize) -> (usize, usize) {
    // ox * s + k >= pad  <=>  ox >= ceil((pad - k) / s)
    let lo = if pad > k { (pad - k).div_ceil(s) } else { 0 };
    // ox * s + k - pad <= w - 1  <=>  ox <= (w - 1 + pad - k) / s
    let hi = if w + pad > k { (w - 1 + pad - k) / s + 1 } else { 0 };
    let lo = lo.clamp(ox0, ox1);
    (lo, hi.clamp(lo, ox1))
}

/// Decodes column-matrix row `r` into (channel, kz, ky, kx).
fn tap(g: &ConvGeometry, r: usize) -> (usize, usize, usize, usize) {
    let [kd, kh, kw] = g.kernel;
    let kx = r % kw;
    let ky = (r / kw) % kh;
    let kz = (r / (kw * kh)) % kd;
    (r / (kw * kh * kd), kz, ky, kx)
}

/// Input row index for output row `o` and tap `k` on an axis, or None in the padding.
fn input_index(o: usize, s: usize, k: usize, pad: usize, size: usize) -> Option<usize> {
    (o * s + k).checked_sub(pad).filter(|&i| i < size)
}

/// Fills `col [patch_len, p1 - p0]` with the input taps of output positions `[p0, p1)`.
fn im2col<T: Real>(x: &[T], g: &ConvGeometry, p0: usize, p1: usize, col: &mut [T]) {
    let [id, ih, iw] = g.input;
    let width = p1 - p0;
    col.par_chunks_mut(width).enumerate().for_each(|(r, row)| {
        let (c, kz, ky, kx) = tap(g, r);
        let plane = &x[c * id * ih * iw..(c + 1) * id * ih * iw];
        for_each_run(g, p0, p1, |oz, oy, ox0, ox1, at| {
            let out = &mut row[at..at + (ox1 - ox0)];
            let iz = input_index(oz, g.stride[0], kz, g.pad[0], id);
            let iy = input_index(oy, g.stride[1], ky, g.pad[1], ih);
            let (Some(iz), Some(iy)) = (iz, iy) else {
                out.fill(T::zero());
                return;
            };
            let line = &plane[(iz * ih + iy) * iw..(iz * ih + iy + 1) * iw];
            let (lo, hi) = valid_ox(ox0, ox1, g.stride[2], kx, g.pad[2], iw);
            out[..lo - ox0].fill(T::zero());
            out[hi - ox0..].fill(T::zero());
            for (ox, v) in (lo..hi).zip(out[lo - ox0..hi - ox0].iter_mut()) {
                *v = line[ox * g.stride[2] + kx - g.pad[2]];
            }
        });
    });
}

/// Adds `col [patch_len, p1 - p0]` back onto the input positions it was gathered from.
fn col2im_add<T: Real>(col: &[T], g: &ConvGeometry, p0: usize, p1: usize, dx: &mut [T]) {
    let [id, ih, iw] = g.input;
    let width = p1 - p0;
    let taps = g.kernel.iter().product::<usize>();
    dx.par_chunks_mut(id * ih * iw).enumerate().for_each(|(c, plane)| {
        for t in 0..taps {
            let r = c * taps + t;
            let (_, kz, ky, kx) = tap(g, r);
            let row = &col[r * width..(r + 1) * width];
            for_each_run(g, p0, p1, |oz, oy, ox0, ox1, at| {
                let iz = input_index(oz, g.stride[0], kz, g.pad[0], id);
                let iy = input_index(oy, g.stride[1], ky, g.pad[1], ih);
                let (Some(iz), Some(iy)) = (iz, iy) else {
                    return;
                };
                let line = &mut plane[(iz * ih + iy) * iw..(iz * ih + iy + 1) * iw];
                let (lo, hi) = valid_ox(ox0, ox1, g.stride[2], kx, g.pad[2], iw);
                for ox in lo..hi {
                    line[ox * g.stride[2] + kx - g.pad[2]] += row[at + ox - ox0];
                }
            });
        }
    });
}

/// Output tiles `[p0, p1)` of one sample.
fn tiles(g: &ConvGeometry) -> impl Iterator<Item = (usize, usize)> {
    let p = g.output_volume();
    let t = tile_len(g);
    (0..p).step_by(t).map(move |p0| (p0, (p0 + t).min(p)))
}

/// Forward convolution: `y [n, c_out, out...] = conv(x [n, c_in, in...], w [c_out, c_in, k...])`.
pub fn fprop<T: Real>(x: &[T], w: &[T], g: &ConvGeometry, y: &mut [T]) {
    let (k, p) = (g.patch_len(), g.output_volume());
    let in_len = g.c_in * g.input_volume();
    let mut col = vec![T::zero(); k * tile_len(g)];
    for n in 0..g.batch {
        let xn = &x[n * in_len..(n + 1) * in_len];
        let yn = &mut y[n * g.c_out * p..(n + 1) * g.c_out * p];
        for (p0, p1) in tiles(g) {
            let col = &mut col[..k * (p1 - p0)];
            im2col(xn, g, p0, p1, col);
            let dst = MatLayout {
                rows: g.c_out,
                cols: p1 - p0,
                row_stride: p,
                col_stride: 1,
            };
            let w_mat = MatLayout::row_major(g.c_out, k);
            let col_mat = MatLayout::row_major(k, p1 - p0);
            matmul(&mut yn[p0..], dst, w, w_mat, col, col_mat, false);
        }
    }
}

/// Gradient wrt the input: `dx = conv^T(dy, w)`; overwrites `dx`.
pub fn dgrad<T: Real>(dy: &[T], w: &[T], g: &ConvGeometry, dx: &mut [T]) {
    let (k, p) = (g.patch_len(), g.output_volume());
    let in_len = g.c_in * g.input_volume();
    dx.fill(T::zero());
    let mut col = vec![T::zero(); k * tile_len(g)];
    for n in 0..g.batch {
        let dyn_ = &dy[n * g.c_out * p..(n + 1) * g.c_out * p];
        let dxn = &mut dx[n * in_len..(n + 1) * in_len];
        for (p0, p1) in tiles(g) {
            let col = &mut col[..k * (p1 - p0)];
            let wt = MatLayout::row_major(g.c_out, k).t();
            let dy_mat = MatLayout {
                rows: g.c_out,
                cols: p1 - p0,
                row_stride: p,
                col_stride: 1,
            };
            let col_mat = MatLayout::row_major(k, p1 - p0);
            matmul(col, col_mat, w, wt, &dyn_[p0..], dy_mat, false);
            col2im_add(col, g, p0, p1, dxn);
        }
    }
}

/// Gradient wrt the weight: `dw [c_out, c_in, k...] = sum_n dy_n * im2col(x_n)^T`; overwrites `dw`.
pub fn wgrad<T: Real>(x: &[T], dy: &[T], g: &ConvGeometry, dw: &mut [T]) {
    let (k, p) = (g.patch_len(), g.output_volume());
    let in_len = g.c_in * g.input_volume();
    dw.fill(T::zero());
    let mut col = vec![T::zero(); k * tile_len(g)];
    for n in 0..g.batch {
        let xn = &x[n * in_len..(n + 1) * in_len];
        let dyn_ = &dy[n * g.c_out * p..(n + 1) * g.c_out * p];
        for (p0, p1) in tiles(g) {
            let col = &mut col[..k * (p1 - p0)];
            im2col(xn, g, p0, p1, col);
            let dy_mat = MatLayout {
                rows: g.c_out,
                cols: p1 - p0,
                row_stride: p,
                col_stride: 1,
            };
            let col_t = MatLayout::row_major(k, p1 - p0).t();
            matmul(dw, MatLayout::row_major(g.c_out, k), &dyn_[p0..], dy_mat, col, col_t, true);
        }
    }
}

/// Adds `bias[c]` to every element of channel `c` of an N, C, spatial tensor.
pub fn add_bias<T: Real>(y: &mut [T], bias: &[T], channels: usize, spatial: usize) {
    y.par_chunks_mut(spatial).enumerate().for_each(|(i, plane)| {
        let b = bias[i % channels];
        plane.iter_mut().for_each(|v| *v += b);
    });
}

/// Gradient wrt the bias: the sum of `dy` over batch and space for each channel.
pub fn bias_grad<T: Real>(dy: &[T], channels: usize, spatial: usize) -> Vec<T> {
    let mut db = vec![T::zero(); channels];
    for (i, plane) in dy.chunks(spatial).enumerate() {
        db[i % channels] += plane.iter().copied().sum::<T>();
    }
    db
}
