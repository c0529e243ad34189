#!/usr/bin/env bash
# What the tiled conv kernels cost per K tile, read from the sm_90 SASS without a GPU: for
# each tiled kernel, the instructions of its main loop on the uniform path (kernels/conv.cu
# compiled with the general path cut off, so the loop body is what one K tile executes),
# its FFMA, shared-memory reads, async copies, global loads and stores, and ptxas's registers and spills for
# the real kernels.
# Variants fix a branch the launch fixes (dgrad's stride; the padding mode and whether the
# K tile starts a new tap; wgrad's rows in whole K tiles or not; the general path instead of
# the uniform one), so that their loop is what such a launch executes per K tile. LDL and STL count local-memory loads and stores (spilled
# registers) in the loop.
# Needs nvcc and cuobjdump (the cuda feature's toolkit). A static count, not a timing:
# `mrgan bench kernels` on a GPU says what the count is worth.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s/if (ops.slice(k_begin).uniform)/if (true)/" kernels/conv.cu > "$tmp/uniform.cu"
nvcc -O3 -std=c++17 -I kernels -arch=sm_90 -cubin -o "$tmp/conv.cubin" "$tmp/uniform.cu"
cuobjdump -sass "$tmp/conv.cubin" > "$tmp/conv.sass"
# Variants: the same loop with a branch fixed, which is what those launches execute.
# $1: label, $2: sed program on uniform.cu, $3: which kernels to keep (a name pattern).
variant() {
  sed "$2" "$tmp/uniform.cu" > "$tmp/$1.cu"
  nvcc -O3 -std=c++17 -I kernels -arch=sm_90 -cubin -o "$tmp/$1.cubin" "$tmp/$1.cu"
  cuobjdump -sass "$tmp/$1.cubin" | sed "s/Function : \(conv_[a-z]*_[a-z_]*_f32\)$/Function : \1 ($1)/" \
    | awk -v keep_re="$3" '/Function : /{keep = $0 ~ keep_re} keep' >> "$tmp/conv.sass"
}
# dgrad's gather branches on the stride.
stride='s/int out_index(int i, int k, int s, int p, int out) {/int out_index(int i, int k, int, int p, int out) { const int s = STRIDE;/'
variant "stride 1" "${stride/STRIDE/1}" conv_dgrad_
variant "stride 2" "${stride/STRIDE/2}" conv_dgrad_
# fprop's and dgrad's gathers at stride 1 in each padding mode, on the K tiles that keep the
# previous tile's tap (`tap_gather`'s memo holds): C / TILE_K - 1 of every C / TILE_K.
kept='s/if (s.memo_tap != s.tap) {/if (false) {/'
for mode in 0:zero 1:reflect; do
  fixed="s/[gp]\.pad_mode/${mode%%:*}/g"
  variant "${mode#*:}, tap kept" "${stride/STRIDE/1}; $kept; $fixed" 'conv_(fprop|dgrad)_'
done
# wgrad's variants for its rows (`Operands<AnyWgradOps>`), zero padding (the uniform path's).
rows='s/if (g.out_w < TILE_K || g.out_w % TILE_K == 0)/if (ROWS)/'
for choice in true:whole false:pairs; do
  variant "rows: ${choice#*:}" "${rows/ROWS/${choice%%:*}}; s/g\.pad_mode/0/g" conv_wgrad_
done
# The general path (a slice per k: channel counts that are no multiple of TILE_K, wgrad's
# rows under TILE_K), stride 1, zero padding, wgrad's first variant.
variant "general path" "s/if (true)/if (false)/; ${rows/ROWS/true}; ${stride/STRIDE/1}; s/[gp]\.pad_mode/0/g" \
  'conv_(fprop|dgrad|wgrad)_(tiled|large)_f32'
# Registers and spills of the real kernels (both paths).
nvcc -O3 -std=c++17 -I kernels -arch=sm_90 --resource-usage -cubin -o "$tmp/real.cubin" \
  kernels/conv.cu 2> "$tmp/ptxas.txt"
python3 - "$tmp/conv.sass" "$tmp/ptxas.txt" <<'PY'
import re, sys
funcs, cur = {}, None
for line in open(sys.argv[1]):
    m = re.search(r'Function : (.+?)\s*$', line)
    if m:
        cur = m.group(1); funcs[cur] = []; continue
    m = re.match(r'\s+/\*([0-9a-f]{4,})\*/\s+(.*?);', line)
    if cur and m:
        funcs[cur].append((int(m.group(1), 16), m.group(2).strip()))
usage, name = {}, None
for line in open(sys.argv[2]):
    m = re.search(r"Function properties for (\w+)", line)
    if m: name = m.group(1)
    m = re.search(r"(\d+) bytes spill stores", line)
    if m and name: usage.setdefault(name, {})["spill"] = int(m.group(1))
    m = re.search(r"Compiling entry function '(\w+)'", line)
    if m: name = m.group(1)
    m = re.search(r"Used (\d+) registers", line)
    if m and name: usage.setdefault(name, {})["regs"] = int(m.group(1))
print(f"{'kernel':42s} {'instr/K tile':>12s} {'FFMA':>5s} {'FFMA %':>6s} {'LDS':>4s} {'LDGSTS':>6s} {'LDG':>4s} {'STS':>4s} {'LDL+STL':>7s} {'regs':>4s} {'spill B':>7s}")
for f, ins in sorted(funcs.items()):
    if not re.search(r'_(tiled|large|narrow|large_streamk)_f32( \(.*\))?$', f):
        continue
    best = None  # the backward branch whose body holds the most FFMA: the K loop
    for addr, op in ins:
        if 'BRA' not in op:
            continue
        t = re.search(r'0x([0-9a-f]+)', op.split('BRA')[1])
        if not t or int(t.group(1), 16) >= addr:
            continue
        # Never-issued padding (`@!PT LDS RZ, [RZ]`, which ptxas puts before async copies)
        # is left out.
        body = [o for a, o in ins if int(t.group(1), 16) <= a <= addr and not o.startswith('@!PT ')]
        count = lambda k: sum(1 for o in body if re.search(k, o))
        key = (count(r'\bFFMA\b'), -len(body))
        if best is None or key > best[0]:
            best = (key, len(body), count(r'\bFFMA\b'), count(r'\bLDS\b'), count(r'\bLDGSTS\b'),
                    count(r'\bLDG\b'), count(r'\bSTS\b'), count(r'\b(LDL|STL)\b'))
    _, n, ffma, lds, ldgsts, ldg, sts, local = best
    u = usage.get(f.split()[0], {})
    print(f"{f:42s} {n:12d} {ffma:5d} {100 * ffma / n:5.0f}% {lds:4d} {ldgsts:6d} {ldg:4d} {sts:4d} {local:7d} {u.get('regs', 0):4d} {u.get('spill', 0):7d}")
print("LDS: shared-memory reads; LDGSTS: global-to-shared copies (cp.async); LDG, STS: loads\n"
      "and stores through registers; LDL+STL: spilled registers read and written in the loop.\n"
      "regs and spill: the real kernels, every path.")
PY
