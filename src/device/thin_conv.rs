//! How the CUDA backend runs thin convs: fprop with one output channel and dgrad with one
//! input channel, the one-channel image at either end of the networks (the ResNet
//! generators' 7 x 7 head and stem, the U-Net's outermost transposed conv). As an implicit
//! GEMM these have one useful row: every element the tiles gather serves a single
//! multiply-add, so they ran at a few percent of peak (the ResNet stem's dgrad at batch 16:
//! 4.3 ms on an H200, cuDNN 0.56). `kernels/conv.cu` instead multiplies the weights by the
//! wide tensor as a dense GEMM, Z = A[tap, channel] * wide[channel, position] (x for fprop,
//! dy for dgrad), and `conv_thin_gather_f32` adds each result's taps out of Z. Z has a row
//! per tap, so it is built one depth tap at a time (in 2D, the only one): a depth tap maps
//! each result plane to one wide plane, so the result planes can go in slabs, and the
//! images in groups, whose Z stays within `Z_BUDGET`, with nothing computed twice; the
//! gather adds each depth tap's share onto the previous ones'.
//! Plain arithmetic with no CUDA in it, so the host emulation runs the same slabs.
//!
//! wgrad to one output channel (the same layers' weight gradient) has one useful row too.
//! At stride 1 it is another conv's wgrad with the roles turned round (`wgrad_dual`): dy as
//! that conv's one-channel input, x as its output gradient with a row per channel, so the
//! tiled wgrad kernels run it with `c_in` rows, and the taps come out reversed.

use crate::device::tiled_conv::{ConvPass, dense_gemm_tile};
use crate::ops::conv::ConvGeometry;
use crate::ops::pad::PadMode;

/// Floats of Z per launch (256 MiB).
pub const Z_BUDGET: usize = 1 << 26;

/// A thin conv's launches: for each group of `images` images, slab of result planes
/// [out_first, out_end) and depth tap, Z = A[in-plane taps, channels] * wide[channels, the
/// planes the slab reaches] (one GEMM per image, batched), then the gather.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThinConv {
    pub pass: ConvPass,
    /// Z's rows: the kernel's taps in a plane (k_h * k_w).
    pub plane_taps: usize,
    /// The wide side's channels (the GEMM's depth) and positions per plane, and the
    /// result's positions per plane.
    pub channels: usize,
    pub plane: usize,
    pub result_plane: usize,
    /// Positions of the wide tensor per channel (its planes times `plane`).
    pub wide_positions: usize,
    /// Result planes per slab, in order, covering every plane once.
    pub slabs: Vec<(usize, usize)>,
    /// Images per launch.
    pub images: usize,
}

/// One GEMM and gather of a thin conv: images [img_first, img_first + images), result planes
/// `slab`, depth tap `td`, wide planes [first, first + planes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThinStep {
    pub img_first: usize,
    pub images: usize,
    pub slab: (usize, usize),
    pub td: usize,
    pub first: usize,
    pub planes: usize,
}

impl ThinConv {
    /// The thin plan for `pass` on `g`, if it is thin (fprop to one channel, dgrad to one
    /// channel, a kernel of several taps) and its GEMMs fill a GPU of `multiprocessors`
    /// (at least a GEMM tile per multiprocessor: a PatchGAN's last layer at 30 x 30 has 16
    /// a image, and at batch 1 stays with the tiled kernels).
    pub fn plan(pass: ConvPass, g: &ConvGeometry, multiprocessors: usize) -> Option<ThinConv> {
        ThinConv::with_budget(pass, g, multiprocessors, Z_BUDGET)
    }

    /// [`Self::plan`] with slabs whose Z stays within `budget` floats (one result plane per
    /// slab at the least; the parity tests force several slabs on small shapes).
    pub fn with_budget(
        pass: ConvPass,
        g: &ConvGeometry,
        multiprocessors: usize,
        budget: usize,
    ) -> Option<ThinConv> {
        if g.pad_mode != PadMode::Zero {
            return None; // the gather pads with zeros; the backend pads explicitly around it
        }
        let (wide, result, channels) = match pass {
            ConvPass::Fprop if g.c_out == 1 => (g.input, g.output, g.c_in),
            ConvPass::Dgrad if g.c_in == 1 => (g.output, g.input, g.c_out),
            _ => return None,
        };
        if g.kernel.iter().product::<usize>() < 2 {
            return None;
        }
        let plane_taps = g.kernel[1] * g.kernel[2];
        let plane = wide[1] * wide[2];
        let mut thin = ThinConv {
            pass,
            plane_taps,
            channels,
            plane,
            result_plane: result[1] * result[2],
            wide_positions: wide.iter().product(),
            slabs: slabs(pass, g, plane_taps * plane, result[0], budget),
            images: 1,
        };
        // As many images a launch as keep Z within the budget (one at the least).
        let widest = thin.z_len(g) / plane_taps;
        thin.images = (budget / (plane_taps * widest).max(1)).clamp(1, g.batch);
        let tile = dense_gemm_tile(plane_taps);
        let blocks = plane_taps.div_ceil(tile) * widest.div_ceil(tile) * thin.images;
        (blocks >= multiprocessors.max(1)).then_some(thin)
    }

