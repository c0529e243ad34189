//! `kernels/conv.cu`'s ConvParams: a conv geometry as the CUDA conv kernels take it, by
//! value, with the divisors their index arithmetic needs worked out on the host. The CUDA
//! backend launches with it; the host emulation of the kernels (`tests/kernel_emulation.rs`)
//! feeds it to them as bytes.

use bytemuck::{Pod, Zeroable};

use crate::ops::conv::ConvGeometry;

use super::kernel_codes;

/// Division of n in 0 .. 2^31 by a divisor d in 1 .. 2^31 fixed for a launch, as a
/// multiply-high, an add and a shift: q = (umulhi(n, magic) + n) >> shift, with
/// shift = ceil(log2 d) and magic = floor(2^32 (2^shift - d) / d) + 1 (the round-up method
/// of Granlund and Montgomery). An integer division by a run-time value costs the GPU some
/// twenty instructions; this costs three.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Divisor {
    pub d: i32,
    pub magic: u32,
    pub shift: u32,
}

impl Divisor {
    pub fn new(d: i32) -> Divisor {
        assert!(d >= 1, "a divisor must be positive, not {d}");
        let shift = (d as u32).next_power_of_two().trailing_zeros();
        let magic = ((1u64 << 32) * ((1u64 << shift) - d as u64) / d as u64 + 1) as u32;
        Divisor { d, magic, shift }
    }

    /// n / d as the kernels compute it (`Divisor::div` in kernels/conv.cu).
    pub fn div(&self, n: i32) -> i32 {
        let high = ((n as u64 * self.magic as u64) >> 32) as u32;
        ((high as u64 + n as u64) >> self.shift) as i32
    }
}

/// The geometry (19 ints) and the divisors of the kernels' general path. The kernel's
/// `static_assert` and the constant below check that both sides have the same size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ConvParams {
    pub n: i32,
    pub c_in: i32,
    pub c_out: i32,
    pub input: [i32; 3],
    pub kernel: [i32; 3],
    pub stride: [i32; 3],
    pub pad: [i32; 3],
    pub output: [i32; 3],
    pub pad_mode: i32,
    /// c_in, c_out, the kernel's taps (all, per plane, per row: k_w) and k_h, the output's
    /// positions (all, per plane, per row: out_w) and out_h.
    pub divisors: [Divisor; 10],
}
const _: () = assert!(std::mem::size_of::<ConvParams>() == 196);

impl ConvParams {
    /// The kernels index with 32-bit ints (64-bit division is several times slower), so
    /// every tensor of the conv must have fewer than 2^31 elements; and they divide by the
    /// channel counts, so neither may be 0.
    pub fn of(g: &ConvGeometry) -> Result<ConvParams, String> {
        let largest = [g.input_shape(), g.output_shape(), g.weight_shape()]
            .iter()
            .map(|s| s.numel())
            .max()
            .unwrap_or(0);
        if largest > i32::MAX as usize {
            return Err(format!(
                "conv tensors of {largest} elements are beyond the CUDA kernels' 32-bit indexing (2^31 - 1); use a smaller batch or patch"
            ));
        }
        // The geometry has kernels and outputs of at least 1 per axis; channels are the only
        // divisors that can be 0.
        if g.c_in == 0 || g.c_out == 0 {
            return Err(format!(
                "a conv from {} to {} channels: the CUDA kernels need at least one on each side",
                g.c_in, g.c_out
            ));
        }
        let [_, k_h, k_w] = g.kernel;
        let [_, out_h, out_w] = g.output;
        let kvol = g.kernel.iter().product::<usize>();
        let out_sp = g.output.iter().product::<usize>();
        let divisors = [
            g.c_in,
            g.c_out,
            kvol,
            k_h * k_w,
            k_w,
            k_h,
            out_sp,
            out_h * out_w,
            out_w,
            out_h,
        ]
        .map(|d| Divisor::new(d as i32));
        let i = |v: [usize; 3]| v.map(|x| x as i32);
        Ok(ConvParams {
            n: g.batch as i32,
            c_in: g.c_in as i32,
            c_out: g.c_out as i32,
            input: i(g.input),
            kernel: i(g.kernel),
            stride: i(g.stride),
            pad: i(g.pad),
            output: i(g.output),
            pad_mode: kernel_codes::pad(g.pad_mode),
            divisors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{ConvParams, Divisor};
    use crate::ops::conv::{ConvGeometry, ConvOptions};
    use crate::tensor::Shape;

    /// A conv without channels is an error, not a division by zero.
    #[test]
    fn a_conv_without_channels_is_an_error() {
        let (x, w) = (Shape::new(&[1, 0, 8, 8]), Shape::new(&[4, 0, 3, 3]));
        let g = ConvGeometry::conv("test", &x, &w, ConvOptions::new(1, 1)).unwrap();
        let err = ConvParams::of(&g).unwrap_err();
        assert!(err.contains("from 0 to 4 channels"), "{err}");
        let (x, w) = (Shape::new(&[1, 3, 8, 8]), Shape::new(&[5, 3, 3, 3]));
        let g = ConvGeometry::conv("test", &x, &w, ConvOptions::new(1, 1)).unwrap();
        let p = ConvParams::of(&g).unwrap();
        assert_eq!(
            (p.divisors[0].d, p.divisors[1].d, p.divisors[6].d),
            (3, 5, 64)
        );
    }

    /// Exact for every divisor up to 2^12 on dividends near each multiple, and for large
    /// divisors and dividends up to 2^31 - 1 (the kernels' range).
    #[test]
    fn divisors_divide_exactly() {
        let check = |d: i32, n: i32| {
            assert_eq!(Divisor::new(d).div(n), n / d, "{n} / {d}");
        };
        for d in 1..4096 {
            for q in [0, 1, 2, 3, 1000, 100_000, i32::MAX / d - 1, i32::MAX / d] {
                let n = q as i64 * d as i64;
                for m in [n - 1, n, n + 1, n + d as i64 - 1] {
                    if (0..=i32::MAX as i64).contains(&m) {
                        check(d, m as i32);
                    }
                }
            }
        }
        for d in [
            4097,
            65_535,
            65_536,
            1 << 20,
            (1 << 30) + 1,
            i32::MAX - 1,
            i32::MAX,
        ] {
            for n in [0, 1, d - 1, d, d.saturating_add(1), i32::MAX - 1, i32::MAX] {
                check(d, n);
            }
        }
    }
}
