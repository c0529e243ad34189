//! The integer codes the CUDA kernels take for an activation, a binary op, a loss and a
//! padding mode (`#define`s in `kernels/activation.cuh`, `elementwise.cu`, `loss.cu` and
//! `pad.cuh`), in one place for the CUDA backend and the host emulation of the kernels
//! (`tests/kernel_emulation.rs`). A test reads the kernel sources and checks every value.

use crate::ops::elementwise::Activation;
use crate::ops::loss::LossKind;
use crate::ops::pad::PadMode;

/// `ACT_*` and the LeakyReLU slope; None is ACT_NONE (the identity: no fused activation).
pub fn activation(act: Option<Activation>) -> (i32, f32) {
    match act {
        None => (-1, 0.0),
        Some(Activation::Relu) => (0, 0.0),
        Some(Activation::LeakyRelu(slope)) => (1, slope as f32),
        Some(Activation::Tanh) => (2, 0.0),
        Some(Activation::Sigmoid) => (3, 0.0),
    }
}

/// `BINARY_ADD` or (`multiply`) `BINARY_MUL`.
pub fn binary(multiply: bool) -> i32 {
    i32::from(multiply)
}

/// `LOSS_*`.
pub fn loss(kind: LossKind) -> i32 {
    match kind {
        LossKind::L1 => 0,
        LossKind::Mse => 1,
        LossKind::BceWithLogits => 2,
    }
}

/// `PAD_*`.
pub fn pad(mode: PadMode) -> i32 {
    match mode {
        PadMode::Zero => 0,
        PadMode::Reflect => 1,
        PadMode::Replicate => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `#define name value` in `kernels/<file>`.
    fn define(file: &str, name: &str) -> i32 {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("kernels")
            .join(file);
        let source = std::fs::read_to_string(&path).unwrap();
        source
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("#define") && words.next() == Some(name))
                    .then(|| words.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no #define {name} in {}", path.display()))
    }

    #[test]
    fn codes_match_the_kernel_sources() {
        let acts = [
            (None, "ACT_NONE"),
            (Some(Activation::Relu), "ACT_RELU"),
            (Some(Activation::LeakyRelu(0.2)), "ACT_LEAKY_RELU"),
            (Some(Activation::Tanh), "ACT_TANH"),
            (Some(Activation::Sigmoid), "ACT_SIGMOID"),
        ];
        for (act, name) in acts {
            assert_eq!(activation(act).0, define("activation.cuh", name), "{name}");
        }
        assert_eq!(activation(Some(Activation::LeakyRelu(0.2))).1, 0.2);
        assert_eq!(binary(false), define("elementwise.cu", "BINARY_ADD"));
        assert_eq!(binary(true), define("elementwise.cu", "BINARY_MUL"));
        let losses = [
            (LossKind::L1, "LOSS_L1"),
            (LossKind::Mse, "LOSS_MSE"),
            (LossKind::BceWithLogits, "LOSS_BCE"),
        ];
        for (kind, name) in losses {
            assert_eq!(loss(kind), define("loss.cu", name), "{name}");
        }
        let modes = [
            (PadMode::Zero, "PAD_ZERO"),
            (PadMode::Reflect, "PAD_REFLECT"),
            (PadMode::Replicate, "PAD_REPLICATE"),
        ];
        for (mode, name) in modes {
            assert_eq!(pad(mode), define("pad.cuh", name), "{name}");
        }
    }
}