    /// The wide planes [first, first + planes) that the result planes `slab` reach with
    /// depth tap `td`.
    pub fn wide_planes(&self, g: &ConvGeometry, slab: (usize, usize), td: usize) -> (usize, usize) {
        let (lo, hi) = reach(self.pass, g, slab, td);
        (lo, hi - lo)
    }

    /// The launches in order: for each group of images, slab and depth tap, one GEMM (if it
    /// reaches any wide plane) and one gather.
    pub fn steps<'a>(&'a self, g: &'a ConvGeometry) -> impl Iterator<Item = ThinStep> + 'a {
        (0..g.batch)
            .step_by(self.images)
            .flat_map(move |img_first| {
                let images = self.images.min(g.batch - img_first);
                self.slabs.iter().flat_map(move |&slab| {
                    (0..g.kernel[0]).map(move |td| {
                        let (first, planes) = self.wide_planes(g, slab, td);
                        ThinStep {
                            img_first,
                            images,
                            slab,
                            td,
                            first,
                            planes,
                        }
                    })
                })
            })
    }

    /// Floats of Z the largest launch needs (`images` images).
    pub fn z_len(&self, g: &ConvGeometry) -> usize {
        let planes = self
            .slabs
            .iter()
            .flat_map(|&slab| (0..g.kernel[0]).map(move |td| self.wide_planes(g, slab, td).1))
            .max()
            .unwrap_or(0);
        self.images * self.plane_taps * planes * self.plane
    }
}

/// The wide planes [lo, hi) that the result planes [a, b) reach with depth tap `td`:
/// fprop's input planes o * s + td - p, dgrad's output planes o with o * s = i + p - td;
/// clipped to the wide tensor.
fn reach(pass: ConvPass, g: &ConvGeometry, (a, b): (usize, usize), td: usize) -> (usize, usize) {
    let (s, p, td) = (g.stride[0] as i64, g.pad[0] as i64, td as i64);
    let (a, b) = (a as i64, b as i64);
    let (lo, hi, size) = match pass {
        ConvPass::Fprop => (a * s + td - p, (b - 1) * s + td - p + 1, g.input[0] as i64),
        // The first o with o * s >= a + p - td, and one past the last with o * s <= b - 1 + p - td.
        _ => (
            ((a + p - td).max(0) + s - 1) / s,
            (b - 1 + p - td).div_euclid(s) + 1,
            g.output[0] as i64,
        ),
    };
    let (lo, hi) = (lo.clamp(0, size), hi.clamp(0, size));
    (lo as usize, hi.max(lo) as usize)
}

/// Slabs over the `result_planes` result planes, each as many as keep every depth tap's Z
/// (`z_per_plane` floats a wide plane of one image) within `budget` floats, at least one.
fn slabs(
    pass: ConvPass,
    g: &ConvGeometry,
    z_per_plane: usize,
    result_planes: usize,
    budget: usize,
) -> Vec<(usize, usize)> {
    let widest = |slab| {
        (0..g.kernel[0])
            .map(|td| {
                let (lo, hi) = reach(pass, g, slab, td);
                hi - lo
            })
            .max()
            .unwrap_or(0)
    };
    let mut slabs = Vec::new();
    let mut a = 0;
    while a < result_planes {
        let mut b = a + 1;
        while b < result_planes && widest((a, b + 1)) * z_per_plane <= budget {
            b += 1;
        }
        slabs.push((a, b));
        a = b;
    }
    slabs
}

