//! CPU padding: every output element reads at most one input element, found through a
//! per-axis index map; backward scatters the gradient back through the same map.

use rayon::prelude::*;

use crate::ops::Real;

/// How positions outside the input are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    /// Zeros.
    Zero,
    /// Mirror without repeating the edge (PyTorch's ReflectionPad): `-1 -> 1`.
    Reflect,
    /// Repeat the edge (PyTorch's ReplicationPad): `-1 -> 0`.
    Replicate,
}

/// Padding of the last three axes of planes `[planes, d, h, w]` (2D uses d = 1, no depth pad).
#[derive(Clone, Copy, Debug)]
pub struct PadGeometry {
    pub planes: usize,
    pub input: [usize; 3],
    /// (before, after) per axis.
    pub pads: [[usize; 2]; 3],
}

impl PadGeometry {
    pub fn output(&self) -> [usize; 3] {
        std::array::from_fn(|a| self.input[a] + self.pads[a][0] + self.pads[a][1])
    }
    /// Elements of one input plane and of one output plane.
    pub fn plane_lens(&self) -> (usize, usize) {
        (self.input.iter().product(), self.output().iter().product())
    }
}

/// For each output index on one axis, the input index it reads (None: zero padding).
fn axis_map(size: usize, pad: [usize; 2], mode: PadMode) -> Vec<Option<usize>> {
    (0..size + pad[0] + pad[1])
        .map(|o| {
            let i = o as isize - pad[0] as isize;
            let last = size as isize - 1;
            let i = match mode {
                PadMode::Zero => i,
                PadMode::Replicate => i.clamp(0, last),
                PadMode::Reflect if i < 0 => -i,
                PadMode::Reflect if i > last => 2 * last - i,
                PadMode::Reflect => i,
            };
            (0..size as isize).contains(&i).then_some(i as usize)
        })
        .collect()
}

fn maps(g: &PadGeometry, mode: PadMode) -> [Vec<Option<usize>>; 3] {
    std::array::from_fn(|a| axis_map(g.input[a], g.pads[a], mode))
}

/// Calls `f(output_offset, input_offset)` for every output element of one plane that reads
/// an input element.
fn for_each_source(g: &PadGeometry, m: &[Vec<Option<usize>>; 3], mut f: impl FnMut(usize, usize)) {
    let [_, ih, iw] = g.input;
    let [_, oh, ow] = g.output();
    for (oz, iz) in m[0].iter().enumerate() {
        let Some(iz) = iz else { continue };
        for (oy, iy) in m[1].iter().enumerate() {
            let Some(iy) = iy else { continue };
            for (ox, ix) in m[2].iter().enumerate() {
                if let Some(ix) = ix {
                    f((oz * oh + oy) * ow + ox, (iz * ih + iy) * iw + ix);
                }
            }
        }
    }
}

/// Pads `x` into `y` (overwritten).
pub fn pad_forward<T: Real>(x: &[T], g: &PadGeometry, mode: PadMode, y: &mut [T]) {
    let m = maps(g, mode);
    let (in_len, out_len) = g.plane_lens();
    y.par_chunks_mut(out_len).enumerate().for_each(|(p, out)| {
        let src = &x[p * in_len..(p + 1) * in_len];
        out.fill(T::zero());
        for_each_source(g, &m, |o, i| out[o] = src[i]);
    });
}

/// Gradient of [`pad_forward`]: sums `dy` onto the elements each output read; overwrites `dx`.
pub fn pad_backward<T: Real>(dy: &[T], g: &PadGeometry, mode: PadMode, dx: &mut [T]) {
    let m = maps(g, mode);
    let (in_len, out_len) = g.plane_lens();
    dx.par_chunks_mut(in_len).enumerate().for_each(|(p, out)| {
        let src = &dy[p * out_len..(p + 1) * out_len];
        out.fill(T::zero());
        for_each_source(g, &m, |o, i| out[i] += src[o]);
    });
}
