//! CPU convolution: im2col + GEMM (the `gemm` crate) for fprop, dgrad and wgrad.
//!
//! Column buffers hold `patch_len x tile` elements, where a tile is a run of output positions
//! small enough to keep the buffer under `COLUMN_BUDGET` elements, so 3D volumes never need a
//! full-size im2col matrix. Outputs of fprop and dgrad are overwritten; wgrad overwrites too
//! (the tape adds gradients up itself).
//!
//! A conv that pads with reflection or replication runs here as that padding, then the conv
//! with no padding of its own (`ConvGeometry::explicit_padding`): the plainest statement of
//! what the CUDA kernels fuse, so the reference they are tested against.

use rayon::prelude::*;

use super::geometry::ConvGeometry;
use crate::ops::Real;
use crate::ops::pad::cpu::{PadGeometry, pad_backward, pad_forward};
use crate::ops::scratch::with_scratch;

/// Largest column buffer, in elements (4 MiB of f32: small enough to stay in cache between
/// im2col and GEMM; 16 and 64 MiB measured no faster on the reference layers).
const COLUMN_BUDGET: usize = 1 << 20;

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
    assert!(
        d.rows == l.rows && d.cols == r.cols && l.cols == r.rows,
        "matmul dims"
    );
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

/// Output tiles `[p0, p1)` of `tile` positions of one sample.
fn tiles(g: &ConvGeometry, tile: usize) -> impl Iterator<Item = (usize, usize)> {
    let p = g.output_volume();
    (0..p).step_by(tile).map(move |p0| (p0, (p0 + tile).min(p)))
}

