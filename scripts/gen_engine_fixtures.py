#!/usr/bin/env python3
"""Generates tests/fixtures/engine_ops.safetensors: PyTorch goldens for the engine's ops.

Every case stores its inputs (float32-representable values), an upstream gradient `gy`, the
forward output `y` and the gradients of every input, all as float64 computed by torch in
float64. The case list with each op's parameters and the torch version go into the file's
metadata (`cases`, `torch_version`), which the Rust tests read.

Needs torch and safetensors only when regenerating:
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch safetensors numpy
    /tmp/torchenv/bin/python scripts/gen_engine_fixtures.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)

tensors = {}
cases = []


def rnd(*shape, scale=1.0):
    """Random values that are exact in float32, so the f32 Rust side sees the same inputs."""
    return (torch.randn(*shape) * scale).float().double()


def leaf(t):
    return t.clone().requires_grad_(True)


def record(name, op, params, inputs, y, extra=None):
    """Stores inputs, gy, y and the input gradients of one case."""
    gy = rnd(*y.shape) if y.numel() > 1 else torch.tensor([1.7])
    (y.reshape(gy.shape) * gy).sum().backward()
    tensors[f"{name}.gy"] = gy
    tensors[f"{name}.y"] = y.detach().reshape(gy.shape)
    for key, t in inputs.items():
        tensors[f"{name}.{key}"] = t.detach().clone()
        if t.grad is not None:
            tensors[f"{name}.g{key}"] = t.grad.detach().clone()
    for key, t in (extra or {}).items():
        tensors[f"{name}.{key}"] = t.detach().clone()
    cases.append({"name": name, "op": op, **params})


# Convolutions.
for name, xs, ws, bias, stride, pad in [
    ("conv2d_s2p1_bias", (2, 3, 7, 6), (4, 3, 3, 3), True, 2, 1),
    ("conv2d_k4s2p1", (1, 2, 8, 9), (3, 2, 4, 4), False, 2, 1),
    ("conv2d_k7p0_bias", (2, 2, 9, 8), (2, 2, 7, 7), True, 1, 0),
    ("conv3d_s2p1_bias", (2, 2, 5, 6, 4), (3, 2, 3, 3, 3), True, 2, 1),
    ("conv3d_k4s2p1", (1, 2, 6, 5, 7), (2, 2, 4, 4, 4), False, 2, 1),
    # More than 4 output channels: the CPU backend's im2col + GEMM path.
    ("conv2d_k4s2p1_wide", (2, 3, 9, 8), (8, 3, 4, 4), True, 2, 1),
    ("conv3d_s2p1_wide", (1, 2, 5, 5, 5), (6, 2, 3, 3, 3), False, 2, 1),
]:
    x, w = leaf(rnd(*xs)), leaf(rnd(*ws, scale=0.3))
    inputs = {"x": x, "w": w}
    b = None
    if bias:
        b = leaf(rnd(ws[0]))
        inputs["b"] = b
    conv = F.conv2d if len(xs) == 4 else F.conv3d
    y = conv(x, w, b, stride=stride, padding=pad)
    record(name, "conv", {"stride": stride, "padding": pad, "output_padding": 0, "bias": bias}, inputs, y)

for name, xs, ws, bias, stride, pad, opad in [
    ("convt2d_s2p1op1_bias", (2, 3, 4, 5), (3, 2, 3, 3), True, 2, 1, 1),
    ("convt2d_k4s2p1", (1, 4, 3, 3), (4, 3, 4, 4), False, 2, 1, 0),
    ("convt3d_s2p1op1_bias", (1, 2, 3, 4, 3), (2, 3, 3, 3, 3), True, 2, 1, 1),
    ("convt2d_k4s2p1_wide", (1, 6, 4, 4), (6, 3, 4, 4), True, 2, 1, 0),
    ("convt3d_s2p1op1_wide", (1, 5, 3, 3, 2), (5, 2, 3, 3, 3), False, 2, 1, 1),
]:
    x, w = leaf(rnd(*xs)), leaf(rnd(*ws, scale=0.3))
    inputs = {"x": x, "w": w}
    b = None
    if bias:
        b = leaf(rnd(ws[1]))
        inputs["b"] = b
    convt = F.conv_transpose2d if len(xs) == 4 else F.conv_transpose3d
    y = convt(x, w, b, stride=stride, padding=pad, output_padding=opad)
    record(name, "conv_transpose", {"stride": stride, "padding": pad, "output_padding": opad, "bias": bias}, inputs, y)

# Norms.
for name, xs, training in [
    ("batchnorm2d_train", (3, 4, 5, 6), True),
    ("batchnorm2d_eval", (2, 3, 4, 5), False),
    ("batchnorm3d_train", (2, 3, 3, 4, 5), True),
]:
    c = xs[1]
    x = leaf(rnd(*xs) * 2 + 0.5)
    gamma, beta = leaf(1 + 0.1 * rnd(c)), leaf(0.1 * rnd(c))
    rm, rv = rnd(c) * 0.1, 1 + rnd(c).abs()
    rm0, rv0 = rm.clone(), rv.clone()
    y = F.batch_norm(x, rm, rv, gamma, beta, training=training, momentum=0.1, eps=1e-5)
    record(name, "batch_norm", {"training": training, "affine": True},
           {"x": x, "gamma": gamma, "beta": beta},
           y, {"running_mean_before": rm0, "running_var_before": rv0,
               "running_mean": rm, "running_var": rv})

for name, xs, affine in [
    ("instancenorm2d", (2, 3, 5, 6), False),
    ("instancenorm3d_affine", (2, 2, 3, 4, 5), True),
]:
    c = xs[1]
    x = leaf(rnd(*xs) * 3 - 1)
    inputs = {"x": x}
    gamma = beta = None
    if affine:
        gamma, beta = leaf(1 + 0.1 * rnd(c)), leaf(0.1 * rnd(c))
        inputs.update(gamma=gamma, beta=beta)
    y = F.instance_norm(x, weight=gamma, bias=beta, eps=1e-5)
    record(name, "instance_norm", {"affine": affine}, inputs, y)

# Padding.
for name, xs, mode, amount in [
    ("pad_reflect2d", (2, 2, 5, 6), "reflect", 2),
    ("pad_replicate2d", (1, 2, 4, 5), "replicate", 3),
    ("pad_zero2d", (2, 1, 3, 4), "constant", 1),
    ("pad_reflect3d", (1, 2, 3, 4, 5), "reflect", 1),
    ("pad_replicate3d", (1, 1, 3, 4, 2), "replicate", 2),
]:
    x = leaf(rnd(*xs))
    y = F.pad(x, [amount] * (2 * (len(xs) - 2)), mode=mode)
    record(name, "pad", {"mode": {"constant": "zero"}.get(mode, mode), "amount": amount}, {"x": x}, y)

# Activations.
for act, fn in [
    ("relu", F.relu),
    ("leaky_relu", lambda t: F.leaky_relu(t, 0.2)),
    ("tanh", torch.tanh),
    ("sigmoid", torch.sigmoid),
]:
    x = leaf(rnd(2, 3, 4, 5) * 2)
    record(f"act_{act}", "activation", {"activation": act, "slope": 0.2}, {"x": x}, fn(x))

# Concat along channels.
a, b = leaf(rnd(2, 3, 4, 5)), leaf(rnd(2, 2, 4, 5))
record("concat", "concat", {}, {"a": a, "b": b}, torch.cat([a, b], dim=1))

# Arithmetic and reductions.
a, b = leaf(rnd(2, 3, 4)), leaf(rnd(2, 3, 4))
record("arith_add", "arith", {"fn": "add"}, {"a": a, "b": b}, a + b)
a, b = leaf(rnd(2, 3, 4)), leaf(rnd(2, 3, 4))
record("arith_mul", "arith", {"fn": "mul"}, {"a": a, "b": b}, a * b)
a = leaf(rnd(2, 3, 4))
record("arith_scale", "arith", {"fn": "scale", "factor": 2.5}, {"a": a}, 2.5 * a)
a = leaf(rnd(2, 3, 4))
record("arith_sum", "arith", {"fn": "sum"}, {"a": a}, a.sum().reshape(1))
a = leaf(rnd(2, 3, 4))
record("arith_mean", "arith", {"fn": "mean"}, {"a": a}, a.mean().reshape(1))

# Losses (mean reduction).
for name, kind, target in [
    ("loss_l1", "l1", None),
    ("loss_mse", "mse", None),
    ("loss_bce_real", "bce_with_logits", 1.0),
    ("loss_bce_fake", "bce_with_logits", 0.0),
    ("loss_mse_real", "mse", 1.0),
]:
    p = leaf(rnd(2, 1, 6, 6) * 2)
    inputs = {"p": p}
    if target is None:
        t = leaf(rnd(2, 1, 6, 6))
        inputs["t"] = t
    else:
        t = torch.full_like(p, target)
    fn = {"l1": F.l1_loss, "mse": F.mse_loss, "bce_with_logits": F.binary_cross_entropy_with_logits}[kind]
    params = {"kind": kind}
    if target is not None:
        params["target"] = target
    record(name, "loss", params, inputs, fn(p, t).reshape(1))

# Adam trajectories: initial parameters, one gradient per step, parameters after each step.
for name, cfg in [
    ("adam_gan", dict(lr=2e-4, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.0)),
    ("adam_default_wd", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
]:
    steps = 6
    p = torch.nn.Parameter(rnd(64).float())
    opt = torch.optim.Adam([p], **cfg)
    grads = rnd(steps, 64).float()
    grads[:, :4] *= 1e-6  # tiny gradients exercise eps
    start = p.detach().double().clone()
    after = []
    for s in range(steps):
        opt.zero_grad()
        p.grad = grads[s].clone()
        opt.step()
        after.append(p.detach().double().clone())
    tensors[f"{name}.p0"] = start
    tensors[f"{name}.grads"] = grads.double()
    tensors[f"{name}.after"] = torch.stack(after)
    cases.append({"name": name, "op": "adam", "lr": cfg["lr"], "beta1": cfg["betas"][0],
                  "beta2": cfg["betas"][1], "eps": cfg["eps"], "weight_decay": cfg["weight_decay"],
                  "steps": steps})

# Learning-rate schedules: the factor after k scheduler steps, k = 0..14.
def factors(make):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make(opt)
    out = []
    for _ in range(15):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(out)

n_epochs, n_decay, epoch_count = 5, 5, 1
tensors["lr_linear.factors"] = factors(lambda o: torch.optim.lr_scheduler.LambdaLR(
    o, lambda k: 1.0 - max(0, k + epoch_count - n_epochs) / float(n_decay + 1)))
cases.append({"name": "lr_linear", "op": "lr", "policy": "linear", "n_epochs": n_epochs,
              "n_epochs_decay": n_decay, "epoch_count": epoch_count})
tensors["lr_step.factors"] = factors(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.1))
cases.append({"name": "lr_step", "op": "lr", "policy": "step", "step_size": 3, "gamma": 0.1})
tensors["lr_cosine.factors"] = factors(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5))
cases.append({"name": "lr_cosine", "op": "lr", "policy": "cosine", "t_max": 5})

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "engine_ops.safetensors")
save_file({k: v.contiguous() for k, v in tensors.items()}, out,
          metadata={"torch_version": torch.__version__, "cases": json.dumps(cases)})
print(f"wrote {len(cases)} cases, {len(tensors)} tensors to {os.path.normpath(out)} with torch {torch.__version__}")
