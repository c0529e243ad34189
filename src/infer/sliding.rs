//! Sliding-window inference for volumetric generators: overlapping patches over the whole
//! volume, several per batch, blended by a Gaussian weight (no seams) or a plain average.
//!
//! Window starts along an axis are `i * stride`, the last one clamped flush with the far
//! edge; a volume smaller than the patch is padded with the background at the high end and
//! cropped back. Accumulation is in f64, so an identity generator returns the input exactly.

use crate::data::patches::extract;
use crate::device::Device;
#[cfg(feature = "cuda")]
use crate::device::cuda::WindowBox;
#[cfg(feature = "cuda")]
use crate::error::Error;
use crate::error::Result;
use crate::tensor::Tensor;

/// How overlapping outputs are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blend {
    /// Unweighted mean (the reference's behaviour, which can leave seams).
    Average,
    /// Each patch weighted by a Gaussian centred on it (sigma = patch / 8 per axis).
    Gaussian,
}

/// Sliding-window settings; sizes and strides in voxels, (x, y, z).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlidingWindow {
    pub patch: [usize; 3],
    pub stride: [usize; 3],
    pub blend: Blend,
    /// Patches per generator call.
    pub batch: usize,
}

/// Window starts along one axis of `size` (already at least `patch`). A stride larger than
/// the patch would leave gaps, so it is capped at the patch size.
pub fn starts(size: usize, patch: usize, stride: usize) -> Vec<usize> {
    if size <= patch {
        return vec![0];
    }
    let stride = stride.clamp(1, patch);
    let n = (size - patch).div_ceil(stride) + 1;
    let mut s: Vec<usize> = (0..n).map(|i| (i * stride).min(size - patch)).collect();
    s.dedup();
    s
}

fn weights(patch: [usize; 3], blend: Blend) -> Vec<f64> {
    let axis = |n: usize| -> Vec<f64> {
        match blend {
            Blend::Average => vec![1.0; n],
            Blend::Gaussian => {
                let sigma = (n as f64 / 8.0).max(0.5);
                let c = (n as f64 - 1.0) / 2.0;
                // Floor the weight so patch corners still count where only they cover a voxel.
                (0..n)
                    .map(|i| {
                        (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma))
                            .exp()
                            .max(1e-3)
                    })
                    .collect()
            }
        }
    };
    let (wx, wy, wz) = (axis(patch[0]), axis(patch[1]), axis(patch[2]));
    let mut w = Vec::with_capacity(patch.iter().product());
    for z in &wz {
        for y in &wy {
            for x in &wx {
                w.push(x * y * z);
            }
        }
    }
    w
}

/// The running blend of one volume on the device that runs the generator: the source
/// volume padded to at least a patch (`padded` voxels), and the sums of weighted outputs and
/// of weights. On a GPU the volume stays there: windows are cut and outputs added by kernels
/// (`kernels/window.cu`) with the same f64 arithmetic, in the same order, as on the host.
struct Canvas {
    frame: Frame,
    sums: Sums,
}

/// A canvas's sizes: the padded volume, the patch, and the value outside the volume.
#[derive(Clone, Copy)]
struct Frame {
    padded: [usize; 3],
    patch: [usize; 3],
    background: f32,
}

impl Frame {
    /// The window at `origin`, for the kernels.
    #[cfg(feature = "cuda")]
    fn window(&self, origin: [usize; 3]) -> WindowBox {
        WindowBox {
            volume: self.padded,
            origin,
            patch: self.patch,
        }
    }

    /// A batch `[origins, 1, pz, py, px]`.
    fn batch_dims(&self, origins: &[[usize; 3]]) -> [usize; 5] {
        let p = self.patch;
        [origins.len(), 1, p[2], p[1], p[0]]
    }
}

/// Where a canvas keeps the volume, the f64 sums and the patch weights.
#[cfg_attr(feature = "cuda", allow(clippy::large_enum_variant))] // one per volume
enum Sums {
    Host {
        source: Vec<f32>,
        sum: Vec<f64>,
        weight_sum: Vec<f64>,
        weights: Vec<f64>,
    },
    #[cfg(feature = "cuda")]
    Cuda {
        source: crate::device::cuda::DeviceBuffer,
        sum: crate::device::cuda::DeviceBuffer,
        weight_sum: crate::device::cuda::DeviceBuffer,
        weights: crate::device::cuda::DeviceBuffer,
    },
}

impl Canvas {
    fn new(device: &Device, source: Vec<f32>, frame: Frame, weights: Vec<f64>) -> Result<Canvas> {
        let n = source.len();
        let sums = match device {
            Device::Cpu => Sums::Host {
                source,
                sum: vec![0.0; n],
                weight_sum: vec![0.0; n],
                weights,
            },
            #[cfg(feature = "cuda")]
            Device::Cuda(backend) => {
                // f64 arrays as twice as many f32s (see kernels/window.cu).
                let zeros = || -> Result<_> {
                    let mut b = backend.alloc(2 * n).map_err(Error::Device)?;
                    b.set_zero().map_err(Error::Device)?;
                    Ok(b)
                };
                Sums::Cuda {
                    source: backend.upload_buffer(&source).map_err(Error::Device)?,
                    sum: zeros()?,
                    weight_sum: zeros()?,
                    weights: backend
                        .upload_buffer(bytemuck::cast_slice(&weights))
                        .map_err(Error::Device)?,
                }
            }
        };
        Ok(Canvas { frame, sums })
    }

