//! `Shape` and `Tensor`: dense row-major f32 data (NCHW for 2D, NCDHW for 3D) on a `Device`.
//!
//! Tensors are immutable values; the data sits behind an `Arc`, so the tape can keep what a
//! backward pass needs without copying. A device tensor's elements stay on its GPU: ops
//! run there, and `to_host` is the one way back (checkpoints, metrics, loss values).

use std::fmt;
use std::sync::Arc;

use crate::device::Device;
#[cfg(feature = "cuda")]
use crate::device::cuda::DeviceBuffer;
#[cfg(feature = "cuda")]
use crate::error::Error;
use crate::error::{Result, shape_error};

/// The dimensions of a tensor, outermost first.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Shape(Vec<usize>);

impl Shape {
    pub fn new(dims: &[usize]) -> Self {
        Shape(dims.to_vec())
    }
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// Batch, channels and the product of the spatial dims of an N, C, ... tensor.
    pub fn batch_channels_spatial(&self, op: &'static str) -> Result<(usize, usize, usize)> {
        if self.rank() < 3 {
            return Err(shape_error(
                op,
                format!("expected an N, C, spatial... tensor, got {self}"),
            ));
        }
        Ok((self.0[0], self.0[1], self.0[2..].iter().product()))
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Self {
        Shape::new(dims)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Self {
        Shape(dims)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Self {
        Shape::new(&dims)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Where a tensor's elements live.
#[derive(Clone)]
enum Storage {
    Cpu(Arc<Vec<f32>>),
    #[cfg(feature = "cuda")]
    Cuda(Arc<DeviceBuffer>),
}

/// A dense f32 tensor.
#[derive(Clone)]
pub struct Tensor {
    shape: Shape,
    storage: Storage,
}

impl Tensor {
    /// A CPU tensor owning `data`; fails when the element count does not match `shape`.
    pub fn from_vec(shape: impl Into<Shape>, data: Vec<f32>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(shape_error(
                "Tensor::from_vec",
                format!(
                    "shape {shape} needs {} elements, got {}",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(Tensor {
            shape,
            storage: Storage::Cpu(Arc::new(data)),
        })
    }

    /// A tensor filled with `value`.
    pub fn full(shape: impl Into<Shape>, value: f32) -> Self {
        let shape = shape.into();
        let data = vec![value; shape.numel()];
        Tensor {
            shape,
            storage: Storage::Cpu(Arc::new(data)),
        }
    }

    pub fn zeros(shape: impl Into<Shape>) -> Self {
        Self::full(shape, 0.0)
    }

    /// A one-element tensor of shape `[1]`.
    pub fn scalar(value: f32) -> Self {
        Self::full([1], value)
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    pub fn device(&self) -> Device {
        match &self.storage {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => Device::Cuda(Arc::clone(b.backend())),
        }
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self.storage, Storage::Cpu(_))
    }

    /// The elements of a CPU tensor in row-major order. Ops dispatch on the device before
    /// they touch elements, and code outside the ops calls `to_host` first, so a device
    /// tensor here is a bug in the engine, not a user error.
    pub fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(data) => data,
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => {
                panic!(
                    "as_slice on a device tensor {}: call to_host first",
                    self.shape
                )
            }
        }
    }

    /// The elements of an operand that must be on the CPU, because the op's main operands
    /// are (a bias, a norm's scale, a loss target); an error naming the op when it is on a
    /// GPU.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))] // op names GPU errors
    pub fn host_operand(&self, op: &'static str) -> Result<&[f32]> {
        match &self.storage {
            Storage::Cpu(data) => Ok(data),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => Err(shape_error(
                op,
                format!("operand {} is on a GPU, the others on the CPU", self.shape),
            )),
        }
    }

    /// The elements in row-major order, copied from the device when they are on one.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::Cpu(data) => Ok(data.to_vec()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.to_host().map_err(Error::Device),
        }
    }

    /// This tensor on the CPU: itself when it is there, else a copy.
    pub fn to_host(&self) -> Result<Tensor> {
        match &self.storage {
            Storage::Cpu(_) => Ok(self.clone()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => Tensor::from_vec(self.shape.clone(), self.to_vec()?),
        }
    }

    /// This tensor on `device`: itself when it is there already, else a copy.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device() == *device {
            return Ok(self.clone());
        }
        match device {
            Device::Cpu => self.to_host(),
            #[cfg(feature = "cuda")]
            Device::Cuda(backend) => {
                let host = self.to_host()?;
                let buffer = backend
                    .upload_buffer(host.as_slice())
                    .map_err(Error::Device)?;
                Tensor::from_device(self.shape.clone(), buffer)
            }
        }
    }

    /// A device tensor over `buffer`; fails when the element count does not match `shape`.
    #[cfg(feature = "cuda")]
    pub fn from_device(shape: impl Into<Shape>, buffer: DeviceBuffer) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != buffer.len() {
            return Err(shape_error(
                "Tensor::from_device",
                format!(
                    "shape {shape} needs {} elements, the buffer holds {}",
                    shape.numel(),
                    buffer.len()
                ),
            ));
        }
        Ok(Tensor {
            shape,
            storage: Storage::Cuda(Arc::new(buffer)),
        })
    }

    /// The device buffers of an op's operands when all are on one GPU, None when all are on
    /// the CPU, and an error naming the op when they are on different devices.
    #[cfg(feature = "cuda")]
    pub fn cuda_buffers<'a, const N: usize>(
        op: &'static str,
        operands: [&'a Tensor; N],
    ) -> Result<Option<[&'a DeviceBuffer; N]>> {
        let first = operands[0].device();
        if let Some(other) = operands.iter().find(|t| t.device() != first) {
            return Err(shape_error(
                op,
                format!(
                    "operands on different devices: {} and {}",
                    first.describe(),
                    other.device().describe()
                ),
            ));
        }
        Ok(match first {
            Device::Cpu => None,
            Device::Cuda(_) => Some(operands.map(|t| t.cuda_buffer().expect("on the GPU"))),
        })
    }

    /// The device buffer of an operand that must be on a GPU, because the op's main operands
    /// are (a bias, a norm's scale); an error naming the op when it is on the CPU.
    #[cfg(feature = "cuda")]
    pub fn gpu_operand(&self, op: &'static str) -> Result<&DeviceBuffer> {
        self.cuda_buffer().ok_or_else(|| {
            shape_error(
                op,
                format!("operand {} is on the CPU, the others on a GPU", self.shape),
            )
        })
    }

    /// The device buffer of a GPU tensor, None on the CPU: what an op's CUDA arm launches on.
    #[cfg(feature = "cuda")]
    pub fn cuda_buffer(&self) -> Option<&DeviceBuffer> {
        match &self.storage {
            Storage::Cuda(b) => Some(b),
            Storage::Cpu(_) => None,
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        match self.to_vec()?[..] {
            [v] => Ok(v),
            _ => Err(shape_error(
                "Tensor::item",
                format!("needs a one-element tensor, got {}", self.shape),
            )),
        }
    }

    /// Sample `i` of the batch (dim 0) as a batch of one, on this tensor's device.
    pub fn batch_item(&self, i: usize) -> Result<Tensor> {
        let n = self.dims().first().copied().unwrap_or(0);
        if i >= n {
            return Err(shape_error(
                "Tensor::batch_item",
                format!("sample {i} of a batch of {n}"),
            ));
        }
        let per = self.numel() / n;
        let mut dims = self.dims().to_vec();
        dims[0] = 1;
        match &self.storage {
            Storage::Cpu(data) => Tensor::from_vec(dims, data[i * per..(i + 1) * per].to_vec()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => {
                let part = b.backend().copy_range(b, i * per..(i + 1) * per);
                Tensor::from_device(dims, part.map_err(Error::Device)?)
            }
        }
    }

    /// Tensors that agree in every dim but the first, stacked along it (on their device).
    pub fn cat_batch(parts: &[Tensor]) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| shape_error("Tensor::cat_batch", "needs at least one tensor"))?;
        let mut dims = first.dims().to_vec();
        dims[0] = 0;
        for p in parts {
            if p.dims()[1..] != first.dims()[1..] || p.device() != first.device() {
                return Err(shape_error(
                    "Tensor::cat_batch",
                    format!(
                        "{} on {} does not stack with {} on {}",
                        p.shape,
                        p.device().describe(),
                        first.shape,
                        first.device().describe()
                    ),
                ));
            }
            dims[0] += p.dims()[0];
        }
        match first.device() {
            Device::Cpu => {
                let data = parts.iter().flat_map(|p| p.as_slice().iter().copied());
                Tensor::from_vec(dims, data.collect())
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(backend) => {
                let total = parts.iter().map(Tensor::numel).sum();
                let mut whole = backend.alloc(total).map_err(Error::Device)?;
                let mut at = 0;
                for p in parts {
                    let src = p.gpu_operand("Tensor::cat_batch")?;
                    backend
                        .copy_into(src, &mut whole, at)
                        .map_err(Error::Device)?;
                    at += p.numel();
                }
                Tensor::from_device(dims, whole)
            }
        }
    }

    /// The same data under another shape with the same element count.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(shape_error(
                "Tensor::reshape",
                format!("cannot view {} as {shape}", self.shape),
            ));
        }
        Ok(Tensor {
            shape,
            storage: self.storage.clone(),
        })
    }

    /// Fails unless `other` has exactly this tensor's shape.
    pub fn expect_same_shape(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.shape != other.shape {
            return Err(shape_error(
                op,
                format!("shapes differ: {} vs {}", self.shape, other.shape),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({}, {:?})", self.shape, self.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_items_stack_back_into_the_batch() {
        let x = Tensor::from_vec([3, 2, 2], (0..12).map(|v| v as f32).collect()).unwrap();
        let items: Vec<Tensor> = (0..3).map(|i| x.batch_item(i).unwrap()).collect();
        assert_eq!(items[1].dims(), [1, 2, 2]);
        assert_eq!(items[1].as_slice(), &[4.0, 5.0, 6.0, 7.0]);
        let back = Tensor::cat_batch(&items).unwrap();
        assert_eq!((back.dims(), back.as_slice()), (x.dims(), x.as_slice()));
        assert!(x.batch_item(3).is_err());
        let other = Tensor::zeros([1, 3, 2]);
        assert!(Tensor::cat_batch(&[x.clone(), other]).is_err());
        assert!(Tensor::cat_batch(&[]).is_err());
    }

    #[test]
    fn host_copies_are_the_same_tensor_on_the_cpu() {
        let x = Tensor::from_vec([2], vec![1.0, 2.0]).unwrap();
        assert_eq!(x.to_host().unwrap().as_slice(), x.as_slice());
        assert_eq!(x.to_device(&Device::Cpu).unwrap().as_slice(), x.as_slice());
        assert_eq!(x.host_operand("test").unwrap(), x.as_slice());
        assert_eq!(x.to_vec().unwrap(), vec![1.0, 2.0]);
        assert_eq!(Tensor::scalar(3.0).item().unwrap(), 3.0);
        assert!(x.item().is_err());
    }
}
