//! CPU element-wise kernels: activations and dropout.

use rayon::prelude::*;

use crate::ops::Real;

/// Point-wise non-linearities of the reference networks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    /// max(x, 0) + slope * min(x, 0); the reference uses slope 0.2.
    LeakyRelu(f64),
    Tanh,
    Sigmoid,
}

/// `y = act(x)`.
pub fn activate<T: Real>(x: &[T], act: Activation, y: &mut [T]) {
    let slope = match act {
        Activation::LeakyRelu(s) => T::lit(s),
        _ => T::zero(),
    };
    y.par_iter_mut().zip(x.par_iter()).for_each(|(o, &v)| {
        *o = match act {
            Activation::Relu | Activation::LeakyRelu(_) => {
                if v > T::zero() {
                    v
                } else {
                    v * slope
                }
            }
            Activation::Tanh => v.tanh(),
            Activation::Sigmoid => T::one() / (T::one() + (-v).exp()),
        }
    });
}

/// `dx = dy * act'(x)`, where the derivative is taken from the input (ReLU family) or from
/// the output `y` (tanh: 1 - y^2, sigmoid: y (1 - y)), as PyTorch does. At 0 the ReLU
/// family uses the left derivative, as PyTorch.
pub fn activate_backward<T: Real>(dy: &[T], x: &[T], y: &[T], act: Activation, dx: &mut [T]) {
    let slope = match act {
        Activation::LeakyRelu(s) => T::lit(s),
        _ => T::zero(),
    };
    dx.par_iter_mut()
        .zip(dy.par_iter().zip(x.par_iter().zip(y.par_iter())))
        .for_each(|(o, (&d, (&xv, &yv)))| {
            *o = match act {
                Activation::Relu | Activation::LeakyRelu(_) => {
                    if xv > T::zero() {
                        d
                    } else {
                        d * slope
                    }
                }
                Activation::Tanh => d * (T::one() - yv * yv),
                Activation::Sigmoid => d * yv * (T::one() - yv),
            }
        });
}

/// A counter-based uniform draw in [0, 1): the `index`-th number of stream `seed`, computed
/// independently of any other (SplitMix64's finaliser over seed and index). The CUDA kernel
/// uses the same function, so both backends drop the same elements.
pub fn uniform_at(seed: u64, index: u64) -> f32 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let z = mix(seed.wrapping_add(mix(index.wrapping_add(0x9e37_79b9_7f4a_7c15))));
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// Dropout in training mode: element `i` is zeroed when `uniform_at(seed, i) < p`, the rest
/// are scaled by `1 / (1 - p)`. Applying it to a gradient gives the backward pass.
pub fn dropout<T: Real>(x: &[T], p: f64, seed: u64, y: &mut [T]) {
    let scale = T::lit(1.0 / (1.0 - p));
    y.par_iter_mut()
        .zip(x.par_iter())
        .enumerate()
        .for_each(|(i, (o, &v))| {
            *o = if (uniform_at(seed, i as u64) as f64) < p {
                T::zero()
            } else {
                v * scale
            };
        });
}
