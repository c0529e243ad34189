//! `FlatBuffer`: a flat, mutable f32 buffer on a device, for the arenas that are updated in
//! place (a network's parameters and gradients, Adam's moments). Tensors are immutable
//! values; these buffers are what an optimizer step writes into, one launch per arena.

use std::ops::Range;

use super::Device;
#[cfg(feature = "cuda")]
use super::cuda::DeviceBuffer;
#[cfg(feature = "cuda")]
use crate::error::Error;
use crate::error::Result;
use crate::tensor::{Shape, Tensor};

/// A flat f32 buffer on the CPU or a GPU.
pub enum FlatBuffer {
    Host(Vec<f32>),
    #[cfg(feature = "cuda")]
    Cuda(DeviceBuffer),
}

impl FlatBuffer {
    pub fn len(&self) -> usize {
        match self {
            FlatBuffer::Host(v) => v.len(),
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> Device {
        match self {
            FlatBuffer::Host(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(b) => Device::Cuda(std::sync::Arc::clone(b.backend())),
        }
    }

    /// The elements of a host buffer. Arenas are filled and read element by element only on
    /// the host (initialisation, loading, the CPU optimizer); after `to_device` the engine
    /// goes through the methods below, so a device buffer here is a bug in the engine.
    pub fn host(&self) -> &[f32] {
        match self {
            FlatBuffer::Host(v) => v,
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(_) => panic!("host access to a device arena: copy it with to_vec"),
        }
    }
    pub fn host_mut(&mut self) -> &mut [f32] {
        match self {
            FlatBuffer::Host(v) => v,
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(_) => panic!("host access to a device arena: copy it with to_vec"),
        }
    }

    /// Appends `len` copies of `value` (building an arena, on the host).
    #[allow(clippy::infallible_destructuring_match)] // a single arm without the cuda feature
    pub fn extend(&mut self, len: usize, value: f32) {
        let v = match self {
            FlatBuffer::Host(v) => v,
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(_) => panic!("an arena grows on the host, before to_device"),
        };
        v.resize(v.len() + len, value);
    }

    /// The elements on the host, copied from the device when they are there.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match self {
            FlatBuffer::Host(v) => Ok(v.clone()),
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(b) => b.to_host().map_err(Error::Device),
        }
    }

    /// The same elements on `device` (a copy; this one when it is there already).
    pub fn to_device(self, device: &Device) -> Result<FlatBuffer> {
        if self.device() == *device {
            return Ok(self);
        }
        let host = self.to_vec()?;
        match device {
            Device::Cpu => Ok(FlatBuffer::Host(host)),
            #[cfg(feature = "cuda")]
            Device::Cuda(backend) => Ok(FlatBuffer::Cuda(
                backend.upload_buffer(&host).map_err(Error::Device)?,
            )),
        }
    }

    /// Every element set to zero.
    pub fn zero(&mut self) -> Result<()> {
        match self {
            FlatBuffer::Host(v) => v.fill(0.0),
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(b) => b.set_zero().map_err(Error::Device)?,
        }
        Ok(())
    }

    /// Elements `range` as a tensor of `shape` on this buffer's device (a copy, so that later
    /// updates of the buffer leave it alone).
    pub fn tensor(&self, range: Range<usize>, shape: Shape) -> Result<Tensor> {
        match self {
            FlatBuffer::Host(v) => Tensor::from_vec(shape, v[range].to_vec()),
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(b) => {
                let copy = b.backend().copy_range(b, range).map_err(Error::Device)?;
                Tensor::from_device(shape, copy)
            }
        }
    }

    /// Adds `t`'s elements into those starting at `at`; `t` must be on this buffer's device.
    pub fn add_at(&mut self, at: usize, t: &Tensor) -> Result<()> {
        match self {
            FlatBuffer::Host(v) => {
                let g = t.host_operand("gradient accumulation")?;
                for (acc, g) in v[at..at + g.len()].iter_mut().zip(g) {
                    *acc += g;
                }
            }
            #[cfg(feature = "cuda")]
            FlatBuffer::Cuda(b) => {
                let src = t.gpu_operand("gradient accumulation")?;
                let backend = std::sync::Arc::clone(b.backend());
                backend.launch_add_into(b, at, src).map_err(Error::Device)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_buffers_slice_accumulate_and_zero() {
        let mut b = FlatBuffer::Host(vec![0.0; 2]);
        b.extend(3, 1.5);
        assert_eq!(b.host(), &[0.0, 0.0, 1.5, 1.5, 1.5]);
        let t = b.tensor(1..4, Shape::new(&[3])).unwrap();
        assert_eq!(t.as_slice(), &[0.0, 1.5, 1.5]);
        b.add_at(3, &Tensor::from_vec([2], vec![1.0, -2.0]).unwrap())
            .unwrap();
        assert_eq!(b.host(), &[0.0, 0.0, 1.5, 2.5, -0.5]);
        // A tensor taken earlier is a copy: later updates leave it alone.
        assert_eq!(t.as_slice(), &[0.0, 1.5, 1.5]);
        b.zero().unwrap();
        assert!(b.host().iter().all(|&v| v == 0.0));
        let b = b.to_device(&Device::Cpu).unwrap();
        assert_eq!((b.len(), b.device()), (5, Device::Cpu));
    }
}
