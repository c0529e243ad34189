//! Concatenation along the channel axis (the U-Net skip connections, pix2pix's D input).

use crate::autograd::{Backward, Tape, Var};
use crate::error::{Result, shape_error};
use crate::ops::Real;
#[cfg(feature = "cuda")]
use crate::ops::device_result;
use crate::tensor::{Shape, Tensor};

/// Copies `parts` (each `[n, c_i, spatial]`, given as data and channel count) into `out`
/// `[n, sum c_i, spatial]`.
pub fn concat_channels<T: Real>(parts: &[(&[T], usize)], n: usize, spatial: usize, out: &mut [T]) {
    let total: usize = parts.iter().map(|p| p.1).sum();
    for b in 0..n {
        let mut c0 = 0;
        for &(data, c) in parts {
            let src = &data[b * c * spatial..(b + 1) * c * spatial];
            out[(b * total + c0) * spatial..(b * total + c0 + c) * spatial].copy_from_slice(src);
            c0 += c;
        }
    }
}

/// The adjoint of [`concat_channels`]: the slice of `dy` that belongs to part `index`.
pub fn split_channels<T: Real>(
    dy: &[T],
    channels: &[usize],
    index: usize,
    n: usize,
    spatial: usize,
) -> Vec<T> {
    let total: usize = channels.iter().sum();
    let (c0, c) = (channels[..index].iter().sum::<usize>(), channels[index]);
    (0..n)
        .flat_map(|b| {
            dy[(b * total + c0) * spatial..(b * total + c0 + c) * spatial]
                .iter()
                .copied()
        })
        .collect()
}

/// Concatenates tensors that agree in every dim but the channel dim.
pub fn concat(parts: &[&Tensor]) -> Result<Tensor> {
    let first = parts
        .first()
        .ok_or_else(|| shape_error("concat", "needs at least one tensor"))?;
    let (n, _, spatial) = first.shape().batch_channels_spatial("concat")?;
    let mut channels = Vec::with_capacity(parts.len());
    for p in parts {
        let (d0, d) = (first.dims(), p.dims());
        if d.len() != d0.len() || d[0] != d0[0] || d[2..] != d0[2..] {
            return Err(shape_error(
                "concat",
                format!(
                    "{} and {} differ outside the channel dim",
                    first.shape(),
                    p.shape()
                ),
            ));
        }
        channels.push(d[1]);
    }
    let mut dims = first.dims().to_vec();
    dims[1] = channels.iter().sum();
    let shape = Shape::new(&dims);
    #[cfg(feature = "cuda")]
    if !first.is_cpu() {
        let mut buffers = Vec::with_capacity(parts.len());
        for (p, &c) in parts.iter().zip(&channels) {
            let [_, b] = Tensor::cuda_buffers("concat", [*first, *p])?.expect("first is on a GPU");
            buffers.push((b, c));
        }
        let backend = buffers[0].0.backend();
        return device_result(&shape, backend.launch_concat_channels(&buffers, n, spatial));
    }
    let mut out = vec![0.0; shape.numel()];
    let slices = parts
        .iter()
        .zip(channels)
        .map(|(p, c)| Ok((p.host_operand("concat")?, c)))
        .collect::<Result<Vec<(&[f32], usize)>>>()?;
    concat_channels(&slices, n, spatial, &mut out);
    Tensor::from_vec(shape, out)
}

struct ConcatBackward {
    shapes: Vec<Shape>,
}

impl Backward for ConcatBackward {
    fn backward(&self, gy: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (n, _, spatial) = gy.shape().batch_channels_spatial("concat")?;
        let channels: Vec<usize> = self.shapes.iter().map(|s| s.dims()[1]).collect();
        self.shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                needs[i]
                    .then(|| {
                        #[cfg(feature = "cuda")]
                        if let Some(whole) = gy.cuda_buffer() {
                            let part = whole
                                .backend()
                                .launch_split_channels(whole, &channels, i, n, spatial);
                            return device_result(s, part);
                        }
                        Tensor::from_vec(
                            s.clone(),
                            split_channels(gy.as_slice(), &channels, i, n, spatial),
                        )
                    })
                    .transpose()
            })
            .collect()
    }
}

impl Tape {
    /// Records [`concat()`] along channels.
    pub fn concat(&mut self, parts: &[Var]) -> Result<Var> {
        let values: Vec<&Tensor> = parts.iter().map(|&p| self.value(p)).collect();
        let y = concat(&values)?;
        let shapes = values.iter().map(|v| v.shape().clone()).collect();
        Ok(self.record(y, parts, || ConcatBackward { shapes }))
    }
}
