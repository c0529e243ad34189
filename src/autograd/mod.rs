//! Hand-written reverse-mode autograd.
//!
//! A `Tape` records every op run through it, in order, with what its backward pass needs.
//! Because the tape is append-only, reverse order is a valid topological order, so
//! `backward` is one sweep from the end. Ops add themselves to the tape in their own modules
//! (`impl Tape` blocks under `ops/`), each with a `Backward` implementation.

mod tape;

pub use tape::{Backward, Gradients, ParamKey, Tape, TapeMark, Var};
