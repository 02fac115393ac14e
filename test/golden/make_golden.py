#!/usr/bin/env python3
"""Generate vdp's golden reference data with diffusers (CPU, float32, deterministic).

Run from the repository root:

    venv/bin/python test/golden/make_golden.py

(see test/golden/requirements.txt for the pinned environment). Python is only needed to
regenerate these files; vdp's build and tests read the committed results.

What it writes (everything under test/data/ except test/data/image/, which belongs to
test/golden/make_image_golden.py, called at the end when present):

  test/data/images/        deterministic structured test pictures (PNG, one RGBA PNG, one JPEG)
  test/data/models/<name>/ tiny random-weight SVD pipelines in diffusers layout
                           (model_index.json, unet/, vae/, image_encoder/, scheduler/,
                           feature_extractor/), weights ONLY as the "fp16" variant
                           (*.fp16.safetensors, like the published SVD repos) to keep the
                           fixtures small; no plain fp32 *.safetensors files (the fp32-source
                           path of the converter has its own C test writing F32 files)
  test/data/golden/<case>/ float32 .npy tensors captured from StableVideoDiffusionPipeline,
                           case.json with every call parameter and args.txt: one line
                           "<model name>\t<vdp generate flags>" (flags relative to the repo
                           root, without --model/--out/--dump)
  test/data/golden/unet_only/  one standalone UNet forward of the tiny3 model
  test/data/golden/MANIFEST.sha256  checksums of every file above (reproducibility check)
  test/data/sgm/           the single-file SGM checkpoint svd_mini.safetensors and the diffusers
                           folder svd_mini/ of the same weights, with their own MANIFEST.sha256
                           (`make_golden.py --sgm-only` writes only these; see write_sgm_fixtures)

Models:
  tiny   diffusers' own pipeline-test configuration (svd-spec.md section 6.1).
  tiny3  three UNet levels with a different head_dim per level, a 3-level VAE with
         layers_per_block 2 (so the decoder mid attention runs, vae scale factor 4) and a
         224x224 / patch-32 CLIP with exact GELU.
Every parameter is perturbed after construction (fixed seeds) so that no weight keeps its
zero / one / identity initialisation: such values would hide wrong indexing or a missing op.
Then every parameter is rounded to the nearest fp16 value (kept as float32): the fp16 files
hold exactly the weights of the float32 reference runs (asserted), so vdp loading them in
float32 must match the references with no weight-rounding error. The references are computed
in float32 with the in-memory modules; a diffusers load of the written folder
(from_pretrained(variant="fp16", dtype=torch.float32)) is checked to reproduce two of the
cases bit for bit.

Known diffusers quirk handled here: for PIL input, `_encode_image` always resizes to a
hard-coded 224x224 for CLIP (`_resize_with_antialiasing(image, (224, 224))`). With the `tiny`
model (CLIP image_size 32) that crashes. vdp resizes to the image encoder's configured
image_size instead (224 for the real SVD, so identical there). We give diffusers the same
behaviour by replacing the module-level `_resize_with_antialiasing` of the pipeline module
(looked up at call time by `_encode_image`) with a wrapper that keeps the algorithm and only
replaces the target size (224, 224) by (S, S), S = image_encoder.config.image_size. For the
tiny3 model S = 224, so the wrapper changes nothing there.

Random numbers: the pipeline is called with generator=torch.Generator("cpu").manual_seed(seed).
It draws exactly twice: #1 randn([1,3,H,W]) (noise augmentation), #2 randn([1,F,4,h,w])
(initial latents), both float32. We re-draw both from a fresh generator and assert they equal
what the pipeline drew (captured by wrapping the pipeline module's `randn_tensor`).

Tensor names per case (B' = 2 with classifier-free guidance, else 1):
  clip_pixel_values [1,3,S,S]  normalised CLIP input
  image_embeds      [1,1,D]    conditional CLIP embedding (before the CFG zeros are prepended)
  noise_aug         [1,3,H,W]  augmentation noise as drawn (before * noise_aug_strength)
  vae_input         [1,3,H,W]  preprocessed image in [-1,1] (before the noise)
  image_latents     [1,4,h,w]  VAE mean of the augmented image (before CFG / frame expansion)
  noise_latents     [1,F,4,h,w] initial latent noise as drawn (before * init_noise_sigma)
  sigmas [N+1], timesteps [N]
  latents_step_K    [1,F,4,h,w] latents after Euler step K (K = 0..N-1)
  final_latents     [1,F,4,h,w] = latents_step_{N-1}
  frames            [F,H,W,3]  output_type "np", float32 in [0,1]
  unet_in [B',F,8,h,w], unet_t [1], unet_ehs [B',1,D], unet_ids [B',3], unet_out [B',F,4,h,w]
                               arguments and output of the FIRST UNet call
  vae_decode_in     [F,4,h,w]  latents / scaling_factor, all decode chunks concatenated
  vae_decode_out    [F,3,H,W]  decoder output before postprocessing, chunks concatenated
                               (the chunking is case.json's decode_chunk_size)
"""

import copy
import hashlib
import json
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import PIL.Image
import torch

# Silence progress bars / advisory warnings before importing the libraries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import diffusers  # noqa: E402
import diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion as svd_mod  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "test" / "data"
IMAGES = DATA / "images"
MODELS = DATA / "models"
GOLDEN = DATA / "golden"

EXPECTED_VERSIONS = {"torch": "2.11.0", "diffusers": "0.40.0", "transformers": "5.3.0"}


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------

def setup_determinism():
    # One thread: CPU reductions may split work differently with another thread count, and
    # the reference numbers must not depend on the machine that regenerates them.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    for mod, want in (("torch", torch.__version__), ("diffusers", diffusers.__version__),
                      ("transformers", transformers.__version__)):
        base = want.split("+")[0]
        if base != EXPECTED_VERSIONS[mod]:
            print(f"WARNING: {mod} {want} installed, references were made with "
                  f"{EXPECTED_VERSIONS[mod]}; numbers may differ", file=sys.stderr)


def to_np(t):
    """float32, C-contiguous numpy copy of a tensor."""
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


# --------------------------------------------------------------------------------------------
# Test images
# --------------------------------------------------------------------------------------------

def make_test_image(width, height, alpha=False):
    """A structured, colourful picture: colour gradients plus a few shapes (no noise), defined
    in relative coordinates so every size shows the same scene. Returns uint8 [H,W,3 or 4]."""
    u = (np.arange(width, dtype=np.float64) + 0.5) / width      # [W] in (0,1)
    v = (np.arange(height, dtype=np.float64) + 0.5) / height    # [H]
    U, V = np.meshgrid(u, v)                                    # [H,W] each
    r = 0.15 + 0.8 * U
    g = 0.1 + 0.8 * V
    b = 0.5 + 0.45 * np.sin(2.0 * np.pi * (U + 0.5 * V))
    img = np.stack([r, g, b], axis=-1)                          # [H,W,3] in [0,1]

    # yellow disc, upper left
    disc = (U - 0.32) ** 2 + (V - 0.35) ** 2 < 0.2 ** 2
    img[disc] = (0.98, 0.85, 0.12)
    # blue rectangle, lower right
    rect = (U > 0.55) & (U < 0.9) & (V > 0.58) & (V < 0.88)
    img[rect] = (0.12, 0.25, 0.92)
    # dark diagonal stripe
    stripe = np.abs(U - V) < 0.06
    img[stripe] = img[stripe] * 0.25
    # magenta ring, upper right
    d2 = (U - 0.75) ** 2 + (V - 0.25) ** 2
    ring = (d2 > 0.1 ** 2) & (d2 < 0.16 ** 2)
    img[ring] = (0.9, 0.1, 0.7)
    # white/black checker patch, lower left
    checker = (U < 0.3) & (V > 0.7)
    cb = ((np.floor(U * width / 2) + np.floor(V * height / 2)) % 2 == 0)
    img[checker & cb] = 1.0
    img[checker & ~cb] = 0.0

    out = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    if alpha:
        # opaque on the left, fading to 25% on the right, with a fully transparent hole
        a = 255.0 - 192.0 * U
        a[(U - 0.5) ** 2 + (V - 0.5) ** 2 < 0.08 ** 2] = 0.0
        out = np.concatenate([out, np.round(a)[..., None].astype(np.uint8)], axis=-1)
    return out


