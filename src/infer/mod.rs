//! Applying trained generators to whole volumes: slice by slice (2D) or by sliding windows (3D).

pub mod slicewise;
pub mod sliding;

use crate::autograd::Tape;
use crate::error::Result;
use crate::nn::layers::Mode;
use crate::nn::nets::Network;
use crate::tensor::Tensor;

/// One forward pass without gradients; `x` must be on the network's device, and so is the
/// output.
pub fn forward_no_grad(net: &mut dyn Network, x: Tensor, mode: &Mode) -> Result<Tensor> {
    let mut tape = Tape::no_grad();
    let x = tape.constant(x);
    let y = net.forward(&mut tape, x, mode)?;
    Ok(tape.value(y).clone())
}

/// One forward pass without gradients on the network's device: the host batch `x` goes
/// there, the output comes back to the host.
pub fn forward_on_host_data(net: &mut dyn Network, x: Tensor, mode: &Mode) -> Result<Tensor> {
    let device = net.arena().device();
    forward_no_grad(net, x.to_device(&device)?, mode)?.to_host()
}
