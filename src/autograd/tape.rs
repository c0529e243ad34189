use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::nn::params::{ParamArena, ParamId};
use crate::ops::elementwise;
use crate::tensor::Tensor;

/// A value recorded on a tape. Cheap to copy; only meaningful with the tape that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var {
    tape: u64,
    index: usize,
}

/// Identifies one parameter of one arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamKey {
    pub arena: u64,
    pub param: ParamId,
}

/// A parameter leaf is shared while the arena's values and its requires-grad switch stay
/// the same; after an optimizer step or a freeze, the next use makes a fresh leaf (pix2pix's
/// G step sees the D that was just updated, as in PyTorch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct LeafKey {
    param: ParamKey,
    version: u64,
    requires_grad: bool,
}

/// The backward pass of one recorded op.
pub trait Backward {
    /// Given the gradient of the op's output, returns one gradient per input, in the order
    /// the inputs were recorded. `needs[i]` says whether input `i` wants its gradient; an
    /// implementation may skip (and return `None` for) the others.
    fn backward(&self, grad_out: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>>;
}

struct Node {
    /// None once `Tape::release_since` dropped it (only on a tape that does not record).
    value: Option<Tensor>,
    requires_grad: bool,
    inputs: Vec<Var>,
    backward: Option<Box<dyn Backward>>,
}

/// A position on a tape (`Tape::mark`): the values recorded after it.
#[derive(Clone, Copy, Debug)]
pub struct TapeMark(usize);

static NEXT_TAPE: AtomicU64 = AtomicU64::new(1);

/// Records ops for one backward pass (or, built with `no_grad`, records nothing).
pub struct Tape {
    id: u64,
    nodes: Vec<Node>,
    recording: bool,
    params: HashMap<LeafKey, Var>,
}

impl Default for Tape {
    fn default() -> Self {
        Self::new()
    }
}

impl Tape {
    /// A tape that records ops for backward.
    pub fn new() -> Self {
        Tape {
            id: NEXT_TAPE.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            recording: true,
            params: HashMap::new(),
        }
    }

    /// A tape for inference: ops compute values only, nothing requires a gradient and no
    /// tensor is kept for a backward pass.
    pub fn no_grad() -> Self {
        Tape {
            recording: false,
            ..Self::new()
        }
    }

    pub fn is_recording(&self) -> bool {
        self.recording
    }

    fn push(&mut self, node: Node) -> Var {
        self.nodes.push(node);
        Var {
            tape: self.id,
            index: self.nodes.len() - 1,
        }
    }

    fn node(&self, v: Var) -> &Node {
        assert_eq!(
            v.tape, self.id,
            "a Var was used with a tape that did not make it"
        );
        &self.nodes[v.index]
    }

    /// Brings a tensor onto the tape. With `requires_grad`, `backward` reports its gradient.
    pub fn leaf(&mut self, value: Tensor, requires_grad: bool) -> Var {
        self.push(Node {
            value: Some(value),
            requires_grad: requires_grad && self.recording,
            inputs: Vec::new(),
            backward: None,
        })
    }

    /// A tensor that never needs a gradient (an image, a target).
    pub fn constant(&mut self, value: Tensor) -> Var {
        self.leaf(value, false)
    }

    /// The parameter `id` of `arena`, as a leaf. Its gradient is kept for
    /// `ParamArena::accumulate_grads` when the arena's `requires_grad` switch is on. Asking
    /// again before the arena changes returns the same leaf, so a network run several times
    /// shares its parameters.
    pub fn param(&mut self, arena: &ParamArena, id: ParamId) -> Result<Var> {
        let requires_grad = arena.requires_grad() && self.recording;
        let key = LeafKey {
            param: ParamKey {
                arena: arena.uid(),
                param: id,
            },
            version: arena.version(),
            requires_grad,
        };
        if let Some(&v) = self.params.get(&key) {
            return Ok(v);
        }
        let v = self.push(Node {
            value: Some(arena.tensor(id)?),
            requires_grad,
            inputs: Vec::new(),
            backward: None,
        });
        self.params.insert(key, v);
        Ok(v)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> &Tensor {
        self.node(v)
            .value
            .as_ref()
            .expect("the value of a Var was read after Tape::release_since dropped it")
    }

    pub fn requires_grad(&self, v: Var) -> bool {
        self.node(v).requires_grad
    }

    /// The same value as a new leaf that blocks gradients (PyTorch's `detach`).
    pub fn detach(&mut self, v: Var) -> Var {
        let value = self.value(v).clone();
        self.constant(value)
    }

    /// Records an op's output. `backward` is only built (and what it captures only kept) when
    /// the tape records and some input requires a gradient.
    pub fn record<B: Backward + 'static>(
        &mut self,
        value: Tensor,
        inputs: &[Var],
        backward: impl FnOnce() -> B,
    ) -> Var {
        let requires_grad = self.recording && inputs.iter().any(|&i| self.node(i).requires_grad);
        let (inputs, backward) = if requires_grad {
            (
                inputs.to_vec(),
                Some(Box::new(backward()) as Box<dyn Backward>),
            )
        } else {
            (Vec::new(), None)
        };
        self.push(Node {
            value: Some(value),
            requires_grad,
            inputs,
            backward,
        })
    }