def write_images():
    """Writes the input pictures; returns {name: path}. Sizes are width x height."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    files = {}
    for (w, h) in ((32, 32), (48, 40), (224, 224)):
        p = IMAGES / f"test_{w}x{h}.png"
        PIL.Image.fromarray(make_test_image(w, h), "RGB").save(p, optimize=False)
        files[p.name] = p
    p = IMAGES / "test_40x32_rgba.png"
    PIL.Image.fromarray(make_test_image(40, 32, alpha=True), "RGBA").save(p, optimize=False)
    files[p.name] = p
    p = IMAGES / "test_64x48.jpg"
    PIL.Image.fromarray(make_test_image(64, 48), "RGB").save(p, quality=90, subsampling=0,
                                                             optimize=False)
    files[p.name] = p
    return files


# --------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------

def svd_scheduler():
    # Same values as the published SVD scheduler_config.json (svd-spec.md 1.10 / 6.1).
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        interpolation_type="linear", num_train_timesteps=1000, prediction_type="v_prediction",
        sigma_max=700.0, sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
        timestep_type="continuous", trained_betas=None, use_karras_sigmas=True)


def perturb(model, seed):
    """Move every parameter away from its initial value, deterministically.

    p += 0.1 * std(p) * N(0,1); tensors that are constant (norm gains = 1, biases = 0) get
    p += 0.1 * N(0,1) instead; AlphaBlender mix_factor scalars become U(-1, 1) so that the
    sigmoid mixing weights are clearly different from 0.5 and from each other."""
    g = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mix_factor"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float32) * 2.0 - 1.0)
                continue
            s = float(p.std()) if p.numel() > 1 else 0.0
            if not s > 1e-12:
                s = 1.0
            p.add_(0.1 * s * torch.randn(p.shape, generator=g, dtype=torch.float32))


def build_tiny():
    """diffusers' pipeline-test components (tests/pipelines/stable_video_diffusion, svd-spec 6.1)."""
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32)
    scheduler = svd_scheduler()
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], latent_channels=4)
    torch.manual_seed(0)
    clip_cfg = CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=5,
                                num_attention_heads=4, image_size=32, intermediate_size=37,
                                patch_size=1)
    image_encoder = CLIPVisionModelWithProjection(clip_cfg)
    torch.manual_seed(0)
    feature_extractor = CLIPImageProcessor(crop_size=32, size=32)
    return dict(unet=unet, scheduler=scheduler, vae=vae, image_encoder=image_encoder,
                feature_extractor=feature_extractor)


def build_tiny3():
    """Three UNet levels. GroupNorm in the UNet and the VAE is hard-coded to 32 groups, so all
    channel counts are multiples of 32 (48 is impossible): UNet (32, 32, 64), so the skip
    bookkeeping of the up path sees three levels with a width change at the bottom. Heads
    (1, 2, 16) give head_dim 32, 16, 4: a different head_dim per level, including a single-head
    level. Widths are kept small because every parameter is stored in the repository (2 bytes,
fp16)."""
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=16, in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                          "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                        "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=24, num_attention_heads=(1, 2, 16),
        projection_class_embeddings_input_dim=48, addition_time_embed_dim=16, num_frames=5)
    scheduler = svd_scheduler()
    torch.manual_seed(0)
    # 3 levels -> vae_scale_factor 4; layers_per_block 2 -> the decoder mid block runs
    # res0, attn, res1 and the up blocks have 3 resnets. All widths 32 to save space (the
    # tiny VAE already has a 32 -> 64 width change with its 1x1 shortcuts).
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 32, 32], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3, latent_channels=4, layers_per_block=2,
        sample_size=32)
    torch.manual_seed(0)
    clip_cfg = CLIPVisionConfig(hidden_size=32, projection_dim=24, num_hidden_layers=2,
                                num_attention_heads=2, image_size=224, intermediate_size=40,
                                patch_size=32, hidden_act="gelu")
    image_encoder = CLIPVisionModelWithProjection(clip_cfg)
    torch.manual_seed(0)
    # Like the real SVD preprocessor config (only its mean/std are used by the pipeline).
    feature_extractor = CLIPImageProcessor(crop_size=224, size=224)
    return dict(unet=unet, scheduler=scheduler, vae=vae, image_encoder=image_encoder,
                feature_extractor=feature_extractor)


