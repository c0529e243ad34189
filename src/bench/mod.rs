//! Benchmarks shared by `benches/` and `mrgan bench`. Results are measured, never assumed:
//! every table row carries its own baseline measured in the same run.

pub mod cpu_conv;
pub mod data_pipeline;
pub mod kernel_table;
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod layers;
pub mod train_step;
pub mod volumetric;
