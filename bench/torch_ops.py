# bench/torch_ops.py — PyTorch's side of `vdp bench --ops` (bench.sh's CPU mode): the same operator cases,
# each in PyTorch's native layout, fp32, median and min of --runs after one warm-up. Prints ONE JSON line
# with the case names of `vdp bench --ops`.
import argparse, json, time

import torch
import torch.nn.functional as Fn

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--device", default="cpu")
a = ap.parse_args()
dev = a.device
torch.manual_seed(0)


def rn(*shape, scale=1.0):
    return torch.randn(*shape, device=dev) * scale


def timed(fn):
    fn()  # warm-up
    ts = []
    for _ in range(a.runs):
        t = time.perf_counter()
        fn()
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        ts.append((time.perf_counter() - t) * 1e3)
    s = sorted(ts)
    med = s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
    return med, s[0]


cases = []
with torch.no_grad():
    x, w, b = rn(1024, 1024), rn(1024, 1024, scale=0.05), rn(1024)
    cases.append(("linear 1024x1024x1024", 2.0 * 1024**3, lambda: Fn.linear(x, w, b)))
    x2, w2, b2 = rn(3584, 320), rn(2560, 320, scale=0.05), rn(2560)
    cases.append(("linear 3584x320x2560 (GEGLU proj, 14 frames 16x16)", 2.0 * 3584 * 320 * 2560,
                  lambda: Fn.linear(x2, w2, b2)))
    xc, wc, bc = rn(14, 320, 32, 32), rn(320, 320, 3, 3, scale=0.02), rn(320)
    cases.append(("conv3x3 320->320 [14,320,32,32]", 2.0 * 14 * 320 * 320 * 9 * 1024,
                  lambda: Fn.conv2d(xc, wc, bc, padding=1)))
    xs, ws, bs = rn(14, 1280, 4, 4), rn(1280, 1280, 3, 3, scale=0.02), rn(1280)
    cases.append(("conv3x3 1280->1280 [14,1280,4,4]", 2.0 * 14 * 1280 * 1280 * 9 * 16,
                  lambda: Fn.conv2d(xs, ws, bs, padding=1)))
    # diffusers' TemporalResnetBlock: Conv3d kernel (3,1,1) on [B, C, F, H, W]
    xt, wt, bt = rn(1, 320, 14, 32, 32), rn(320, 320, 3, 1, 1, scale=0.05), rn(320)
    cases.append(("conv_temporal 320->320 [1,14,320,32x32]", 2.0 * 14 * 320 * 320 * 3 * 1024,
                  lambda: Fn.conv3d(xt, wt, bt, padding=(1, 0, 0))))
    q, k, v = rn(1, 5, 4096, 64), rn(1, 5, 4096, 64), rn(1, 5, 4096, 64)
    cases.append(("attention spatial 1 seq x 4096 tokens x 5 heads x 64", 4.0 * 5 * 4096 * 4096 * 64,
                  lambda: Fn.scaled_dot_product_attention(q, k, v)))
    qt, kt, vt = rn(1024, 5, 14, 64), rn(1024, 5, 14, 64), rn(1024, 5, 14, 64)
    cases.append(("attention temporal 1024 seqs x 14 frames x 5 heads x 64", 4.0 * 1024 * 5 * 14 * 14 * 64,
                  lambda: Fn.scaled_dot_product_attention(qt, kt, vt)))
    xg, g, bg = rn(1, 320, 14, 32, 32), rn(320), rn(320)
    cases.append(("groupnorm+silu [14,320,32,32] 32 groups", 0.0, lambda: Fn.silu(Fn.group_norm(xg, 32, g, bg, 1e-5))))
    out = []
    for name, flop, fn in cases:
        med, best = timed(fn)
        r = {"name": name, "ms_median": med, "ms_min": best}
        if flop:
            r.update({"gflop": flop / 1e9, "gflops_median": flop / med / 1e6, "gflops_best": flop / best / 1e6})
        else:
            r["gbytes_per_s_median"] = 2.0 * 14 * 320 * 1024 * 4 / med / 1e6
        out.append(r)
print(json.dumps({"device": dev, "torch": torch.__version__, "threads": torch.get_num_threads(), "runs": a.runs,
                  "ops": out}))
