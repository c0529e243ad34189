//! Optimisation: Adam fused over a parameter arena, and learning-rate schedules.

pub mod adam;
pub mod schedule;