/// Calls `f(oz, oy, ox_begin, ox_end, col_offset)` for every run of output positions along W
/// inside `[p0, p1)`, where `col_offset` is the run's first column in the tile.
fn for_each_run(
    g: &ConvGeometry,
    p0: usize,
    p1: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize),
) {
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

/// A kernel tap (kz, ky, kx).
type Tap = (usize, usize, usize);

/// Decodes column-matrix row `r` into its channel and tap.
fn tap(g: &ConvGeometry, r: usize) -> (usize, Tap) {
    let [kd, kh, kw] = g.kernel;
    let kx = r % kw;
    let ky = (r / kw) % kh;
    let kz = (r / (kw * kh)) % kd;
    (r / (kw * kh * kd), (kz, ky, kx))
}

/// Input index for output index `o` and tap `k` on an axis, or None in the padding.
fn input_index(o: usize, s: usize, k: usize, pad: usize, size: usize) -> Option<usize> {
    (o * s + k).checked_sub(pad).filter(|&i| i < size)
}

/// The range of `ox` in `[ox0, ox1)` whose input column `ox * stride + kx - pad` lies inside
/// the input row (possibly empty).
fn column_range(g: &ConvGeometry, kx: usize, ox0: usize, ox1: usize) -> (usize, usize) {
    let (s, pad, iw) = (g.stride[2], g.pad[2], g.input[2]);
    // ox * s + kx >= pad  <=>  ox >= ceil((pad - kx) / s)
    let lo = if pad > kx { (pad - kx).div_ceil(s) } else { 0 };
    // ox * s + kx - pad <= iw - 1  <=>  ox <= (iw - 1 + pad - kx) / s
    let hi = if iw + pad > kx {
        (iw - 1 + pad - kx) / s + 1
    } else {
        0
    };
    (lo.max(ox0), hi.min(ox1))
}

/// Where output row (oz, oy) reads with tap `t`: the offset of the input line inside a
/// channel plane, and [`column_range`]. None when no output of the run reads inside the
/// input (the row or the whole run falls in the padding).
fn tap_line(
    g: &ConvGeometry,
    oz: usize,
    oy: usize,
    t: Tap,
    ox0: usize,
    ox1: usize,
) -> Option<(usize, usize, usize)> {
    let [id, ih, iw] = g.input;
    let (kz, ky, kx) = t;
    let iz = input_index(oz, g.stride[0], kz, g.pad[0], id)?;
    let iy = input_index(oy, g.stride[1], ky, g.pad[1], ih)?;
    let (lo, hi) = column_range(g, kx, ox0, ox1);
    (lo < hi).then_some(((iz * ih + iy) * iw, lo, hi))
}

/// The input column read by output column `ox` with tap column `kx` (inside `tap_line`'s range).
fn input_x(g: &ConvGeometry, ox: usize, kx: usize) -> usize {
    ox * g.stride[2] + kx - g.pad[2]
}

/// Fills `col [patch_len, p1 - p0]` with the input taps of output positions `[p0, p1)`.
fn im2col<T: Real>(x: &[T], g: &ConvGeometry, p0: usize, p1: usize, col: &mut [T]) {
    let plane_len = g.input_volume();
    col.par_chunks_mut(p1 - p0)
        .enumerate()
        .for_each(|(r, row)| {
            let (c, t) = tap(g, r);
            let plane = &x[c * plane_len..(c + 1) * plane_len];
            for_each_run(g, p0, p1, |oz, oy, ox0, ox1, at| {
                let out = &mut row[at..at + (ox1 - ox0)];
                let Some((line, lo, hi)) = tap_line(g, oz, oy, t, ox0, ox1) else {
                    out.fill(T::zero());
                    return;
                };
                out[..lo - ox0].fill(T::zero());
                out[hi - ox0..].fill(T::zero());
                let src = &plane[line + input_x(g, lo, t.2)..];
                let dst = &mut out[lo - ox0..hi - ox0];
                if g.stride[2] == 1 {
                    dst.copy_from_slice(&src[..dst.len()]);
                } else {
                    dst.iter_mut()
                        .zip(src.iter().step_by(g.stride[2]))
                        .for_each(|(d, &v)| *d = v);
                }
            });
        });
}

/// Adds `col [patch_len, p1 - p0]` back onto the input positions it was gathered from.
fn col2im_add<T: Real>(col: &[T], g: &ConvGeometry, p0: usize, p1: usize, dx: &mut [T]) {
    let width = p1 - p0;
    let taps = g.kernel.iter().product::<usize>();
    dx.par_chunks_mut(g.input_volume())
        .enumerate()
        .for_each(|(c, plane)| {
            for r in c * taps..(c + 1) * taps {
                let (_, t) = tap(g, r);
                let row = &col[r * width..(r + 1) * width];
                for_each_run(g, p0, p1, |oz, oy, ox0, ox1, at| {
                    if let Some((line, lo, hi)) = tap_line(g, oz, oy, t, ox0, ox1) {
                        let src = &row[at + lo - ox0..at + hi - ox0];
                        let dst = &mut plane[line + input_x(g, lo, t.2)..];
                        match g.stride[2] {
                            1 => dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v),
                            // Whole pairs where they fit, so the loop vectorises; the last element alone.
                            2 => {
                                let pairs = dst.len().min(2 * src.len()) / 2;
                                dst.chunks_exact_mut(2)
                                    .zip(&src[..pairs])
                                    .for_each(|(d, &v)| d[0] += v);
                                if pairs < src.len() {
                                    dst[2 * pairs] += src[pairs];
                                }
                            }
                            s => dst
                                .iter_mut()
                                .step_by(s)
                                .zip(src)
                                .for_each(|(d, &v)| *d += v),
                        }
                    }
                });
            }
        });
}

/// Convolutions with at most this many output channels run as direct loops: their GEMM is a
/// matrix-vector product, so the column buffer's memory traffic would dominate (the
/// 64 -> 1 head of resnet_9blocks ran 4x slower through im2col than its own GEMM).
const DIRECT_MAX_C_OUT: usize = 4;

fn is_direct(g: &ConvGeometry) -> bool {
    g.c_out <= DIRECT_MAX_C_OUT
}

/// Every output row (oz, oy) of one sample.
fn output_rows(g: &ConvGeometry) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..g.output[0]).flat_map(move |z| (0..g.output[1]).map(move |y| (z, y)))
}

/// Offset of output row (n, co, oz, oy).
fn output_row_offset(g: &ConvGeometry, n: usize, co: usize, oz: usize, oy: usize) -> usize {
    let [od, oh, ow] = g.output;
    (((n * g.c_out + co) * od + oz) * oh + oy) * ow
}

/// The taps that read inside the input from one output row, without per-tap division.
struct RowTaps {
    /// Per kernel column kx: the valid `ox` range of a full output row.
    columns: Vec<(usize, usize)>,
}

