//! Learning-rate policies of the reference (`networks.get_scheduler`), stepped once per epoch.
//! Each gives the factor applied to the initial learning rate after `k` scheduler steps.

/// A learning-rate policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrPolicy {
    /// Constant for `n_epochs`, then linear decay over `n_epochs_decay`:
    /// factor(k) = 1 - max(0, k + epoch_count - n_epochs) / (n_epochs_decay + 1).
    Linear {
        n_epochs: usize,
        n_epochs_decay: usize,
        epoch_count: usize,
    },
    /// Multiply by `gamma` every `step_size` steps (StepLR).
    Step { step_size: usize, gamma: f64 },
    /// Cosine annealing to 0 over `t_max` steps (CosineAnnealingLR, eta_min 0); beyond
    /// `t_max` it climbs back, as PyTorch's does.
    Cosine { t_max: usize },
}

impl LrPolicy {
    /// Factor on the initial learning rate after `k` scheduler steps.
    pub fn factor(&self, k: usize) -> f64 {
        match *self {
            LrPolicy::Linear {
                n_epochs,
                n_epochs_decay,
                epoch_count,
            } => {
                let over = (k + epoch_count).saturating_sub(n_epochs) as f64;
                1.0 - over / (n_epochs_decay as f64 + 1.0)
            }
            LrPolicy::Step { step_size, gamma } => gamma.powi((k / step_size.max(1)) as i32),
            LrPolicy::Cosine { t_max } => {
                (1.0 + (std::f64::consts::PI * k as f64 / t_max.max(1) as f64).cos()) / 2.0
            }
        }
    }

    /// The learning rate after `k` steps, starting from `base_lr`.
    pub fn lr(&self, base_lr: f64, k: usize) -> f64 {
        base_lr * self.factor(k)
    }
}
