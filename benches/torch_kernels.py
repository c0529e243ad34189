#!/usr/bin/env python3
"""The PyTorch + cuDNN side of `mrgan bench kernels`: times the same conv primitives on the
same shapes, on the same GPU, and prints mrgan's best kernel against cuDNN's.

    python3 benches/torch_kernels.py KERNELS_CSV [--reps 20] [--csv OUT_CSV]

KERNELS_CSV is the file `mrgan bench kernels --csv` wrote. Each conv row names a layer, a
primitive (fprop, dgrad, wgrad; direct, `-tiled` or `-thin`) and its forward conv's shape.
mrgan's time is its faster kernel as the backend plans it; rows of tile shapes the plan did
not pick (`-tiled@128x128`) and Winograd's wgrad (`-winograd`, not planned yet) only feed
the `any shape` column and totals, which show what a better plan would gain. cuDNN runs
each primitive through `aten.convolution_backward` / `conv2d` (`conv3d` for volumetric rows,
`depth` above 1) with `cudnn.benchmark` on (it
picks its fastest algorithm), twice: strict fp32 (TF32 off: the same arithmetic as mrgan's
fp32 FMA kernels) and PyTorch's default for convs (TF32 on). Times are the median of
`--reps` CUDA-event-timed launches after warm-up. Stopped by SIGTERM (`timeout`), it prints
the totals of the networks whose rows it finished and writes the rows it timed.
"""
import argparse
import csv
import re
import signal
import statistics

import torch


