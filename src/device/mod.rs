//! Where tensors live and ops run: the CPU (the reference backend) or, with the `cuda`
//! feature, a GPU through `cuda::CudaBackend`. `DeviceChoice` is the user's
//! `--device auto|cpu|cuda|cuda:N`; `DeviceChoice::open` turns it into a `Device`.

pub mod conv_params;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod flat;
pub mod kernel_codes;
pub mod pool;
pub mod thin_conv;
pub mod tiled_conv;
pub mod winograd;

use std::fmt;
use std::str::FromStr;
#[cfg(feature = "cuda")]
use std::sync::Arc;

use crate::error::{Error, Result};

/// A compute device. Tensors remember theirs; an op runs where its operands live.
#[derive(Clone)]
pub enum Device {
    /// The reference backend: rayon threads and the `gemm` crate.
    Cpu,
    /// One GPU with the engine's kernels loaded.
    #[cfg(feature = "cuda")]
    Cuda(Arc<cuda::CudaBackend>),
}

/// Device memory at its peak, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPeak {
    /// What the engine's live buffers needed (PyTorch's `max_memory_allocated`).
    pub in_use_bytes: usize,
    /// What the engine held from the driver, its buffer cache included (PyTorch's
    /// `max_memory_reserved`): the number that decides whether a run fits.
    pub held_bytes: usize,
}

impl Device {
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// The device memory peaks since the device was opened or since `reset_memory_peak`;
    /// None on the CPU.
    pub fn memory_peak(&self) -> Option<MemoryPeak> {
        match self {
            Device::Cpu => None,
            #[cfg(feature = "cuda")]
            Device::Cuda(b) => {
                let stats = b.pool_stats();
                Some(MemoryPeak {
                    in_use_bytes: stats.peak_in_use * 4,
                    held_bytes: stats.peak * 4,
                })
            }
        }
    }

    /// From now on (`on`), tiled conv launches (and Winograd's transform where it applies) are
    /// picked by timing the candidates the first time each shape runs
    /// (`CudaBackend::set_autotune`); the CPU has nothing to tune.
    pub fn set_autotune(&self, on: bool) {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(b) = self {
            b.set_autotune(on);
        }
        #[cfg(not(feature = "cuda"))]
        let _ = on;
    }

    /// What autotuning has picked so far, a line per primitive
    /// (`CudaBackend::tuned_summary`); empty on the CPU or before any tuning.
    pub fn autotune_summary(&self) -> Vec<String> {
        match self {
            Device::Cpu => Vec::new(),
            #[cfg(feature = "cuda")]
            Device::Cuda(b) => b.tuned_summary(),
        }
    }

    /// Starts a new memory peak from what the device holds now.
    pub fn reset_memory_peak(&self) {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(b) = self {
            b.reset_pool_peak();
        }
    }

    /// Gives the device memory of buffers no longer in use back to the driver, so that
    /// another process (a PyTorch comparison) can have it; the CPU keeps no cache.
    pub fn release_cached_memory(&self) {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(b) = self {
            b.release_cached();
        }
    }

    /// For people: "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)".
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            #[cfg(feature = "cuda")]
            Device::Cuda(b) => format!("cuda:{} ({})", b.ordinal(), b.name()),
        }
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            #[cfg(feature = "cuda")]
            (Device::Cuda(a), Device::Cuda(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "cuda")]
            _ => false,
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "Cpu"),
            #[cfg(feature = "cuda")]
            Device::Cuda(b) => write!(f, "Cuda({})", b.ordinal()),
        }
    }
}

/// The device a user asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// GPU 0 when one works, else the CPU (saying why).
    #[default]
    Auto,
    Cpu,
    /// GPU number N (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("unknown device '{s}': use auto, cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// An opened device, and under `auto` the reason it is the CPU when that was a fallback
/// (for the caller to tell the user once).
pub struct Opened {
    pub device: Device,
    pub fallback: Option<String>,
}

impl DeviceChoice {
    /// Opens the device. An explicit `cuda:N` that cannot be opened is an error with the
    /// reason; `auto` falls back to the CPU and reports why.
    pub fn open(self) -> Result<Opened> {
        let cpu = |fallback| Opened {
            device: Device::Cpu,
            fallback,
        };
        match self {
            DeviceChoice::Cpu => Ok(cpu(None)),
            DeviceChoice::Cuda(n) => open_cuda(n)
                .map(|device| Opened {
                    device,
                    fallback: None,
                })
                .map_err(|why| Error::Device(format!("cuda:{n}: {why}"))),
            DeviceChoice::Auto => Ok(match open_cuda(0) {
                Ok(device) => Opened {
                    device,
                    fallback: None,
                },
                Err(why) => cpu(Some(format!("running on the CPU: {why}"))),
            }),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> std::result::Result<Device, String> {
    cuda::CudaBackend::shared(ordinal).map(Device::Cuda)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> std::result::Result<Device, String> {
    Err(
        "this mrgan was built without the `cuda` feature (cargo build --release --features cuda)"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choices_parse_and_print_back() {
        for (text, choice) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>(), Ok(choice));
            assert_eq!(choice.to_string().parse::<DeviceChoice>(), Ok(choice));
        }
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let err = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(err.contains("auto, cpu, cuda or cuda:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn cpu_always_opens_and_auto_always_gives_a_device() {
        let cpu = DeviceChoice::Cpu.open().unwrap();
        assert!(cpu.device.is_cpu() && cpu.fallback.is_none());
        // Without a usable GPU, auto is the CPU with a reason; with one, a GPU and none.
        let auto = DeviceChoice::Auto.open().unwrap();
        assert_eq!(auto.device.is_cpu(), auto.fallback.is_some());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let err = DeviceChoice::Cuda(0).open().err().unwrap().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