def round_to_fp16(model):
    """Round every parameter to the nearest float16 value, stored as float32.

    The fp16 variant file then holds exactly the values the fp32 reference run used, so a
    converter reading *.fp16.safetensors reproduces the float32 references without any
    weight rounding error (and only the fp16 files need to be stored)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(p.half().float())
            # exact round trip, and no overflow to inf (fp16 max 65504)
            assert torch.equal(p.half().float(), p) and torch.isfinite(p).all(), name


def save_model(name, comps, perturb_seed, root=MODELS):
    """Perturb, round to fp16-representable values, assemble the pipeline and save only the
    "fp16" variant weight files (*.fp16.safetensors), like the published SVD repos.

    Returns the float32 pipeline kept in memory; the references are computed with it. Its
    values are exactly the fp16 file values (asserted here), and one case per model is re-run
    from the files in main() (from_pretrained(variant="fp16", dtype=float32))."""
    for i, comp in enumerate(("unet", "vae", "image_encoder")):
        perturb(comps[comp], perturb_seed + 1 + i)
        round_to_fp16(comps[comp])
        comps[comp].eval()
    pipe = StableVideoDiffusionPipeline(**comps)
    out = root / name
    if out.exists():
        shutil.rmtree(out)
    # Save from an fp16 copy; the in-memory pipeline stays float32 for the reference runs.
    half = copy.deepcopy(pipe)
    half.to(torch.float16)
    half.save_pretrained(out, variant="fp16", safe_serialization=True)
    del half
    # The fp16 save records "dtype": "float16" in image_encoder/config.json; write the
    # float32 module's config over it (with the two fields transformers' model save adds) so
    # the config files stay as a float32 save writes them.
    enc_cfg = pipe.image_encoder.config
    enc_cfg.architectures = [type(pipe.image_encoder).__name__]
    enc_cfg.dtype = "float32"
    enc_cfg.save_pretrained(out / "image_encoder")

    # Sanity: the fp16 files hold exactly the in-memory float32 weights, with every name.
    from safetensors.torch import load_file
    for comp, fname in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                        ("image_encoder", "model")):
        assert not (out / comp / f"{fname}.safetensors").exists(), f"{name}/{comp}: fp32 file"
        ref = getattr(pipe, comp).state_dict()
        f16 = load_file(str(out / comp / f"{fname}.fp16.safetensors"))
        assert set(f16) == set(ref), f"{name}/{comp}: file names != state_dict names"
        for k, t in f16.items():
            assert ref[k].dtype == torch.float32 and t.dtype == torch.float16, k
            assert torch.equal(t.float(), ref[k]), f"{name}/{comp}/{k}: fp16 file != fp32 weights"
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_fp16_variant(name, pipe, root=MODELS):
    """Load the written folder like a user would (fp16 variant files, computed in float32) and
    assert it holds the same weights and configs as the in-memory pipeline."""
    loaded = StableVideoDiffusionPipeline.from_pretrained(root / name, variant="fp16",
                                                          dtype=torch.float32)
    loaded.set_progress_bar_config(disable=True)
    for comp in ("unet", "vae", "image_encoder"):
        ref, got = getattr(pipe, comp).state_dict(), getattr(loaded, comp).state_dict()
        assert set(ref) == set(got), f"{name}/{comp}: reloaded names differ"
        for k in ref:
            assert got[k].dtype == torch.float32 and torch.equal(got[k], ref[k]), \
                f"{name}/{comp}/{k}: reloaded weight differs"
    return loaded


# --------------------------------------------------------------------------------------------
# Single-file SGM checkpoints (vdp convert FILE.safetensors, sgm.c)
# --------------------------------------------------------------------------------------------
# SGM = Stability's generative-models, whose layout ComfyUI's svd.safetensors / svd_xt.safetensors
# use. The files are written here by walking diffusers' module structure and placing each module
# where SGM's constructors put the same module (sgm/modules/diffusionmodules/video_model.py
# VideoUNet, .../model.py Encoder/Decoder, sgm/modules/autoencoding/temporal_ae.py VideoDecoder,
# open_clip VisionTransformer): block counters advance like SGM's loops do, independently of the C
# table in sgm.c, which derives SGM names from diffusers names.
#
# None of the existing fixtures is a model SGM can hold with SVD's settings: SVD's VideoUNet uses
# 64-channel attention heads (tiny: 8 heads over 32 channels; tiny3: 1/2/16 heads per level),
# OpenCLIP's head width is 64 outside ViT-H/bigG (both tiny CLIPs have 32-wide towers with 4 and 2
# heads), LDM's decoder has a 2-resnet middle (tiny's VAE layers_per_block 1). So the SGM test
# model `svd_mini` follows the published SVD conventions in everything the weights do not store
# (heads of 64 channels, OpenCLIP head width 64, exact GELU, VAE layers_per_block 2, scaling factor
# 0.18215, the published scheduler and CLIP mean/std, sample_size 96, num_frames 14 for a file name
# without "xt"); its diffusers folder is written next to the SGM file, so the two convert to
# identical .vdpw files. Sizes are the smallest that keep every mapping rule's kind in use:
# two UNet levels (32 -> 64: 1x1 skip connections, a downsample, an upsample) with attention in
# the mid block only (the smallest width with a 64-channel head is 64, and each transformer of
# that width costs ~240k parameters), a 2-level VAE of width 32, a 2-layer 64-wide CLIP.
# Only the fp16 SGM file is stored (3 MB); the fp32 case is made by test/test_sgm.c, which upcasts
# it tensor by tensor without renaming anything (an fp32 copy would add 6 MB).
SGM = DATA / "sgm"
P_UNET = "model.diffusion_model."
P_VENC = "conditioner.embedders.3.encoder."
P_VDEC = "first_stage_model."
P_CLIP = "conditioner.embedders.0.open_clip.model.visual."


def build_svd_mini():
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=96, in_channels=8,
        out_channels=4, down_block_types=("DownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "UpBlockSpatioTemporal"),
        cross_attention_dim=16, num_attention_heads=(1, 1),
        projection_class_embeddings_input_dim=24, addition_time_embed_dim=8, num_frames=14)
    scheduler = svd_scheduler()
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 32], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2, latent_channels=4, layers_per_block=2,
        sample_size=32)
    torch.manual_seed(0)
    clip_cfg = CLIPVisionConfig(hidden_size=64, projection_dim=16, num_hidden_layers=2,
                                num_attention_heads=1, image_size=32, intermediate_size=128,
                                patch_size=8, hidden_act="gelu", layer_norm_eps=1e-5)
    image_encoder = CLIPVisionModelWithProjection(clip_cfg)
    torch.manual_seed(0)
    feature_extractor = CLIPImageProcessor(crop_size=32, size=32)
    return dict(unet=unet, scheduler=scheduler, vae=vae, image_encoder=image_encoder,
                feature_extractor=feature_extractor)


class SgmWriter:
    """Collects SGM-named tensors, remembering which diffusers parameters were placed, so that
    every parameter is placed exactly once (asserted by done())."""

    def __init__(self, *models):
        self.names = {}
        for prefix, m in models:
            for n, p in m.named_parameters():
                self.names[id(p)] = f"{prefix}.{n}"
        self.placed = set()
        self.out = {}

    def put(self, name, tensor, *params):
        assert name not in self.out, f"SGM name {name} written twice"
        self.out[name] = tensor.detach().clone().contiguous()
        for p in params:
            key = self.names[id(p)]
            assert key not in self.placed, f"{key} placed twice"
            self.placed.add(key)

    def param(self, name, p):
        self.put(name, p, p)

    def module(self, prefix, m, rename=()):
        """Every parameter of module m under prefix, local names renamed by (old, new) prefixes."""
        for n, p in m.named_parameters():
            for old, new in rename:
                if n.startswith(old):
                    n = new + n[len(old):]
                    break
            self.param(f"{prefix}.{n}", p)

    def done(self):
        missing = sorted(set(self.names.values()) - self.placed)
        assert not missing, f"diffusers parameters not placed in the SGM file: {missing[:5]}"
        return self.out


def sgm_video_resblock(w, prefix, r):
    """diffusers SpatioTemporalResBlock -> SGM VideoResBlock (UNet): the spatial ResBlock is the
    module itself (in_layers: GroupNorm, SiLU, conv; emb_layers: SiLU, linear; out_layers:
    GroupNorm, SiLU, dropout, conv), the temporal one its time_stack."""
    for part, pre in ((r.spatial_res_block, prefix), (r.temporal_res_block, prefix + ".time_stack")):
        w.module(f"{pre}.in_layers.0", part.norm1)
        w.module(f"{pre}.in_layers.2", part.conv1)
        w.module(f"{pre}.emb_layers.1", part.time_emb_proj)
        w.module(f"{pre}.out_layers.0", part.norm2)
        w.module(f"{pre}.out_layers.3", part.conv2)
        if getattr(part, "conv_shortcut", None) is not None:
            w.module(f"{pre}.skip_connection", part.conv_shortcut)
    w.param(f"{prefix}.time_mixer.mix_factor", r.time_mixer.mix_factor)


def sgm_video_transformer(w, prefix, t):
    """TransformerSpatioTemporalModel -> SpatialVideoTransformer: same module names except the
    temporal blocks (time_stack) and the frame-position MLP (nn.Sequential: 0 and 2)."""
    w.module(prefix, t, rename=(("temporal_transformer_blocks.", "time_stack."),
                                ("time_pos_embed.linear_1.", "time_pos_embed.0."),
                                ("time_pos_embed.linear_2.", "time_pos_embed.2.")))


def sgm_unet(w, u):
    P = P_UNET
    w.module(P + "input_blocks.0.0", u.conv_in)
    w.module(P + "time_embed.0", u.time_embedding.linear_1)
    w.module(P + "time_embed.2", u.time_embedding.linear_2)
    w.module(P + "label_emb.0.0", u.add_embedding.linear_1)
    w.module(P + "label_emb.0.2", u.add_embedding.linear_2)
    k = 1                                                 # input_blocks[0] is conv_in
    for blk in u.down_blocks:
        attns = getattr(blk, "attentions", None)
        for j, res in enumerate(blk.resnets):
            sgm_video_resblock(w, f"{P}input_blocks.{k}.0", res)
            if attns is not None:
                sgm_video_transformer(w, f"{P}input_blocks.{k}.1", attns[j])
            k += 1
        if blk.downsamplers is not None:
            w.module(f"{P}input_blocks.{k}.0.op", blk.downsamplers[0].conv)
            k += 1
    sgm_video_resblock(w, P + "middle_block.0", u.mid_block.resnets[0])
    sgm_video_transformer(w, P + "middle_block.1", u.mid_block.attentions[0])
    sgm_video_resblock(w, P + "middle_block.2", u.mid_block.resnets[1])
    k = 0
    for blk in u.up_blocks:
        attns = getattr(blk, "attentions", None)
        for j, res in enumerate(blk.resnets):
            sgm_video_resblock(w, f"{P}output_blocks.{k}.0", res)
            pos = 1
            if attns is not None:
                sgm_video_transformer(w, f"{P}output_blocks.{k}.1", attns[j])
                pos = 2
            if j == len(blk.resnets) - 1 and blk.upsamplers is not None:
                w.module(f"{P}output_blocks.{k}.{pos}.conv", blk.upsamplers[0].conv)
            k += 1
    w.module(P + "out.0", u.conv_norm_out)
    w.module(P + "out.2", u.conv_out)


def sgm_ldm_attn(w, prefix, a, norm):
    """diffusers Attention (Linear q/k/v/out) -> LDM AttnBlock (1x1 convolutions)."""
    w.module(prefix + ".norm", norm)
    for lin, name in ((a.to_q, "q"), (a.to_k, "k"), (a.to_v, "v"), (a.to_out[0], "proj_out")):
        w.put(f"{prefix}.{name}.weight", lin.weight[:, :, None, None], lin.weight)
        w.param(f"{prefix}.{name}.bias", lin.bias)


def sgm_ldm_resnet(w, prefix, r):
    for n in ("norm1", "conv1", "norm2", "conv2"):
        w.module(f"{prefix}.{n}", getattr(r, n))
    if r.conv_shortcut is not None:
        w.module(f"{prefix}.nin_shortcut", r.conv_shortcut)


def sgm_encoder(w, prefix, enc):
    w.module(prefix + ".conv_in", enc.conv_in)
    for i, blk in enumerate(enc.down_blocks):
        for j, r in enumerate(blk.resnets):
            sgm_ldm_resnet(w, f"{prefix}.down.{i}.block.{j}", r)
        if blk.downsamplers is not None:
            w.module(f"{prefix}.down.{i}.downsample.conv", blk.downsamplers[0].conv)
    mid = enc.mid_block
    sgm_ldm_resnet(w, f"{prefix}.mid.block_1", mid.resnets[0])
    a = mid.attentions[0]
    sgm_ldm_attn(w, f"{prefix}.mid.attn_1", a, a.group_norm)
    sgm_ldm_resnet(w, f"{prefix}.mid.block_2", mid.resnets[1])
    w.module(prefix + ".norm_out", enc.conv_norm_out)
    w.module(prefix + ".conv_out", enc.conv_out)


def sgm_vae_resblock(w, prefix, r):
    """SpatioTemporalResBlock (temporal decoder) -> SGM temporal_ae.VideoResBlock."""
    sgm_ldm_resnet(w, prefix, r.spatial_res_block)
    t = r.temporal_res_block
    for n, s in (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                 ("conv2", "out_layers.3")):
        w.module(f"{prefix}.time_stack.{s}", getattr(t, n))
    w.param(f"{prefix}.mix_factor", r.time_mixer.mix_factor)


def sgm_vae(w, vae):
    sgm_encoder(w, P_VENC + "encoder", vae.encoder)
    w.module(P_VENC + "quant_conv", vae.quant_conv)
    d, D = vae.decoder, P_VDEC + "decoder"
    w.module(D + ".conv_in", d.conv_in)
    sgm_vae_resblock(w, D + ".mid.block_1", d.mid_block.resnets[0])
    a = d.mid_block.attentions[0]
    sgm_ldm_attn(w, D + ".mid.attn_1", a, a.group_norm)
    sgm_vae_resblock(w, D + ".mid.block_2", d.mid_block.resnets[1])
    L = len(d.up_blocks)
    for i, blk in enumerate(d.up_blocks):                 # diffusers runs the deepest level first
        lvl = L - 1 - i
        for j, r in enumerate(blk.resnets):
            sgm_vae_resblock(w, f"{D}.up.{lvl}.block.{j}", r)
        if blk.upsamplers is not None:
            w.module(f"{D}.up.{lvl}.upsample.conv", blk.upsamplers[0].conv)
    w.module(D + ".norm_out", d.conv_norm_out)
    w.module(D + ".conv_out", d.conv_out)
    w.module(D + ".conv_out.time_mix_conv", d.time_conv_out)


def sgm_clip(w, enc):
    v, P = enc.vision_model, P_CLIP
    w.param(P + "conv1.weight", v.embeddings.patch_embedding.weight)
    w.param(P + "class_embedding", v.embeddings.class_embedding)
    w.param(P + "positional_embedding", v.embeddings.position_embedding.weight)
    w.module(P + "ln_pre", v.pre_layrnorm)
    for i, layer in enumerate(v.encoder.layers):
        R, a = f"{P}transformer.resblocks.{i}", layer.self_attn
        w.module(R + ".ln_1", layer.layer_norm1)
        qkv = (a.q_proj, a.k_proj, a.v_proj)
        w.put(R + ".attn.in_proj_weight", torch.cat([m.weight for m in qkv]), *[m.weight for m in qkv])
        w.put(R + ".attn.in_proj_bias", torch.cat([m.bias for m in qkv]), *[m.bias for m in qkv])
        w.module(R + ".attn.out_proj", a.out_proj)
        w.module(R + ".ln_2", layer.layer_norm2)
        w.module(R + ".mlp.c_fc", layer.mlp.fc1)
        w.module(R + ".mlp.c_proj", layer.mlp.fc2)
    w.module(P + "ln_post", v.post_layernorm)
    w.put(P + "proj", enc.visual_projection.weight.t(), enc.visual_projection.weight)


def sgm_state_dict(pipe, seed):
    """The SGM checkpoint of a pipeline, with what real files also hold and vdp must ignore: the
    OpenCLIP text-tower leftovers (SGM deletes only model.transformer), first_stage_model.encoder
    (the training-time encoder; here the mapped encoder's values negated, so that reading it
    instead of conditioner.embedders.3 would change the converted tensors) and the unused
    post_quant_conv of conditioner.embedders.3's AutoencoderKLModeOnly."""
    w = SgmWriter(("unet", pipe.unet), ("vae", pipe.vae), ("image_encoder", pipe.image_encoder))
    sgm_unet(w, pipe.unet)
    sgm_vae(w, pipe.vae)
    sgm_clip(w, pipe.image_encoder)
    sd = w.done()
    extra = SgmWriter(("vae", pipe.vae))
    sgm_encoder(extra, P_VDEC + "encoder", pipe.vae.encoder)
    for k, t in extra.out.items():
        sd[k] = -t
    g = torch.Generator("cpu").manual_seed(seed)
    W = pipe.image_encoder.config.hidden_size
    D = pipe.image_encoder.config.projection_dim
    T = "conditioner.embedders.0.open_clip.model."
    lat = pipe.vae.config.latent_channels
    for name, shape in ((T + "positional_embedding", [8, W]), (T + "text_projection", [W, D]),
                        (T + "logit_scale", []), (T + "token_embedding.weight", [10, W]),
                        (T + "ln_final.weight", [W]), (T + "ln_final.bias", [W]),
                        (P_VENC + "post_quant_conv.weight", [lat, lat, 1, 1]),
                        (P_VENC + "post_quant_conv.bias", [lat])):
        sd[name] = torch.randn(shape, generator=g, dtype=torch.float32).half().float()
    return sd