    /// The windows at `origins` as a batch on the canvas's device.
    fn cut(&self, origins: &[[usize; 3]]) -> Result<Tensor> {
        let f = self.frame;
        let dims = f.batch_dims(origins);
        match &self.sums {
            Sums::Host { source, .. } => {
                let data = origins
                    .iter()
                    .flat_map(|&o| extract(source, f.padded, o, f.patch, f.background))
                    .collect();
                Tensor::from_vec(dims, data)
            }
            #[cfg(feature = "cuda")]
            Sums::Cuda { source, .. } => {
                let backend = source.backend();
                let per: usize = f.patch.iter().product();
                let mut batch = backend.alloc(origins.len() * per).map_err(Error::Device)?;
                for (slot, &o) in origins.iter().enumerate() {
                    backend
                        .launch_window_cut(source, &f.window(o), &mut batch, slot)
                        .map_err(Error::Device)?;
                }
                Tensor::from_device(dims, batch)
            }
        }
    }

    /// Adds the generator's `outputs` for the windows at `origins`, one window after the
    /// other.
    fn add(&mut self, origins: &[[usize; 3]], outputs: &Tensor) -> Result<()> {
        let f = self.frame;
        let want = f.batch_dims(origins);
        if outputs.dims() != want {
            return Err(crate::error::shape_error(
                "sliding window",
                format!(
                    "the generator gave {} for a batch of {want:?} patches",
                    outputs.shape()
                ),
            ));
        }
        let ([px, py, pz], padded) = (f.patch, f.padded);
        match &mut self.sums {
            Sums::Host {
                sum,
                weight_sum,
                weights,
                ..
            } => {
                let outputs = outputs.to_host()?;
                for (o, out) in origins.iter().zip(outputs.as_slice().chunks(px * py * pz)) {
                    for z in 0..pz {
                        for y in 0..py {
                            let dst = o[0] + padded[0] * (o[1] + y + padded[1] * (o[2] + z));
                            let src = px * (y + py * z);
                            for x in 0..px {
                                sum[dst + x] += weights[src + x] * out[src + x] as f64;
                                weight_sum[dst + x] += weights[src + x];
                            }
                        }
                    }
                }
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Sums::Cuda {
                sum,
                weight_sum,
                weights,
                ..
            } => {
                let outputs = outputs.gpu_operand("sliding window")?;
                let backend = outputs.backend();
                for (slot, &o) in origins.iter().enumerate() {
                    backend
                        .launch_window_add(outputs, slot, weights, &f.window(o), (sum, weight_sum))
                        .map_err(Error::Device)?;
                }
                Ok(())
            }
        }
    }

    /// The blended volume of `dims` (the padded one's low corner), on the host.
    fn blend(self, dims: [usize; 3]) -> Result<Vec<f32>> {
        let f = self.frame;
        match self.sums {
            Sums::Host {
                sum, weight_sum, ..
            } => {
                let blended: Vec<f32> = sum
                    .iter()
                    .zip(&weight_sum)
                    .map(|(a, w)| (a / w) as f32)
                    .collect();
                Ok(if f.padded == dims {
                    blended
                } else {
                    extract(&blended, f.padded, [0; 3], dims, f.background)
                })
            }
            #[cfg(feature = "cuda")]
            Sums::Cuda {
                sum, weight_sum, ..
            } => {
                let whole = WindowBox {
                    volume: f.padded,
                    origin: [0; 3],
                    patch: dims,
                };
                sum.backend()
                    .launch_window_blend(&sum, &weight_sum, &whole)
                    .and_then(|out| out.to_host())
                    .map_err(Error::Device)
            }
        }
    }
}

/// Runs `generator` (a batch `[patches, 1, pz, py, px]` in, the same shape out, on
/// `device`) over the volume `data` of `dims`; returns the blended output volume. On a GPU
/// the volume goes there once and only the result comes back. `progress` hears (windows
/// done, windows in all) after each batch: a default-sized volume takes minutes on a CPU.
pub fn run(
    data: &[f32],
    dims: [usize; 3],
    background: f32,
    opts: &SlidingWindow,
    device: &Device,
    mut generator: impl FnMut(Tensor) -> Result<Tensor>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let padded = padded_dims(dims, opts);
    let source = if padded == dims {
        data.to_vec()
    } else {
        extract(data, dims, [0; 3], padded, background)
    };
    let origins: Vec<[usize; 3]> = {
        let s = axis_starts(padded, opts);
        let mut all = Vec::new();
        for &z in &s[2] {
            for &y in &s[1] {
                all.extend(s[0].iter().map(|&x| [x, y, z]));
            }
        }
        all
    };
    let frame = Frame {
        padded,
        patch: opts.patch,
        background,
    };
    let mut canvas = Canvas::new(device, source, frame, weights(opts.patch, opts.blend))?;
    let mut done = 0;
    for chunk in origins.chunks(opts.batch.max(1)) {
        let outputs = generator(canvas.cut(chunk)?)?;
        canvas.add(chunk, &outputs)?;
        done += chunk.len();
        progress(done, origins.len());
    }
    canvas.blend(dims)
}

/// The volume the windows cover: `dims`, grown to the patch where smaller.
fn padded_dims(dims: [usize; 3], opts: &SlidingWindow) -> [usize; 3] {
    std::array::from_fn(|a| dims[a].max(opts.patch[a]))
}

/// Window starts along x, y and z over the padded volume.
fn axis_starts(padded: [usize; 3], opts: &SlidingWindow) -> [Vec<usize>; 3] {
    std::array::from_fn(|a| starts(padded[a], opts.patch[a], opts.stride[a]))
}

/// How many windows `run` puts over a volume of `dims`.
pub fn window_count(dims: [usize; 3], opts: &SlidingWindow) -> usize {
    axis_starts(padded_dims(dims, opts), opts)
        .iter()
        .map(Vec::len)
        .product()
}