impl RowTaps {
    fn new(g: &ConvGeometry) -> Self {
        let ow = g.output[2];
        let columns = (0..g.kernel[2])
            .map(|kx| column_range(g, kx, 0, ow))
            .collect();
        RowTaps { columns }
    }

    /// Calls `f(t, line, kx, lo, hi)` for every tap `t = (kz * kh + ky) * kw + kx` whose input
    /// row lies inside the input when read from output row (oz, oy): `line` is the input
    /// line's offset in a channel plane, `[lo, hi)` the valid output columns.
    fn for_each(
        &self,
        g: &ConvGeometry,
        oz: usize,
        oy: usize,
        mut f: impl FnMut(usize, usize, usize, usize, usize),
    ) {
        let [id, ih, iw] = g.input;
        let [kd, kh, kw] = g.kernel;
        for kz in 0..kd {
            let Some(iz) = input_index(oz, g.stride[0], kz, g.pad[0], id) else {
                continue;
            };
            for ky in 0..kh {
                let Some(iy) = input_index(oy, g.stride[1], ky, g.pad[1], ih) else {
                    continue;
                };
                for (kx, &(lo, hi)) in self.columns.iter().enumerate() {
                    if lo < hi {
                        f((kz * kh + ky) * kw + kx, (iz * ih + iy) * iw, kx, lo, hi);
                    }
                }
            }
        }
    }
}

/// `len` elements of `data` taken every `step`-th (`step` 1: a plain slice).
#[derive(Clone, Copy)]
struct Strided<'a, T> {
    data: &'a [T],
    step: usize,
    len: usize,
}

impl<'a, T: Real> Strided<'a, T> {
    fn contiguous(data: &'a [T]) -> Self {
        Strided {
            data,
            step: 1,
            len: data.len(),
        }
    }
    fn get(&self, i: usize) -> T {
        self.data[i * self.step]
    }
}

fn strided<T: Real>(data: &[T], step: usize, len: usize) -> Strided<'_, T> {
    Strided { data, step, len }
}

/// `dst[i * dst_step] += a * src[i]`. The unit-stride case is written as slice zips, which
/// the compiler vectorises.
fn axpy<T: Real>(a: T, src: Strided<'_, T>, dst: &mut [T], dst_step: usize) {
    if src.step == 1 && dst_step == 1 {
        dst[..src.len]
            .iter_mut()
            .zip(&src.data[..src.len])
            .for_each(|(d, &v)| *d += a * v);
    } else {
        dst.iter_mut()
            .step_by(dst_step)
            .take(src.len)
            .enumerate()
            .for_each(|(i, d)| *d += a * src.get(i));
    }
}

/// `sum_i a[i] * b[i]` with eight independent accumulators, so it vectorises (a single
/// floating-point accumulator would serialise every add).
fn dot<T: Real>(a: &[T], b: Strided<'_, T>) -> T {
    const LANES: usize = 8;
    if b.step != 1 {
        return (0..a.len()).map(|i| a[i] * b.get(i)).sum();
    }
    let b = &b.data[..a.len()];
    let mut acc = [T::zero(); LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: T = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| x * y)
        .sum();
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    acc.iter().copied().sum::<T>() + tail
}

/// Direct fprop: each output row accumulates one strided input line per (channel, tap).
fn direct_fprop<T: Real>(x: &[T], w: &[T], g: &ConvGeometry, y: &mut [T]) {
    let [od, oh, ow] = g.output;
    let (plane_len, patch, taps) = (
        g.input_volume(),
        g.patch_len(),
        g.kernel.iter().product::<usize>(),
    );
    let row_taps = RowTaps::new(g);
    y.par_chunks_mut(ow).enumerate().for_each(|(row, out)| {
        let (n, co) = (row / (g.c_out * od * oh), (row / (od * oh)) % g.c_out);
        out.fill(T::zero());
        row_taps.for_each(g, (row / oh) % od, row % oh, |t, line, kx, lo, hi| {
            for c in 0..g.c_in {
                let plane = &x[(n * g.c_in + c) * plane_len..][..plane_len];
                let src = strided(&plane[line + input_x(g, lo, kx)..], g.stride[2], hi - lo);
                axpy(w[co * patch + c * taps + t], src, &mut out[lo..hi], 1);
            }
        });
    });
}

