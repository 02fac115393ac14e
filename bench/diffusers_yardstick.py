# bench/diffusers_yardstick.py — the diffusers side of bench.sh (our copy of the measurements in
# /work/shared/tools/svd_yardstick.py, which does not travel to the GPU machine). Prints ONE JSON line.
#
# Two modes:
#   components (default): the real SVD / SVD-XT architectures with random weights on one device, as
#     `vdp bench` measures them: UNet step median (+ FLOPs from torch's FlopCounterMode, peak memory),
#     CLIP ViT-H/14 on one 224x224 image, VAE encode of one frame, VAE temporal decode of all frames in
#     chunks; end_to_end_s = clip + encode + steps x unet + decode (as vdp bench computes it).
#       python3 bench/diffusers_yardstick.py --config svd --frames 14 --height 576 --width 1024 --cfg 1
#   pipeline: StableVideoDiffusionPipeline.from_pretrained(DIR) end to end on an image (the CPU
#     comparison on the tiny test models): total seconds and the mean time between denoising steps.
#       python3 bench/diffusers_yardstick.py --pipeline test/data/models/tiny3 --image IMG --device cpu ...
# Needs torch, diffusers (and transformers for CLIP).
import argparse, json, os, time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--config", default="svd", choices=["svd", "svd-xt"])
ap.add_argument("--frames", type=int, default=14)
ap.add_argument("--height", type=int, default=576)
ap.add_argument("--width", type=int, default=1024)
ap.add_argument("--cfg", type=int, default=1)
ap.add_argument("--steps", type=int, default=25)
ap.add_argument("--decode-chunk-size", type=int, default=0)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--device", default="cuda")
ap.add_argument("--dtype", default=None, choices=[None, "fp16", "fp32"])
ap.add_argument("--pipeline", default=None, help="a diffusers SVD folder: time the whole pipeline instead")
ap.add_argument("--image", default=None)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--unet-only", action="store_true", help="components mode: the UNet step alone (bench.sh's CPU mode)")
ap.add_argument("--warmup", type=int, default=2, help="untimed UNet steps before the timed ones")
ap.add_argument("--no-flops", action="store_true", help="skip the FLOP-counting pass (an extra UNet step)")
a = ap.parse_args()

dev = a.device
dt = {"fp16": torch.float16, "fp32": torch.float32}[a.dtype or ("fp16" if dev == "cuda" else "fp32")]
cuda = dev.startswith("cuda")
res = {"device": torch.cuda.get_device_name() if cuda else "cpu (%d threads)" % torch.get_num_threads(),
       "torch": torch.__version__, "dtype": str(dt).replace("torch.", ""), "frames": a.frames, "height": a.height,
       "width": a.width, "cfg": a.cfg, "steps": a.steps}
try:
    import diffusers
    res["diffusers"] = diffusers.__version__
except Exception:
    pass


def sync():
    if cuda:
        torch.cuda.synchronize()


LAST_RUNS = []  # the timed runs of the last timeit call, in seconds


def timeit(fn, warm=1, n=3):
    for _ in range(warm):
        fn()
    sync()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    LAST_RUNS[:] = ts
    ts = sorted(ts)
    return ts[len(ts) // 2] if len(ts) % 2 else 0.5 * (ts[len(ts) // 2 - 1] + ts[len(ts) // 2])


def peak_reset():
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib():
    return torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0


if a.pipeline:  # ---------------------------------------------------------------- whole pipeline
    import PIL.Image
    from diffusers import StableVideoDiffusionPipeline
    pipe = StableVideoDiffusionPipeline.from_pretrained(a.pipeline, variant="fp16", torch_dtype=dt).to(dev)
    pipe.set_progress_bar_config(disable=True)
    image = PIL.Image.open(a.image).convert("RGB")
    marks = []

    def on_step_end(p, i, t, kw):
        sync()
        marks.append(time.perf_counter())
        return kw

    def run():
        marks.clear()
        t0 = time.perf_counter()
        pipe(image, height=a.height, width=a.width, num_frames=a.frames, num_inference_steps=a.steps,
             min_guidance_scale=1.0, max_guidance_scale=3.0 if a.cfg else 1.0,
             decode_chunk_size=a.decode_chunk_size or None, generator=torch.Generator("cpu").manual_seed(a.seed),
             output_type="np", callback_on_step_end=on_step_end)
        sync()
        return t0, time.perf_counter()

    run()  # warm-up
    totals, per_step = [], []
    for _ in range(a.runs):
        t0, t1 = run()
        totals.append(t1 - t0)
        if len(marks) > 1:
            per_step.append((marks[-1] - marks[0]) / (len(marks) - 1))
    res.update({"mode": "pipeline", "model": a.pipeline, "runs": a.runs,
                "total_s_median": sorted(totals)[len(totals) // 2],
                "unet_ms_per_step_median": 1e3 * sorted(per_step)[len(per_step) // 2] if per_step else None})
    print(json.dumps(res))
    raise SystemExit(0)

# ------------------------------------------------------------------------------------- components
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from torch.utils.flop_counter import FlopCounterMode

if cuda:
    torch.backends.cudnn.benchmark = True
B, F, h, w = (2 if a.cfg else 1), a.frames, a.height // 8, a.width // 8
res.update({"mode": "components", "config": a.config, "B": B, "latent": [h, w]})
with torch.no_grad():
    unet = UNetSpatioTemporalConditionModel(num_frames=25 if a.config == "svd-xt" else 14).to(dev, dt).eval()
    x = torch.randn(B, F, 8, h, w, device=dev, dtype=dt)
    t = torch.full((B,), 1.0, device=dev, dtype=dt)
    enc = torch.randn(B, 1, 1024, device=dev, dtype=dt)
    ids = torch.tensor([[6.0, 127.0, 0.02]] * B, device=dev, dtype=dt)
    f = lambda: unet(x, t, enc, ids, return_dict=False)
    fc = None
    if not a.no_flops:
        with FlopCounterMode(display=False) as fc:
            f()
    peak_reset()
    s = timeit(f, a.warmup, a.runs)
    res["unet_ms_per_step_median"] = s * 1e3
    res["unet_ms_per_step_runs"] = [t * 1e3 for t in LAST_RUNS]
    res["unet_flop_per_step"] = fc.get_total_flops() if fc else None
    res["unet_tflops"] = fc.get_total_flops() / s / 1e12 if fc else None
    res["unet_peak_mib"] = peak_mib()
    del unet, x
    peak_reset()
    if a.unet_only:
        res["threads"] = torch.get_num_threads()
        if not cuda:
            import resource
            res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps(res))
        raise SystemExit(0)

    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120,
                                                          num_hidden_layers=32, num_attention_heads=16, patch_size=14,
                                                          image_size=224, projection_dim=1024,
                                                          hidden_act="gelu")).to(dev, dt).eval()
    pix = torch.randn(1, 3, 224, 224, device=dev, dtype=dt)
    res["clip_ms"] = timeit(lambda: clip(pix), 2, a.runs) * 1e3
    del clip
    peak_reset()

    vae = AutoencoderKLTemporalDecoder(block_out_channels=(128, 256, 512, 512),
                                       down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2,
                                       latent_channels=4).to(dev, dt).eval()
    img = torch.randn(1, 3, a.height, a.width, device=dev, dtype=dt)
    res["vae_encode_ms"] = timeit(lambda: vae.encode(img).latent_dist.mode(), 1, a.runs) * 1e3
    chunk = a.decode_chunk_size or F
    z = torch.randn(F, 4, h, w, device=dev, dtype=dt)

    def dec():
        for i in range(0, F, chunk):
            vae.decode(z[i:i + chunk], num_frames=min(chunk, F - i))

    peak_reset()
    res["vae_decode_ms"] = timeit(dec, 1, 2) * 1e3
    res["decode_chunk_size"] = chunk
    res["vae_decode_peak_mib"] = peak_mib()
    res["peak_device_mib"] = max(res["unet_peak_mib"], res["vae_decode_peak_mib"])
    res["end_to_end_s"] = (res["clip_ms"] + res["vae_encode_ms"] + a.steps * res["unet_ms_per_step_median"] +
                           res["vae_decode_ms"]) / 1e3
print(json.dumps(res))
