//! `Shape` and `Tensor`: dense row-major f32 data (NCHW for 2D, NCDHW for 3D) on a `Device`.
//!
//! Tensors are immutable values; the data sits behind an `Arc`, so the tape can keep what a
//! backward pass needs without copying.

use std::fmt;
use std::sync::Arc;

use crate::device::Device;
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

/// Where a tensor's elements live. The CUDA backend adds its variant.
#[derive(Clone)]
enum Storage {
    Cpu(Arc<Vec<f32>>),
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
        match self.storage {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(data) => data,
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.as_slice().to_vec()
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        match self.as_slice() {
            [v] => Ok(*v),
            _ => Err(shape_error(
                "Tensor::item",
                format!("needs a one-element tensor, got {}", self.shape),
            )),
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