/// Direct dgrad: each input plane gathers from every output row that read it.
fn direct_dgrad<T: Real>(dy: &[T], w: &[T], g: &ConvGeometry, dx: &mut [T]) {
    let ow = g.output[2];
    let (taps, patch) = (g.kernel.iter().product::<usize>(), g.patch_len());
    let row_taps = RowTaps::new(g);
    dx.par_chunks_mut(g.input_volume())
        .enumerate()
        .for_each(|(nc, plane)| {
            let (n, c) = (nc / g.c_in, nc % g.c_in);
            plane.fill(T::zero());
            for co in 0..g.c_out {
                for (oz, oy) in output_rows(g) {
                    let grad = &dy[output_row_offset(g, n, co, oz, oy)..][..ow];
                    row_taps.for_each(g, oz, oy, |t, line, kx, lo, hi| {
                        let dst = &mut plane[line + input_x(g, lo, kx)..];
                        axpy(
                            w[co * patch + c * taps + t],
                            Strided::contiguous(&grad[lo..hi]),
                            dst,
                            g.stride[2],
                        );
                    });
                }
            }
        });
}

/// Direct wgrad: the weights of one (output, input) channel pair are dot products of
/// output-gradient rows with the input lines they saw.
fn direct_wgrad<T: Real>(x: &[T], dy: &[T], g: &ConvGeometry, dw: &mut [T]) {
    let ow = g.output[2];
    let (plane_len, taps) = (g.input_volume(), g.kernel.iter().product::<usize>());
    let row_taps = RowTaps::new(g);
    dw.par_chunks_mut(taps).enumerate().for_each(|(pair, out)| {
        let (co, c) = (pair / g.c_in, pair % g.c_in);
        out.fill(T::zero());
        for n in 0..g.batch {
            let plane = &x[(n * g.c_in + c) * plane_len..][..plane_len];
            for (oz, oy) in output_rows(g) {
                let grad = &dy[output_row_offset(g, n, co, oz, oy)..][..ow];
                row_taps.for_each(g, oz, oy, |t, line, kx, lo, hi| {
                    let src = strided(&plane[line + input_x(g, lo, kx)..], g.stride[2], hi - lo);
                    out[t] += dot(&grad[lo..hi], src);
                });
            }
        }
    });
}

/// Columns `[p0, p1)` of a row-major `[rows, p]` matrix, as a view starting at column p0.
fn column_block(rows: usize, p: usize, p0: usize, p1: usize) -> MatLayout {
    MatLayout {
        rows,
        cols: p1 - p0,
        row_stride: p,
        col_stride: 1,
    }
}

/// `x` padded as `padding` says, in `g`'s padding mode.
fn padded<T: Real>(x: &[T], padding: &PadGeometry, g: &ConvGeometry) -> Vec<T> {
    let mut xp = vec![T::zero(); padding.planes * padding.plane_lens().1];
    pad_forward(x, padding, g.pad_mode, &mut xp);
    xp
}

/// Forward convolution: `y [n, c_out, out...] = conv(x [n, c_in, in...], w [c_out, c_in, k...])`.
pub fn fprop<T: Real>(x: &[T], w: &[T], g: &ConvGeometry, y: &mut [T]) {
    if let Some((padding, unpadded)) = g.explicit_padding() {
        fprop(&padded(x, &padding, g), w, &unpadded, y)
    } else if is_direct(g) {
        direct_fprop(x, w, g, y)
    } else {
        gemm_fprop(x, w, g, y, tile_len(g))
    }
}

/// [`fprop`] through im2col + GEMM, `tile` output positions at a time.
fn gemm_fprop<T: Real>(x: &[T], w: &[T], g: &ConvGeometry, y: &mut [T], tile: usize) {
    let (k, p, in_len) = (g.patch_len(), g.output_volume(), g.c_in * g.input_volume());
    with_scratch(k * tile, |col: &mut [T]| {
        for n in 0..g.batch {
            let xn = &x[n * in_len..(n + 1) * in_len];
            let yn = &mut y[n * g.c_out * p..(n + 1) * g.c_out * p];
            for (p0, p1) in tiles(g, tile) {
                let col = &mut col[..k * (p1 - p0)];
                im2col(xn, g, p0, p1, col);
                let w_mat = MatLayout::row_major(g.c_out, k);
                let col_mat = MatLayout::row_major(k, p1 - p0);
                matmul(
                    &mut yn[p0..],
                    column_block(g.c_out, p, p0, p1),
                    w,
                    w_mat,
                    col,
                    col_mat,
                    false,
                );
            }
        }
    });
}