/// For a wgrad to one output channel at stride 1 (zero padding p <= k - 1 per axis, more
/// than one input channel): the conv whose wgrad holds `g`'s, taps reversed. Its input is
/// g's dy (one channel), its output gradient g's x (`g.c_in` channels), its padding k - 1 - p:
/// dW[0, ci, t] = sum over i of x[ci, i] dy[i + p - t] = dW'[ci, 0, k - 1 - t], the tap
/// reversed on every axis, which reverses the flat tap index. None for other convs.
pub fn wgrad_dual(g: &ConvGeometry) -> Option<ConvGeometry> {
    let thin = g.c_out == 1
        && g.c_in > 1
        && g.pad_mode == PadMode::Zero
        && g.stride == [1; 3]
        && g.kernel.iter().product::<usize>() > 1
        && (0..3).all(|a| g.pad[a] < g.kernel[a]);
    thin.then(|| ConvGeometry {
        c_in: 1,
        c_out: g.c_in,
        input: g.output,
        pad: std::array::from_fn(|a| g.kernel[a] - 1 - g.pad[a]),
        output: g.input,
        ..*g
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A conv of batch 2 on `input` ([depth, h, w]; depth 1: 2D) with `c` = (in, out)
    /// channels and a cubic (square) kernel.
    fn geometry(
        c: (usize, usize),
        input: [usize; 3],
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> ConvGeometry {
        use crate::Shape;
        use crate::ops::conv::ConvOptions;
        let (x, w) = if input[0] == 1 {
            (
                vec![2, c.0, input[1], input[2]],
                vec![c.1, c.0, kernel, kernel],
            )
        } else {
            (
                vec![2, c.0, input[0], input[1], input[2]],
                vec![c.1, c.0, kernel, kernel, kernel],
            )
        };
        let opts = ConvOptions::new(stride, pad);
        ConvGeometry::conv("test", &Shape::new(&x), &Shape::new(&w), opts).unwrap()
    }

    #[test]
    fn only_one_channel_sides_of_multi_tap_kernels_are_thin() {
        let head = geometry((64, 1), [1, 262, 262], 7, 1, 0);
        assert!(ThinConv::plan(ConvPass::Fprop, &head, 132).is_some());
        assert!(ThinConv::plan(ConvPass::Dgrad, &head, 132).is_none());
        assert!(ThinConv::plan(ConvPass::Wgrad, &head, 132).is_none());
        let stem = geometry((1, 64), [1, 262, 262], 7, 1, 0);
        let plan = ThinConv::plan(ConvPass::Dgrad, &stem, 132).unwrap();
        // 2D: one slab of the single plane; Z = 2 images x 49 taps x 256 x 256 outputs.
        assert_eq!(
            (plan.plane_taps, plan.channels, plan.plane),
            (49, 64, 256 * 256)
        );
        assert_eq!(plan.slabs, [(0, 1)]);
        assert_eq!(plan.wide_planes(&stem, (0, 1), 0), (0, 1));
        assert_eq!(plan.z_len(&stem), 2 * 49 * 256 * 256);
        // A PatchGAN's last layer at 30 x 30: 8 large tiles a image, too few to fill 132
        // multiprocessors with 2 images.
        let last = geometry((512, 1), [1, 31, 31], 4, 1, 1);
        assert!(ThinConv::plan(ConvPass::Fprop, &last, 132).is_none());
        assert!(ThinConv::plan(ConvPass::Fprop, &last, 1).is_some());
    }

    /// The 3D CycleGAN's head and stem at its defaults (batch 2 here): one image's Z for
    /// all 70 planes (246 MB) fits the budget, two do not, so a launch takes one image.
    #[test]
    fn the_3d_head_and_stem_go_an_image_at_a_time() {
        for (pass, c) in [(ConvPass::Fprop, (64, 1)), (ConvPass::Dgrad, (1, 64))] {
            let g = geometry(c, [70, 134, 134], 7, 1, 0);
            let thin = ThinConv::plan(pass, &g, 132).unwrap();
            assert_eq!((thin.images, thin.slabs.len()), (1, 1), "{pass:?}");
            assert!(thin.z_len(&g) <= Z_BUDGET);
            assert_eq!(
                thin.steps(&g).count(),
                2 * 7,
                "two images, seven depth taps"
            );
        }
    }

    /// Every result plane lies in exactly one slab, and for each depth tap the slab's wide
    /// planes hold every plane its results reach with that tap (checked result by result),
    /// within the budget where a slab has more than one result plane: the 3D head and stem
    /// under a budget of 5 planes, and stride 2 with padding under one of 3.
    #[test]
    fn slabs_cover_every_result_plane_and_its_taps() {
        for (pass, g, planes_budget) in [
            (
                ConvPass::Fprop,
                geometry((64, 1), [70, 134, 134], 7, 1, 0),
                5,
            ),
            (
                ConvPass::Dgrad,
                geometry((1, 64), [70, 134, 134], 7, 1, 0),
                5,
            ),
            (ConvPass::Fprop, geometry((8, 1), [33, 40, 40], 4, 2, 1), 3),
            (ConvPass::Dgrad, geometry((1, 8), [33, 40, 40], 4, 2, 1), 3),
        ] {
            let (wide_depth, result_depth, plane) = match pass {
                ConvPass::Fprop => (g.input[0], g.output[0], g.input[1] * g.input[2]),
                _ => (g.output[0], g.input[0], g.output[1] * g.output[2]),
            };
            let z_per_plane = g.kernel[1] * g.kernel[2] * plane;
            let budget = planes_budget * z_per_plane;
            let all = slabs(pass, &g, z_per_plane, result_depth, budget);
            assert!(all.len() > 1, "{pass:?}: the budget splits the layer");
            let thin = ThinConv::with_budget(pass, &g, 1, budget).unwrap();
            assert_eq!(thin.slabs, all);
            assert_eq!(thin.images, 1);
            let mut next = 0;
            for &(out_first, out_end) in &all {
                assert_eq!(out_first, next);
                next = out_end;
                for td in 0..g.kernel[0] {
                    let (lo, hi) = reach(pass, &g, (out_first, out_end), td);
                    assert!(hi <= wide_depth);
                    if out_end - out_first > 1 {
                        assert!((hi - lo) * z_per_plane <= budget);
                    }
                    for r in out_first..out_end {
                        let (s, p) = (g.stride[0] as i64, g.pad[0] as i64);
                        let (r, t) = (r as i64, td as i64);
                        let wide = match pass {
                            ConvPass::Fprop => Some(r * s + t - p),
                            _ => ((r + p - t) % s == 0).then(|| (r + p - t) / s),
                        };
                        if let Some(w) = wide.filter(|&w| w >= 0 && w < wide_depth as i64) {
                            let w = w as usize;
                            assert!(
                                (lo..hi).contains(&w),
                                "{pass:?}: result plane {r} tap {td} reaches plane {w}, outside {lo}..{hi}"
                            );
                        }
                    }
                }
            }
            assert_eq!(next, result_depth);
        }
    }

    #[test]
    fn the_wgrad_dual_reverses_the_roles() {
        use crate::ops::conv::cpu;
        // The ResNet head after its padding, in small; and one with zero padding of its own.
        for g in [
            geometry((3, 1), [1, 9, 8], 3, 1, 0),
            geometry((2, 1), [4, 5, 6], 3, 1, 1),
        ] {
            let dual = wgrad_dual(&g).unwrap();
            assert_eq!((dual.c_in, dual.c_out), (1, g.c_in));
            assert_eq!((dual.input, dual.output), (g.output, g.input));
            // Small integers: every sum is exact, so the two orders of summation agree.
            let x: Vec<f64> = (0..g.input_shape().numel())
                .map(|i| (i % 7) as f64 - 3.0)
                .collect();
            let dy: Vec<f64> = (0..g.output_shape().numel())
                .map(|i| (i % 5) as f64 - 2.0)
                .collect();
            let mut dw = vec![0.0; g.weight_shape().numel()];
            cpu::wgrad(&x, &dy, &g, &mut dw);
            let mut dual_dw = vec![0.0; dw.len()];
            cpu::wgrad(&dy, &x, &dual, &mut dual_dw);
            let kvol = dw.len() / g.c_in;
            for (row, dual_row) in dw.chunks(kvol).zip(dual_dw.chunks(kvol)) {
                let reversed: Vec<f64> = dual_row.iter().rev().copied().collect();
                assert_eq!(row, &reversed[..]);
            }
        }
        assert!(
            wgrad_dual(&geometry((3, 1), [1, 9, 8], 3, 2, 1)).is_none(),
            "stride 2"
        );
        assert!(
            wgrad_dual(&geometry((3, 2), [1, 9, 8], 3, 1, 1)).is_none(),
            "two channels"
        );
        assert!(
            wgrad_dual(&geometry((1, 1), [1, 9, 8], 3, 1, 1)).is_none(),
            "one in, one out"
        );
    }
}