def write_sgm_published_header(path):
    """The safetensors header (no data) of an SGM file with the published SVD-XT shapes: the
    modules are built on the meta device with the published configurations (diffusers'
    UNetSpatioTemporalConditionModel defaults, the published VAE and CLIP configs), placed like
    write_sgm_fixtures places them, plus the leftovers with ViT-H/14's text-tower shapes.
    test/test_sgm.c pads it with a sparse data area and checks the configuration sgm.c infers
    against the published one (heads, attention pattern, depths, CLIP heads)."""
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(sample_size=96)
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
            latent_channels=4, layers_per_block=2)
        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
            patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu"))
    w = SgmWriter(("unet", unet), ("vae", vae), ("image_encoder", enc))
    sgm_unet(w, unet)
    sgm_vae(w, vae)
    sgm_clip(w, enc)
    shapes = {k: list(t.shape) for k, t in w.done().items()}
    extra = SgmWriter(("vae", vae))
    sgm_encoder(extra, P_VDEC + "encoder", vae.encoder)
    shapes.update({k: list(t.shape) for k, t in extra.out.items()})
    T = "conditioner.embedders.0.open_clip.model."
    shapes.update({T + "positional_embedding": [77, 1024], T + "text_projection": [1024, 1024],
                   T + "logit_scale": [], T + "token_embedding.weight": [49408, 1024],
                   T + "ln_final.weight": [1024], T + "ln_final.bias": [1024]})
    write_header(path, shapes)


def write_sgm_layout_case(folder):
    """Names and shapes only, for a layout the weight fixtures do not have: three UNet levels of
    3 resnets with attention in every down and up block and 2 transformer blocks per level,
    widths 64/128/128 (a 1x1 skip where the width changes); a 3-level VAE 32/64/64 (nin_shortcuts
    in the encoder and the decoder); a 128-wide, 3-layer CLIP. Writes the diffusers config files of
    the model (no weights) and svd_layout.header (an SGM safetensors header without data):
    test/test_sgm.c checks that sgm.c infers the same configuration from the header as vdp reads
    from the config files, and finds every tensor where this walker put it."""
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(
            block_out_channels=(64, 128, 128), layers_per_block=3, sample_size=96,
            down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3,
            up_block_types=("CrossAttnUpBlockSpatioTemporal",) * 3, cross_attention_dim=48,
            num_attention_heads=(1, 2, 2), transformer_layers_per_block=2,
            addition_time_embed_dim=16, projection_class_embeddings_input_dim=48, num_frames=14)
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=[32, 64, 64], down_block_types=["DownEncoderBlock2D"] * 3,
            latent_channels=4, layers_per_block=2)
        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=128, intermediate_size=200, num_attention_heads=2, num_hidden_layers=3,
            patch_size=4, image_size=16, projection_dim=48, hidden_act="gelu"))
    if folder.exists():
        shutil.rmtree(folder)
    unet.save_config(folder / "unet")
    vae.save_config(folder / "vae")
    enc.config.architectures = [type(enc).__name__]
    enc.config.save_pretrained(folder / "image_encoder")
    svd_scheduler().save_config(folder / "scheduler")
    CLIPImageProcessor(crop_size=16, size=16).save_pretrained(folder / "feature_extractor")
    write_json(folder / "model_index.json", {
        "_class_name": "StableVideoDiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"]})
    w = SgmWriter(("unet", unet), ("vae", vae), ("image_encoder", enc))
    sgm_unet(w, unet)
    sgm_vae(w, vae)
    sgm_clip(w, enc)
    write_header(folder.parent / "svd_layout.header", {k: list(t.shape) for k, t in w.done().items()})


def write_header(path, shapes):
    """A safetensors header (u64 length + JSON) for fp16 tensors of these shapes, without the data."""
    header, off = {}, 0
    for k in sorted(shapes):
        n = 2 * int(np.prod(shapes[k], dtype=np.int64))
        header[k] = {"dtype": "F16", "shape": shapes[k], "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    print(f"  {path.relative_to(REPO)}: header of {len(header)} tensors, {off / 1e9:.3f} GB of fp16 "
          f"data not stored")