/// Gradient wrt the input: `dx = conv^T(dy, w)`; overwrites `dx`.
pub fn dgrad<T: Real>(dy: &[T], w: &[T], g: &ConvGeometry, dx: &mut [T]) {
    if let Some((padding, unpadded)) = g.explicit_padding() {
        let mut dxp = vec![T::zero(); unpadded.input_shape().numel()];
        dgrad(dy, w, &unpadded, &mut dxp);
        pad_backward(&dxp, &padding, g.pad_mode, dx)
    } else if is_direct(g) {
        direct_dgrad(dy, w, g, dx)
    } else {
        gemm_dgrad(dy, w, g, dx, tile_len(g))
    }
}

/// [`dgrad`] through im2col + GEMM, `tile` output positions at a time.
fn gemm_dgrad<T: Real>(dy: &[T], w: &[T], g: &ConvGeometry, dx: &mut [T], tile: usize) {
    let (k, p, in_len) = (g.patch_len(), g.output_volume(), g.c_in * g.input_volume());
    dx.fill(T::zero());
    with_scratch(k * tile, |col: &mut [T]| {
        for n in 0..g.batch {
            let dyn_ = &dy[n * g.c_out * p..(n + 1) * g.c_out * p];
            let dxn = &mut dx[n * in_len..(n + 1) * in_len];
            for (p0, p1) in tiles(g, tile) {
                let col = &mut col[..k * (p1 - p0)];
                let wt = MatLayout::row_major(g.c_out, k).t();
                let col_mat = MatLayout::row_major(k, p1 - p0);
                matmul(
                    col,
                    col_mat,
                    w,
                    wt,
                    &dyn_[p0..],
                    column_block(g.c_out, p, p0, p1),
                    false,
                );
                col2im_add(col, g, p0, p1, dxn);
            }
        }
    });
}

/// Gradient wrt the weight: `dw [c_out, c_in, k...] = sum_n dy_n * im2col(x_n)^T`; overwrites `dw`.
pub fn wgrad<T: Real>(x: &[T], dy: &[T], g: &ConvGeometry, dw: &mut [T]) {
    if let Some((padding, unpadded)) = g.explicit_padding() {
        wgrad(&padded(x, &padding, g), dy, &unpadded, dw)
    } else if is_direct(g) {
        direct_wgrad(x, dy, g, dw)
    } else {
        gemm_wgrad(x, dy, g, dw, tile_len(g))
    }
}

/// [`wgrad`] through im2col + GEMM, `tile` output positions at a time.
fn gemm_wgrad<T: Real>(x: &[T], dy: &[T], g: &ConvGeometry, dw: &mut [T], tile: usize) {
    let (k, p, in_len) = (g.patch_len(), g.output_volume(), g.c_in * g.input_volume());
    with_scratch(k * tile, |col: &mut [T]| {
        for n in 0..g.batch {
            let xn = &x[n * in_len..(n + 1) * in_len];
            let dyn_ = &dy[n * g.c_out * p..(n + 1) * g.c_out * p];
            for (p0, p1) in tiles(g, tile) {
                let col = &mut col[..k * (p1 - p0)];
                im2col(xn, g, p0, p1, col);
                let col_t = MatLayout::row_major(k, p1 - p0).t();
                let dw_mat = MatLayout::row_major(g.c_out, k);
                // The first product overwrites dw, the rest accumulate: no separate zeroing pass.
                let accumulate = n > 0 || p0 > 0;
                matmul(
                    dw,
                    dw_mat,
                    &dyn_[p0..],
                    column_block(g.c_out, p, p0, p1),
                    col,
                    col_t,
                    accumulate,
                );
            }
        }
    });
}

/// Adds `bias[c]` to every element of channel `c` of an N, C, spatial tensor.
pub fn add_bias<T: Real>(y: &mut [T], bias: &[T], channels: usize, spatial: usize) {
    y.par_chunks_mut(spatial)
        .enumerate()
        .for_each(|(i, plane)| {
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