def time_ms(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def primitive(shape, batch, kind):
    """A closure running one conv primitive of `shape` (a CSV row) at `batch` on cuDNN.

    A conv that pads with reflection or replication (`pad_mode`) runs as the reference
    network runs it: the padding layer, then a conv without padding. Its fprop includes the
    padding, its dgrad the padding's backward; its wgrad reads the padded input the forward
    kept."""
    c_in, c_out, h, w, k, s, p = (int(shape[key]) for key in
                                  ("c_in", "c_out", "height", "width", "kernel_size", "stride", "pad"))
    mode = shape.get("pad_mode") or "zero"
    depth = int(shape.get("depth") or 1)
    dims = 3 if depth > 1 else 2  # a volumetric layer: conv3d, cubic kernel
    spatial = [depth, h, w] if dims == 3 else [h, w]
    dev = torch.device("cuda")
    x = torch.randn(batch, c_in, *spatial, device=dev)
    weight = torch.randn(c_out, c_in, *[k] * dims, device=dev)
    F = torch.nn.functional
    conv = F.conv3d if dims == 3 else F.conv2d
    if mode == "zero":
        pad, pad_backward, conv_pad = (lambda t: t), (lambda g: g), p
    else:
        pad = lambda t: F.pad(t, [p] * (2 * dims), mode=mode)
        aten = torch.ops.aten
        pad_grad = {("reflect", 2): aten.reflection_pad2d_backward, ("replicate", 2): aten.replication_pad2d_backward,
                    ("reflect", 3): aten.reflection_pad3d_backward, ("replicate", 3): aten.replication_pad3d_backward}[mode, dims]
        pad_backward = lambda g: pad_grad(g, x, [p] * (2 * dims))
        conv_pad = 0
    xp = pad(x)
    y = conv(xp, weight, stride=s, padding=conv_pad)
    dy = torch.randn_like(y)
    if kind == "fprop":
        return lambda: conv(pad(x), weight, stride=s, padding=conv_pad)
    mask = [kind == "dgrad", kind == "wgrad", False]
    backward = lambda: torch.ops.aten.convolution_backward(
        dy, xp, weight, None, [s] * dims, [conv_pad] * dims, [1] * dims, False, [0] * dims, 1, mask)
    if kind == "dgrad":
        return lambda: pad_backward(backward()[0])
    return backward


class CutOff(Exception):
    """The time limit's SIGTERM (`timeout`), turned into an exception so that the rows timed
    so far still make a table."""


def cut_off(signum, frame):
    raise CutOff()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernels_csv")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--csv", help="write the comparison here too")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True

    # mrgan's best kernel per (layer, primitive, batch): as planned, and in any tile shape.
    best, any_shape = {}, {}
    for row in csv.DictReader(open(args.kernels_csv)):
        if not row["c_in"]:  # not a conv (the dense GEMM, Adam)
            continue
        *layer, kernel = row["kernel"].split(" ")
        kind, _, variant = kernel.split("@")[0].partition("-")  # e.g. wgrad, tiled
        key = (" ".join(layer), kind, int(row["batch"]))
        ms = float(row["ms"])
        any_shape[key] = min(ms, any_shape.get(key, ms))
        if "@" in kernel or variant == "winograd":
            continue
        label = f"{kernel} {row['tiles']}" if row.get("tiles") else kernel
        if key not in best or ms < best[key][0]:
            best[key] = (ms, label, row)

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    header = f"{'layer':<28} {'pass':<6} {'batch':>5} {'mrgan ms':>9} {'any shape':>9} {'cuDNN fp32':>10} {'cuDNN tf32':>10} {'vs fp32':>8} {'vs tf32':>8}  mrgan kernel"
    print(header)
    results = []
    totals = {}
    rows_left = {}  # per (net, batch): rows not yet timed
    for layer, _, batch in best:
        rows_left[(layer.split(" ")[0], batch)] = rows_left.get((layer.split(" ")[0], batch), 0) + 1
    signal.signal(signal.SIGTERM, cut_off)
    try:
        for (layer, kind, batch), (ms, kernel, shape) in best.items():
            fn = primitive(shape, batch, kind)
            torch.backends.cudnn.allow_tf32 = False
            fp32 = time_ms(fn, args.reps)
            torch.backends.cudnn.allow_tf32 = True
            tf32 = time_ms(fn, args.reps)
            shaped = any_shape[(layer, kind, batch)]
            print(f"{layer:<28} {kind:<6} {batch:>5} {ms:>9.3f} {shaped:>9.3f} {fp32:>10.3f} {tf32:>10.3f} {ms / fp32:>7.2f}x {ms / tf32:>7.2f}x  {kernel}",
                  flush=True)
            results.append((layer, kind, batch, ms, shaped, fp32, tf32, kernel))
            net = layer.split(" ")[0]
            repeats = re.search(r"\(x(\d+)\)", layer)  # "block (x18)": one row for 18 convs
            times = int(repeats.group(1)) if repeats else 1
            t = totals.setdefault((net, batch), [0.0, 0.0, 0.0, 0.0])
            for i, v in enumerate((ms, shaped, fp32, tf32)):
                t[i] += times * v
            rows_left[(net, batch)] -= 1
    except CutOff:
        print("\ncut off by the time limit: the table stops above, and the totals leave out every "
              "network with rows not timed")
    print("\nWhole network, all three passes of every conv layer (rows above, repeated layers counted each time):")
    print(f"{'net':<16} {'batch':>5} {'mrgan ms':>9} {'any shape':>9} {'cuDNN fp32':>10} {'cuDNN tf32':>10} {'vs fp32':>8} {'vs tf32':>8}")
    for (net, batch), (ms, shaped, fp32, tf32) in totals.items():
        if rows_left[(net, batch)] == 0:
            print(f"{net:<16} {batch:>5} {ms:>9.2f} {shaped:>9.2f} {fp32:>10.2f} {tf32:>10.2f} {ms / fp32:>7.2f}x {ms / tf32:>7.2f}x")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["layer", "pass", "batch", "mrgan_ms", "mrgan_any_shape_ms", "cudnn_fp32_ms", "cudnn_tf32_ms",
                          "mrgan_kernel"])
            out.writerows(results)


if __name__ == "__main__":
    main()