def write_sgm_fixtures():
    from safetensors.torch import load_file, save_file
    print("SGM fixtures:")
    SGM.mkdir(parents=True, exist_ok=True)
    pipe = save_model("svd_mini", build_svd_mini(), perturb_seed=300, root=SGM)
    load_fp16_variant("svd_mini", pipe, root=SGM)
    n = {c: sum(p.numel() for p in getattr(pipe, c).parameters()) for c in ("unet", "vae", "image_encoder")}
    sd = sgm_state_dict(pipe, seed=301)
    path = SGM / "svd_mini.safetensors"
    save_file({k: v.half() for k, v in sd.items()}, str(path))
    back = load_file(str(path))
    for k, t in sd.items():
        assert torch.equal(back[k].float(), t), f"{k}: fp16 file value differs (not fp16-exact)"
    print(f"  svd_mini: params {n}; {path.relative_to(REPO)}: {len(sd)} tensors, "
          f"{path.stat().st_size / 1e6:.2f} MB")
    write_sgm_published_header(SGM / "svd_xt_shapes.header")
    write_sgm_layout_case(SGM / "svd_layout")
    lines = []
    for p in sorted(SGM.rglob("*")):
        if p.is_file() and p.name != "MANIFEST.sha256":
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(SGM).as_posix()}")
    (SGM / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# Capturing the pipeline internals
# --------------------------------------------------------------------------------------------

@contextmanager
def capture(pipe):
    """Installs hooks/wrappers on one pipeline run and yields the dict they fill."""
    cap = {"randn": [], "decode_in": [], "decode_out": [], "resize_sizes": []}
    S = pipe.image_encoder.config.image_size

    orig_resize = svd_mod._resize_with_antialiasing
    orig_randn = svd_mod.randn_tensor

    def resize_to_clip_size(input, size, *args, **kwargs):
        # The pipeline asks for (224, 224); vdp uses the encoder's image_size (see docstring).
        cap["resize_sizes"].append(tuple(size))
        return orig_resize(input, (S, S), *args, **kwargs)

    def randn_recording(*args, **kwargs):
        t = orig_randn(*args, **kwargs)
        cap["randn"].append(t.clone())
        return t

    svd_mod._resize_with_antialiasing = resize_to_clip_size
    svd_mod.randn_tensor = randn_recording

    def clip_pre(mod, args, kwargs):
        px = args[0] if args else kwargs["pixel_values"]
        cap["clip_pixel_values"] = px.clone()

    def clip_post(mod, args, kwargs, out):
        cap["image_embeds"] = out.image_embeds.clone()

    def unet_post(mod, args, kwargs, out):
        if "unet_in" in cap:
            return                         # keep the first denoising step only
        cap["unet_in"] = args[0].clone()
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        cap["unet_t"] = torch.as_tensor(t).reshape(1).clone()
        cap["unet_ehs"] = kwargs["encoder_hidden_states"].clone()
        cap["unet_ids"] = kwargs["added_time_ids"].clone()
        sample = out[0] if isinstance(out, tuple) else out.sample
        cap["unet_out"] = sample.clone()

    hooks = [
        pipe.image_encoder.register_forward_pre_hook(clip_pre, with_kwargs=True),
        pipe.image_encoder.register_forward_hook(clip_post, with_kwargs=True),
        pipe.unet.register_forward_hook(unet_post, with_kwargs=True),
    ]

    vp = pipe.video_processor
    orig_pre = vp.preprocess

    def preprocess_recording(*args, **kwargs):
        out = orig_pre(*args, **kwargs)
        cap["vae_input"] = out.clone()
        return out

    vae = pipe.vae
    orig_encode, orig_decode = vae.encode, vae.decode

    def encode_recording(x, *args, **kwargs):
        cap["vae_encode_in"] = x.clone()
        out = orig_encode(x, *args, **kwargs)
        cap["image_latents"] = out.latent_dist.mode().clone()
        return out

    def decode_recording(z, *args, **kwargs):
        cap["decode_in"].append(z.clone())
        out = orig_decode(z, *args, **kwargs)
        cap["decode_out"].append(out.sample.clone())
        return out

    vp.preprocess = preprocess_recording
    vae.encode, vae.decode = encode_recording, decode_recording
    try:
        yield cap
    finally:
        svd_mod._resize_with_antialiasing = orig_resize
        svd_mod.randn_tensor = orig_randn
        for h in hooks:
            h.remove()
        del vp.preprocess                 # drop the instance attributes -> class methods again
        del vae.encode, vae.decode


# --------------------------------------------------------------------------------------------
# Writing and checking
# --------------------------------------------------------------------------------------------

def save_tensors(outdir, tensors):
    outdir.mkdir(parents=True, exist_ok=True)
    for name, t in tensors.items():
        np.save(outdir / f"{name}.npy", to_np(t) if torch.is_tensor(t) else
                np.ascontiguousarray(np.asarray(t, dtype=np.float32)))


def write_json(path, obj):
    """Indented JSON with short number lists (shapes) kept on one line."""
    text = json.dumps(obj, indent=1)
    text = re.sub(r"\[\s*([-0-9.e+,\s]*?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    path.write_text(text + "\n")


def describe(name, a):
    a = np.asarray(a, dtype=np.float32)
    return (f"    {name:18s} {str(list(a.shape)):18s} min {a.min():+.4e} max {a.max():+.4e} "
            f"mean {a.mean():+.4e} std {a.std():.4e}")


def check_sane(case, tensors):
    """Reference data must be finite and informative, or comparing against it proves little."""
    for name, t in tensors.items():
        a = to_np(t)
        assert np.isfinite(a).all(), f"{case}/{name}: non-finite values"
        if a.size > 1 and name not in ("unet_t",):
            assert a.std() > 0, f"{case}/{name}: constant tensor"
    fr = to_np(tensors["frames"])
    assert fr.min() >= 0.0 and fr.max() <= 1.0, f"{case}: frames outside [0,1]"
    clipped = float(np.mean((fr <= 0.0) | (fr >= 1.0)))
    assert clipped < 0.25, f"{case}: {clipped:.1%} of the frame values are clipped"
    return clipped


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

def run_case(pipe, case, model, image_file, height, width, num_frames, num_inference_steps,
             seed, fps=7, motion_bucket_id=127, noise_aug_strength=0.02, min_guidance_scale=1.0,
             max_guidance_scale=3.0, decode_chunk_size=None, save=True):
    """Runs the pipeline once with every capture in place, checks the captured pieces against
    each other and (save=True) writes the case folder: the .npy tensors, case.json and
    args.txt. Returns the tensors {name: tensor}."""
    image = PIL.Image.open(IMAGES / image_file).convert("RGB")
    steps = {}

    def on_step_end(p, i, t, kw):
        steps[i] = kw["latents"].clone()
        return kw

    with capture(pipe) as cap:
        out = pipe(image, height=height, width=width, num_frames=num_frames,
                   num_inference_steps=num_inference_steps, min_guidance_scale=min_guidance_scale,
                   max_guidance_scale=max_guidance_scale, fps=fps,
                   motion_bucket_id=motion_bucket_id, noise_aug_strength=noise_aug_strength,
                   decode_chunk_size=decode_chunk_size,
                   generator=torch.Generator("cpu").manual_seed(seed), output_type="np",
                   callback_on_step_end=on_step_end)
    frames = out.frames                                  # numpy [1,F,H,W,3]
    F = frames.shape[1]
    chunk = decode_chunk_size if decode_chunk_size is not None else F
    vsf = pipe.vae_scale_factor
    h, w = height // vsf, width // vsf
    cfg = max_guidance_scale > 1.0
    Bp = 2 if cfg else 1
    S = pipe.image_encoder.config.image_size
    D = pipe.image_encoder.config.projection_dim

    # --- the two RNG draws, reproduced from a fresh generator and compared to the pipeline's
    assert len(cap["randn"]) == 2, f"{case}: expected 2 RNG draws, saw {len(cap['randn'])}"
    g = torch.Generator("cpu").manual_seed(seed)
    noise_aug = torch.randn([1, 3, height, width], generator=g, dtype=torch.float32)
    noise_lat = torch.randn([1, F, 4, h, w], generator=g, dtype=torch.float32)
    assert torch.equal(noise_aug, cap["randn"][0]), f"{case}: RNG draw #1 differs"
    assert torch.equal(noise_lat, cap["randn"][1]), f"{case}: RNG draw #2 differs"
    # the augmented image the VAE saw is vae_input + strength * draw #1 (same float ops)
    assert torch.equal(cap["vae_encode_in"], cap["vae_input"] + noise_aug_strength * noise_aug)
    assert cap["resize_sizes"] == [(224, 224)], cap["resize_sizes"]

    # --- consistency between captured pieces
    sched = pipe.scheduler
    sigmas, timesteps = sched.sigmas.to(torch.float32), sched.timesteps.to(torch.float32)
    assert sigmas.shape == (num_inference_steps + 1,) and timesteps.shape == (num_inference_steps,)
    assert torch.equal(cap["unet_t"], timesteps[:1])
    assert torch.equal(cap["unet_in"][-1, 0, 4:], cap["image_latents"][0]), "cond image latents"
    assert torch.equal(cap["unet_ehs"][-1], cap["image_embeds"]), "cond embedding"
    if cfg:
        assert not cap["unet_ehs"][0].any() and not cap["unet_in"][0, :, 4:].any(), "uncond zeros"
    dec_in = torch.cat(cap["decode_in"])
    dec_out = torch.cat(cap["decode_out"])
    assert len(cap["decode_in"]) == -(-F // chunk)
    # decode input = final latents times 1/scaling_factor (same expression as the pipeline)
    assert torch.equal(dec_in, 1 / pipe.vae.config.scaling_factor
                       * steps[num_inference_steps - 1].flatten(0, 1)), "vae_decode_in"
    # frames = clamp(decoded * 0.5 + 0.5, 0, 1), frames last
    post = (dec_out * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert torch.allclose(post, torch.from_numpy(frames[0]), rtol=0, atol=1e-6), "frames"

    tensors = {
        "clip_pixel_values": cap["clip_pixel_values"],                  # [1,3,S,S]
        "image_embeds": cap["image_embeds"].unsqueeze(1),              # [1,1,D]
        "noise_aug": noise_aug,                                         # [1,3,H,W]
        "vae_input": cap["vae_input"],                                  # [1,3,H,W]
        "image_latents": cap["image_latents"],                          # [1,4,h,w]
        "noise_latents": noise_lat,                                     # [1,F,4,h,w]
        "sigmas": sigmas,                                               # [N+1]
        "timesteps": timesteps,                                         # [N]
    }
    for k in range(num_inference_steps):
        tensors[f"latents_step_{k}"] = steps[k]                         # [1,F,4,h,w]
    tensors["final_latents"] = steps[num_inference_steps - 1]
    tensors["frames"] = torch.from_numpy(frames[0])                     # [F,H,W,3]
    tensors.update(unet_in=cap["unet_in"], unet_t=cap["unet_t"], unet_ehs=cap["unet_ehs"],
                   unet_ids=cap["unet_ids"], unet_out=cap["unet_out"],
                   vae_decode_in=dec_in, vae_decode_out=dec_out)

    expect = {
        "clip_pixel_values": [1, 3, S, S], "image_embeds": [1, 1, D], "noise_aug": [1, 3, height, width],
        "vae_input": [1, 3, height, width], "image_latents": [1, 4, h, w],
        "noise_latents": [1, F, 4, h, w], "frames": [F, height, width, 3],
        "unet_in": [Bp, F, 8, h, w], "unet_t": [1], "unet_ehs": [Bp, 1, D], "unet_ids": [Bp, 3],
        "unet_out": [Bp, F, 4, h, w], "vae_decode_in": [F, 4, h, w],
        "vae_decode_out": [F, 3, height, width], "final_latents": [1, F, 4, h, w],
    }
    for k, shp in expect.items():
        assert list(tensors[k].shape) == shp, f"{case}/{k}: shape {list(tensors[k].shape)} != {shp}"

    clipped = check_sane(case, tensors)
    if not save:
        return tensors
    outdir = GOLDEN / case
    save_tensors(outdir, tensors)

    meta = {
        "case": case, "model": f"test/data/models/{model}", "image": f"test/data/images/{image_file}",
        "image_mode": "PIL RGB (Image.open(...).convert('RGB'))",
        "height": height, "width": width, "num_frames": F,
        "num_frames_passed": num_frames,
        "num_inference_steps": num_inference_steps, "fps": fps,
        "motion_bucket_id": motion_bucket_id, "noise_aug_strength": noise_aug_strength,
        "added_time_ids": [fps - 1, motion_bucket_id, noise_aug_strength],
        "min_guidance_scale": min_guidance_scale, "max_guidance_scale": max_guidance_scale,
        "decode_chunk_size": chunk, "decode_chunk_size_passed": decode_chunk_size,
        "seed": seed, "generator": "torch.Generator('cpu').manual_seed(seed)",
        "output_type": "np", "dtype": "float32", "device": "cpu", "num_videos_per_prompt": 1,
        "classifier_free_guidance": cfg, "unet_batch": Bp,
        "clip_image_size": S, "clip_resize": f"diffusers' (224,224) replaced by ({S},{S}) "
                                              "(image_encoder.config.image_size), see make_golden.py",
        "vae_scale_factor": vsf, "latent_height": h, "latent_width": w,
        "init_noise_sigma": float(sched.init_noise_sigma),
        "scaling_factor": pipe.vae.config.scaling_factor,
        "frames_clipped_fraction": clipped,
        "tensors": {k: list(to_np(v).shape) for k, v in tensors.items()},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
    }
    write_json(outdir / "case.json", meta)

    # The same call as `vdp generate` flags, for the CLI end-to-end test (which adds --model,
    # --out and --dump itself): "<model name>\t<flags>" on one line. --num-frames is the
    # effective frame count (diffusers takes the UNet config's num_frames when None is passed).
    flags = [f"--image test/data/images/{image_file}", f"--height {height}", f"--width {width}",
             f"--num-frames {F}", f"--num-inference-steps {num_inference_steps}", f"--fps {fps}",
             f"--motion-bucket-id {motion_bucket_id}",
             f"--noise-aug-strength {noise_aug_strength!r}",
             f"--min-guidance-scale {float(min_guidance_scale)!r}",
             f"--max-guidance-scale {float(max_guidance_scale)!r}", f"--seed {seed}"]
    if decode_chunk_size is not None:
        flags.append(f"--decode-chunk-size {decode_chunk_size}")
    (outdir / "args.txt").write_text(f"{model}\t{' '.join(flags)}\n")

    print(f"  case {case}: model {model}, image {image_file}, {height}x{width} (HxW), F={F}, "
          f"N={num_inference_steps}, cfg={cfg}, chunk={chunk}, seed={seed}, "
          f"clipped {clipped:.2%}")
    for k, v in tensors.items():
        if k.startswith("latents_step_") and k != "latents_step_0":
            continue
        print(describe(k, to_np(v)))
    return tensors


def unet_only(pipe):
    """One standalone tiny3 UNet forward with random inputs (for debugging the UNet alone)."""
    unet = pipe.unet
    g = torch.Generator("cpu").manual_seed(1234)
    B, F, h, w = 2, 3, 16, 16
    x = torch.randn([B, F, 8, h, w], generator=g, dtype=torch.float32)
    x[:, :, 4:] *= 3.0                           # image-latent channels: larger, like VAE means
    D = unet.config.cross_attention_dim
    ehs = torch.randn([B, 1, D], generator=g, dtype=torch.float32)
    ids = torch.tensor([[6.0, 127.0, 0.02], [4.0, 60.0, 0.05]], dtype=torch.float32)
    t = torch.tensor(0.9, dtype=torch.float32)   # 0-d like the pipeline's t (~ sigma 36.6)
    with torch.no_grad():
        out = unet(x, t, encoder_hidden_states=ehs, added_time_ids=ids, return_dict=False)[0]
    tensors = {"unet_in": x, "unet_t": t.reshape(1), "unet_ehs": ehs, "unet_ids": ids,
               "unet_out": out}
    for k, v in tensors.items():
        assert torch.isfinite(v).all(), f"unet_only/{k} non-finite"
    outdir = GOLDEN / "unet_only"
    save_tensors(outdir, tensors)
    meta = {"case": "unet_only", "model": "test/data/models/tiny3", "component": "unet",
            "call": "unet(unet_in, unet_t (0-d), encoder_hidden_states=unet_ehs, "
                    "added_time_ids=unet_ids)",
            "batch": B, "num_frames": F, "latent_height": h, "latent_width": w, "seed": 1234,
            "tensors": {k: list(v.shape) for k, v in tensors.items()}}
    write_json(outdir / "case.json", meta)
    print("  case unet_only: tiny3 UNet, B'=2 F=3 16x16")
    for k, v in tensors.items():
        print(describe(k, to_np(v)))


def write_manifest():
    """sha256 of every file this script owns, so two runs can be compared byte for byte."""
    lines = []
    for root in (IMAGES, MODELS, GOLDEN):
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != "MANIFEST.sha256":
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                lines.append(f"{digest}  {p.relative_to(DATA).as_posix()}")
    (GOLDEN / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")
    return lines


def main():
    setup_determinism()
    for d in (IMAGES, GOLDEN):                 # start clean: no stale files from older runs
        if d.exists():
            shutil.rmtree(d)
    print("images:")
    for name, p in write_images().items():
        print(f"  {name} {PIL.Image.open(p).size} {PIL.Image.open(p).mode}")

    print("models:")
    tiny = save_model("tiny", build_tiny(), perturb_seed=100)
    tiny3 = save_model("tiny3", build_tiny3(), perturb_seed=200)
    for name, pipe in (("tiny", tiny), ("tiny3", tiny3)):
        n = {c: sum(p.numel() for p in getattr(pipe, c).parameters())
             for c in ("unet", "vae", "image_encoder")}
        print(f"  {name}: params {n}, vae_scale_factor {pipe.vae_scale_factor}, "
              f"clip image_size {pipe.image_encoder.config.image_size}")

    print("cases:")
    pipes = {"tiny": tiny, "tiny3": tiny3}
    # (name, model, image, height, width, other run_case arguments)
    cases = [
        # (a) tiny, CFG on, 2 frames, 2 steps
        ("tiny_cfg", "tiny", "test_32x32.png", 32, 32,
         dict(num_frames=2, num_inference_steps=2, seed=0, max_guidance_scale=2.5)),
        # (b) tiny, guidance off (batch 1 through the UNet), decode in chunks of 2 < F = 3
        ("tiny_nocfg_chunk2", "tiny", "test_32x32.png", 32, 32,
         dict(num_frames=3, num_inference_steps=3, seed=1, max_guidance_scale=1.0,
              decode_chunk_size=2)),
        # (c) tiny3, 48x40 picture -> 48x32 output (Lanczos resize for the VAE, upscale to 224
        #     for CLIP), F from the UNet config (5), non-default conditioning, chunks of 2
        ("tiny3_resize", "tiny3", "test_48x40.png", 32, 48,
         dict(num_frames=None, num_inference_steps=3, seed=7, fps=5, motion_bucket_id=60,
              noise_aug_strength=0.05, decode_chunk_size=2)),
        # (d) tiny3, 224x224 picture (CLIP input without rescaling) -> 32x32 output, F = 4
        ("tiny3_clip224", "tiny3", "test_224x224.png", 32, 32,
         dict(num_frames=4, num_inference_steps=2, seed=3, min_guidance_scale=1.2,
              max_guidance_scale=2.0)),
    ]
    results = {}
    for case, model, image, height, width, kw in cases:
        results[case] = run_case(pipes[model], case, model, image, height, width, **kw)

    # The references come from the in-memory float32 modules. Check that a user's load of the
    # written folder (fp16 variant files, computed in float32) reproduces them bit for bit:
    # the weights for every model, and the full pipeline run for one case per model.
    print("reload check (from_pretrained(variant='fp16', dtype=float32)):")
    for case in ("tiny_cfg", "tiny3_clip224"):
        _, model, image, height, width, kw = next(c for c in cases if c[0] == case)
        loaded = load_fp16_variant(model, pipes[model])
        again = run_case(loaded, case, model, image, height, width, save=False, **kw)
        assert set(again) == set(results[case]), case
        for k, t in results[case].items():
            assert torch.equal(torch.as_tensor(again[k]), torch.as_tensor(t)), \
                f"{case}/{k}: run from the fp16 files differs from the reference"
        print(f"  {case}: {len(again)} tensors identical from the written {model} folder")
        del loaded
    unet_only(tiny3)

    lines = write_manifest()
    total = sum((DATA / l.split("  ", 1)[1]).stat().st_size for l in lines)
    print(f"{len(lines)} files, {total / 1e6:.2f} MB under test/data (images, models, golden); "
          f"manifest test/data/golden/MANIFEST.sha256")

    # The image-processing references belong to another script; run it when it exists.
    img_script = Path(__file__).with_name("make_image_golden.py")
    if img_script.exists():
        sys.path.insert(0, str(img_script.parent))
        import make_image_golden  # noqa: E402
        print("running make_image_golden.main()")
        make_image_golden.main()

    # Last, so that nothing above sees a different RNG state: the SGM single-file fixtures, then the
    # AnimateLCM fixtures (which read the svd_mini folder and rewrite the manifest with their files).
    write_sgm_fixtures()
    write_lcm_fixtures()


# --------------------------------------------------------------------------------------------
# AnimateLCM-SVD-xt: a swapped UNet and the consistency sampler (vdp convert --unet, --sampler
# animatelcm; ../shared/animatelcm.md). `make_golden.py --lcm-only` writes only these fixtures.
# --------------------------------------------------------------------------------------------
LCM_BASE = SGM / "svd_mini"                                # the base pipeline (diffusers folder)
LCM_UNET = MODELS / "svd_mini_lcm_unet.safetensors"        # the swapped-in UNet, alone


class AnimateLCMSampler:
    """AnimateLCM-SVD-xt's sampler, written here from its published formulas, configured as every
    public demo configures it: AnimateLCMSVDStochasticIterativeScheduler(num_train_timesteps=40,
    sigma_min=0.002, sigma_max=700.0, sigma_data=1.0, s_noise=1.0, rho=7, clip_denoised=False).

    Checked against: the scheduler file of the AnimateLCM demo Space (wangfuyun/AnimateLCM-SVD,
    lcm_scheduler.py, class AnimateLCMSVDStochasticIterativeScheduler), read in the copy kept by
    github.com/longredzhong/ComfyUI-MimicMotionWrapper (lcm_scheduler.py at commit cdab5ea): the
    40-point Karras ramp sampled at i*(40//N)/39, sigma_N = 0 appended, timesteps
    0.25*log(sigma + 1e-44) in float64, input scaling 1/sqrt(sigma^2 + 1), c_skip = 1/(sigma^2 + 1),
    c_out = -sigma/sqrt(sigma^2 + 1), z drawn with randn_tensor(generator=None) at every step when
    there is more than one step, x_next = denoised + z * clamp(sigma_next, 0, 700),
    init_noise_sigma = sqrt(700^2 + 1); and against the N = 4 values of ../shared/animatelcm.md
    (asserted in lcm_check_schedule). Every draw is recorded (self.z) for the fixtures."""

    order = 1
    POINTS, SIGMA_MIN, SIGMA_MAX, RHO = 40, 0.002, 700.0, 7.0

    def __init__(self):
        self.init_noise_sigma = (self.SIGMA_MAX ** 2 + 1) ** 0.5
        self.z = []

    def set_timesteps(self, num_inference_steps, device=None):
        n = num_inference_steps
        assert 1 <= n <= self.POINTS
        r = self.POINTS // n
        ramp = np.arange(n, dtype=np.int64) * r / (self.POINTS - 1)        # float64, from sigma_max
        lo, hi = self.SIGMA_MIN ** (1 / self.RHO), self.SIGMA_MAX ** (1 / self.RHO)
        sig64 = (hi + ramp * (lo - hi)) ** self.RHO
        self.timesteps = torch.from_numpy(0.25 * np.log(sig64 + 1e-44))     # float64
        self.sigmas = torch.from_numpy(np.concatenate([sig64, [0.0]]).astype(np.float32))
        self.num_inference_steps = n
        self.step_index = 0
        self.z = []

    def scale_model_input(self, sample, timestep):
        sigma = self.sigmas[self.step_index]
        return sample / ((sigma ** 2 + 1.0) ** 0.5)

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        from diffusers.utils.torch_utils import randn_tensor
        sigma, sigma_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        c_skip = 1.0 / (sigma ** 2 + 1.0)
        c_out = -sigma / (sigma ** 2 + 1.0) ** 0.5
        denoised = c_out * model_output + c_skip * sample
        if self.num_inference_steps > 1:
            z = randn_tensor(model_output.shape, dtype=model_output.dtype, device=model_output.device,
                             generator=generator)
        else:
            z = torch.zeros_like(model_output)
        self.z.append(z.clone())
        prev = denoised + z * sigma_next.clamp(min=0, max=self.SIGMA_MAX)
        self.step_index += 1
        return diffusers.schedulers.scheduling_utils.SchedulerOutput(prev_sample=prev)


def lcm_check_schedule():
    s = AnimateLCMSampler()
    s.set_timesteps(4)
    want_sigma = [700.0, 128.5637, 13.67844, 0.4968784, 0.0]
    want_t = [1.63777, 1.21411, 0.65396, -0.17485]
    for got, want in zip(s.sigmas.tolist(), want_sigma):
        assert abs(got - want) <= 1e-6 * max(1.0, abs(want)) * 10, (got, want)
    for got, want in zip(s.timesteps.tolist(), want_t):
        assert abs(got - want) < 1e-5, (got, want)
    assert s.init_noise_sigma == (700.0 ** 2 + 1) ** 0.5


def lcm_unet():
    """The UNet to swap in: the svd_mini architecture with other weights (fp32, not fp16-exact, so a
    conversion that rounds shows), saved alone with diffusers' state_dict names like
    AnimateLCM-SVD-xt.safetensors."""
    from safetensors.torch import save_file
    unet = build_svd_mini()["unet"]
    perturb(unet, 400)
    unet.eval()
    sd = {k: v.detach().contiguous() for k, v in unet.state_dict().items()}
    save_file(sd, str(LCM_UNET))
    print(f"  {LCM_UNET.relative_to(REPO)}: {len(sd)} tensors, fp32, "
          f"{LCM_UNET.stat().st_size / 1e6:.2f} MB")
    return sd


def run_lcm_case(pipe, case, image_file, height, width, num_frames, num_inference_steps, seed,
                 min_guidance_scale, max_guidance_scale, decode_chunk_size=None, fps=7,
                 motion_bucket_id=80, noise_aug_strength=0.02):
    """One pipeline run with the AnimateLCM sampler and generator=torch.manual_seed(seed) as the demo
    calls it (the default generator: noise_aug, the initial latents and every step's z are
    consecutive draws of one stream). Writes the case folder like run_case, plus step_noise_K."""
    image = PIL.Image.open(IMAGES / image_file).convert("RGB")
    sched = pipe.scheduler
    steps = {}

    def on_step_end(p, i, t, kw):
        steps[i] = kw["latents"].clone()
        return kw

    with capture(pipe) as cap:
        out = pipe(image, height=height, width=width, num_frames=num_frames,
                   num_inference_steps=num_inference_steps, min_guidance_scale=min_guidance_scale,
                   max_guidance_scale=max_guidance_scale, fps=fps,
                   motion_bucket_id=motion_bucket_id, noise_aug_strength=noise_aug_strength,
                   decode_chunk_size=decode_chunk_size, generator=torch.manual_seed(seed),
                   output_type="np", callback_on_step_end=on_step_end)
    frames = out.frames
    F = frames.shape[1]
    N = num_inference_steps
    chunk = decode_chunk_size if decode_chunk_size is not None else F
    vsf = pipe.vae_scale_factor
    h, w = height // vsf, width // vsf
    cfg = max_guidance_scale > 1.0

    # The one stream, re-drawn from a fresh generator: noise_aug, initial latents, then z per step.
    assert len(cap["randn"]) == 2, f"{case}: expected 2 pipeline draws, saw {len(cap['randn'])}"
    g = torch.Generator("cpu").manual_seed(seed)
    noise_aug = torch.randn([1, 3, height, width], generator=g, dtype=torch.float32)
    noise_lat = torch.randn([1, F, 4, h, w], generator=g, dtype=torch.float32)
    assert torch.equal(noise_aug, cap["randn"][0]), f"{case}: noise_aug draw differs"
    assert torch.equal(noise_lat, cap["randn"][1]), f"{case}: initial latent draw differs"
    assert len(sched.z) == N
    for k in range(N):
        zk = torch.randn([1, F, 4, h, w], generator=g, dtype=torch.float32) if N > 1 else \
            torch.zeros([1, F, 4, h, w])
        assert torch.equal(zk, sched.z[k]), f"{case}: z of step {k} is not the stream's next draw"
    assert cap["resize_sizes"] == [(224, 224)], cap["resize_sizes"]
    assert torch.equal(cap["unet_t"].float(), sched.timesteps[:1].float())
    dec_in, dec_out = torch.cat(cap["decode_in"]), torch.cat(cap["decode_out"])
    assert len(cap["decode_in"]) == -(-F // chunk)
    assert torch.equal(dec_in, 1 / pipe.vae.config.scaling_factor * steps[N - 1].flatten(0, 1))

    tensors = {
        "clip_pixel_values": cap["clip_pixel_values"], "image_embeds": cap["image_embeds"].unsqueeze(1),
        "noise_aug": noise_aug, "vae_input": cap["vae_input"], "image_latents": cap["image_latents"],
        "noise_latents": noise_lat, "sigmas": sched.sigmas, "timesteps": sched.timesteps.float(),
    }
    for k in range(N):
        if N > 1:
            tensors[f"step_noise_{k}"] = sched.z[k]                       # [1,F,4,h,w]
        tensors[f"latents_step_{k}"] = steps[k]
    tensors["final_latents"] = steps[N - 1]
    tensors["frames"] = torch.from_numpy(frames[0])
    tensors.update(unet_in=cap["unet_in"], unet_t=cap["unet_t"].float(), unet_ehs=cap["unet_ehs"],
                   unet_ids=cap["unet_ids"], unet_out=cap["unet_out"],
                   vae_decode_in=dec_in, vae_decode_out=dec_out)
    clipped = check_sane(case, tensors)
    outdir = GOLDEN / case
    save_tensors(outdir, tensors)
    convert_args = f"--unet {LCM_UNET.relative_to(REPO).as_posix()} --sampler animatelcm"
    meta = {
        "case": case, "model": f"{LCM_BASE.relative_to(REPO).as_posix()}", "convert_args": convert_args,
        "sampler": "animatelcm", "image": f"test/data/images/{image_file}",
        "height": height, "width": width, "num_frames": F, "num_inference_steps": N, "fps": fps,
        "motion_bucket_id": motion_bucket_id, "noise_aug_strength": noise_aug_strength,
        "min_guidance_scale": min_guidance_scale, "max_guidance_scale": max_guidance_scale,
        "decode_chunk_size": chunk, "seed": seed,
        "generator": "torch.manual_seed(seed) (the default generator, as the AnimateLCM demo)",
        "scheduler": "AnimateLCMSampler of make_golden.py (AnimateLCM-SVD's published sampler)",
        "unet": "unet.load_state_dict(safetensors " + LCM_UNET.name + ", strict=True)",
        "output_type": "np", "dtype": "float32", "device": "cpu", "classifier_free_guidance": cfg,
        "init_noise_sigma": float(sched.init_noise_sigma), "frames_clipped_fraction": clipped,
        "tensors": {k: list(to_np(v).shape) for k, v in tensors.items()},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
    }
    write_json(outdir / "case.json", meta)
    # No --sampler flag: the converted file records animatelcm and generate must take it from there.
    flags = [f"--image test/data/images/{image_file}", f"--height {height}", f"--width {width}",
             f"--num-frames {F}", f"--num-inference-steps {N}", f"--fps {fps}",
             f"--motion-bucket-id {motion_bucket_id}", f"--noise-aug-strength {noise_aug_strength!r}",
             f"--min-guidance-scale {float(min_guidance_scale)!r}",
             f"--max-guidance-scale {float(max_guidance_scale)!r}", f"--seed {seed}"]
    if decode_chunk_size is not None:
        flags.append(f"--decode-chunk-size {decode_chunk_size}")
    (outdir / "args.txt").write_text(f"svd_mini_lcm\t{' '.join(flags)}\n")
    print(f"  case {case}: svd_mini + {LCM_UNET.name}, {height}x{width}, F={F}, N={N}, cfg={cfg}, "
          f"chunk={chunk}, seed={seed}, clipped {clipped:.2%}")
    for k in ("sigmas", "timesteps", "latents_step_0", "final_latents", "frames"):
        print(describe(k, to_np(tensors[k])))


def write_lcm_fixtures():
    print("AnimateLCM fixtures:")
    lcm_check_schedule()
    sd = lcm_unet()
    pipe = StableVideoDiffusionPipeline.from_pretrained(LCM_BASE, variant="fp16", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    base_sd = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.unet.load_state_dict(sd, strict=True)                  # as the demos load AnimateLCM
    assert any(not torch.equal(base_sd[k], sd[k]) for k in sd), "the swapped UNet equals the base"
    pipe.unet.eval()
    pipe.scheduler = AnimateLCMSampler()
    cases = [
        # 4 steps with guidance on (the demo's 1.0 -> 1.2), z at every step
        ("lcm_cfg4", "test_32x32.png", 32, 32, dict(num_frames=3, num_inference_steps=4, seed=11,
                                                    min_guidance_scale=1.0, max_guidance_scale=1.2)),
        # 1 step: no z drawn; guidance off (batch 1)
        ("lcm_1step", "test_32x32.png", 32, 32, dict(num_frames=2, num_inference_steps=1, seed=12,
                                                     min_guidance_scale=1.0, max_guidance_scale=1.0)),
        # an odd step count (r = 40 // 3 = 13), a resized picture, decode chunks of 2 < F = 3
        ("lcm_3step_chunk2", "test_48x40.png", 32, 48,
         dict(num_frames=3, num_inference_steps=3, seed=13, min_guidance_scale=1.0,
              max_guidance_scale=1.2, decode_chunk_size=2)),
    ]
    for case, image, height, width, kw in cases:
        run_lcm_case(pipe, case, image, height, width, **kw)
    write_manifest()


if __name__ == "__main__":
    if sys.argv[1:] == ["--sgm-only"]:
        setup_determinism()
        write_sgm_fixtures()
    elif sys.argv[1:] == ["--lcm-only"]:
        setup_determinism()
        write_lcm_fixtures()
    elif sys.argv[1:]:
        sys.exit("usage: make_golden.py [--sgm-only | --lcm-only]")
    else:
        main()