    /// Where the tape stands now, for [`Self::release_since`].
    pub fn mark(&self) -> TapeMark {
        TapeMark(self.nodes.len())
    }

    /// On a tape that does not record: drops the values made since `mark`, except `keep` and
    /// parameter leaves, so that inference holds a network's live activations rather than
    /// all of them (a 3D ResNet generator's patch needs about a quarter). Values from before
    /// the mark, such as the network's input, are never touched. A no-op on a recording
    /// tape, whose backward needs the values. Reading a released value is a bug and panics.
    pub fn release_since(&mut self, mark: TapeMark, keep: &[Var]) {
        if self.recording {
            return;
        }
        let params: std::collections::HashSet<usize> =
            self.params.values().map(|v| v.index).collect();
        for index in mark.0..self.nodes.len() {
            let kept = keep.iter().any(|k| k.tape == self.id && k.index == index);
            if !kept && !params.contains(&index) {
                self.nodes[index].value = None;
            }
        }
    }

    /// Bytes of the values the tape holds now (parameter leaves included): what inference
    /// keeps alive, for tests and measurements of `release_since`.
    pub fn held_bytes(&self) -> usize {
        let held = self.nodes.iter().filter_map(|n| n.value.as_ref());
        held.map(|v| v.numel() * std::mem::size_of::<f32>()).sum()
    }

    /// Reverse sweep from the scalar `loss`. Returns the gradients of every leaf that
    /// requires one (parameters and inputs). Gradients of intermediate values are dropped as
    /// soon as they have been passed on.
    pub fn backward(&self, loss: Var) -> Result<Gradients> {
        let root = self.node(loss);
        let loss_value = self.value(loss);
        if loss_value.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward needs a one-element loss, got shape {}",
                loss_value.shape()
            )));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        if root.requires_grad {
            grads[loss.index] = Some(Tensor::full(loss_value.shape().clone(), 1.0));
        }
        for index in (0..=loss.index).rev() {
            let node = &self.nodes[index];
            let Some(backward) = &node.backward else {
                continue;
            };
            let Some(grad_out) = grads[index].take() else {
                continue;
            };
            let needs: Vec<bool> = node
                .inputs
                .iter()
                .map(|&i| self.node(i).requires_grad)
                .collect();
            let input_grads = backward.backward(&grad_out, &needs)?;
            for ((&input, grad), &need) in node.inputs.iter().zip(input_grads).zip(&needs) {
                let Some(grad) = grad.filter(|_| need) else {
                    continue;
                };
                self.value(input).expect_same_shape("backward", &grad)?;
                let slot = &mut grads[input.index];
                *slot = Some(match slot.take() {
                    Some(acc) => elementwise::add_tensors(&acc, &grad)?,
                    None => grad,
                });
            }
        }
        let params = self
            .params
            .iter()
            .filter(|(_, v)| grads[v.index].is_some())
            .map(|(k, &v)| (k.param, v))
            .collect();
        Ok(Gradients {
            tape: self.id,
            grads,
            params,
        })
    }
}

/// The leaf gradients of one `Tape::backward`.
pub struct Gradients {
    tape: u64,
    grads: Vec<Option<Tensor>>,
    params: Vec<(ParamKey, Var)>,
}

impl Gradients {
    /// The gradient of leaf `v`, if it requires one and the loss depends on it.
    pub fn get(&self, v: Var) -> Option<&Tensor> {
        assert_eq!(
            v.tape, self.tape,
            "a Var was used with gradients of another tape"
        );
        self.grads[v.index].as_ref()
    }

    /// Parameter gradients with the parameter they belong to.
    pub fn params(&self) -> impl Iterator<Item = (ParamKey, &Tensor)> {
        self.params
            .iter()
            .filter_map(|(k, v)| self.grads[v.index].as_ref().map(|g| (*k, g)))
    }
}
