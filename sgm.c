// sgm.c — single-file SGM checkpoints: svd.safetensors, svd_xt.safetensors, svd_xt_1_1.safetensors as
// Stability's generative-models (SGM) and ComfyUI keep them, read as the diffusers tensors vdp uses.
// Reading order: after safetensors.c (the header reader) and before weights.c's `vdp convert`, which
// calls sgm_map when its source is a file instead of a pipeline folder.
//   1. the mapping: one table from the diffusers names that model.c's bind_* functions derive to the SGM
//      names, written once (rules below); nothing else knows the SGM names
//   2. what a file is: the prefixes of an SVD checkpoint, and a clean refusal of everything else
//   3. the configuration, inferred from tensor shapes (and, where the weights are silent, from facts of
//      the published models, each one printed with where it came from)
//   4. sgm_map: expected tensors -> SGM tensors, every name and shape checked, the rest accounted for
//   5. sgm_read: the elements of one mapped tensor (a view into the file, or the transposed projection)
//
// Where the SGM modules live in the file (generative-models scripts/sampling/configs/svd*.yaml):
//   model.diffusion_model.*                      VideoUNet                      -> unet.*
//   conditioner.embedders.3.encoder.{encoder,quant_conv}.*
//                                                AutoencoderKLModeOnly: the encoder SGM's sampler runs on
//                                                the conditioning image (with quant_conv, mode of the
//                                                posterior)                      -> vae.encoder.*, vae.quant_conv.*
//   first_stage_model.decoder.*                  VideoDecoder (temporal)        -> vae.decoder.*
//   conditioner.embedders.0.open_clip.model.visual.*
//                                                OpenCLIP ViT-H/14 image tower  -> image_encoder.*
// Ignored (counted and listed by prefix): the OpenCLIP text-tower leftovers (SGM deletes only its
// `transformer`), first_stage_model.encoder (the training-time encoder of the AutoencodingEngine: no
// quant_conv, which diffusers' AutoencoderKLTemporalDecoder has; SGM's sampler does not run it), the
// unused decoder side of conditioner.embedders.3, the other conditioner embedders, anything else outside
// the four modules above. An unknown tensor INSIDE them is an error.
#include "vdp.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define P_UNET "model.diffusion_model."
#define P_VENC "conditioner.embedders.3.encoder."  // + encoder.* / quant_conv.*
#define P_VDEC "first_stage_model."                // + decoder.*
#define P_CLIP "conditioner.embedders.0.open_clip.model.visual."

// ---------------------------------------------------------------------------------------------------
// 1. The mapping
// ---------------------------------------------------------------------------------------------------
// A rule maps a diffusers name pattern to an SGM name template.
//   pattern:  '#' matches a decimal index (captured as a, then b); '*' at the end matches the rest of the
//             name, copied unchanged; '@' at the end matches the rest against the rule's leaf table
//   template: '*' / '@' = the rest (as copied / as the leaf table maps it); {a} {b} the captures; and
//             the block arithmetic of the SGM modules (sgm/modules/diffusionmodules/video_model.py,
//             sgm/modules/diffusionmodules/model.py), with L levels and lpb layers per block:
//     {in}  = 1 + a*(lpb+1) + b   VideoUNet input_blocks index of down block a, resnet/attention b
//                                 (input_blocks.0 is conv_in; each level adds lpb blocks + 1 downsample)
//     {ds}  = (a+1)*(lpb+1)       the input block holding down block a's Downsample (its conv is `op`)
//     {out} = a*(lpb+1) + b       output_blocks index of up block a, resnet/attention b (lpb+1 per level)
//     {us}  = a*(lpb+1) + lpb     the output block holding up block a's Upsample ...
//     {usi} = 1 + up_attn[a]      ... at position 1 after the resnet, or 2 after resnet + transformer
//     {a1}  = a + 1               LDM's mid.block_1 / block_2
//     {lvl} = L-1-a               VAE decoder: diffusers' up_blocks run deepest first, LDM's `up` is
//                                 indexed by level
// ops: how the SGM tensor holds the diffusers one
enum {
  OP_SAME,       // same shape, same bytes
  OP_CONV1X1,    // SGM [o,i,1,1] 1x1 convolution (LDM AttnBlock q/k/v/proj_out) -> Linear [o,i]
  OP_ROWS0,      // SGM fused [3n, ...] (nn.MultiheadAttention in_proj_weight/bias, rows q|k|v) -> rows
  OP_ROWS1,      //   n..2n (k)
  OP_ROWS2,      //   2n..3n (v)
  OP_TRANSPOSE,  // SGM [in, out] (OpenCLIP `proj`, applied as x @ proj) -> Linear [out, in]
};
typedef struct {
  const char *from, *to;
  int op;
} Leaf;
typedef struct {
  const char *from, *to;
  int op;
  const Leaf *leaf;  // for '@' rules
} Rule;

// SpatioTemporalResBlock (diffusers) <- VideoResBlock (SGM VideoUNet): the spatial ResBlock is the module
// itself (in_layers = GroupNorm, SiLU, conv; out_layers = GroupNorm, SiLU, dropout, conv), the temporal one
// is its time_stack (a 3-D ResBlock with (3,1,1) kernels), the AlphaBlender its time_mixer. Both blend
// sigmoid(mix_factor)·spatial + (1-sigmoid)·temporal: the scalar is copied as is.
static const Leaf LEAF_UNET_RES[] = {
    {"spatial_res_block.norm1.*", "in_layers.0.*", OP_SAME},
    {"spatial_res_block.conv1.*", "in_layers.2.*", OP_SAME},
    {"spatial_res_block.time_emb_proj.*", "emb_layers.1.*", OP_SAME},
    {"spatial_res_block.norm2.*", "out_layers.0.*", OP_SAME},
    {"spatial_res_block.conv2.*", "out_layers.3.*", OP_SAME},
    {"spatial_res_block.conv_shortcut.*", "skip_connection.*", OP_SAME},
    {"temporal_res_block.norm1.*", "time_stack.in_layers.0.*", OP_SAME},
    {"temporal_res_block.conv1.*", "time_stack.in_layers.2.*", OP_SAME},
    {"temporal_res_block.time_emb_proj.*", "time_stack.emb_layers.1.*", OP_SAME},
    {"temporal_res_block.norm2.*", "time_stack.out_layers.0.*", OP_SAME},
    {"temporal_res_block.conv2.*", "time_stack.out_layers.3.*", OP_SAME},
    {"time_mixer.mix_factor", "time_mixer.mix_factor", OP_SAME},
    {NULL, NULL, 0}};
// TransformerSpatioTemporalModel <- SpatialVideoTransformer: the same names (norm, proj_in, proj_out,
// transformer_blocks.N with attn1/attn2/ff/norm1-3, time_mixer) except the temporal blocks (time_stack.N:
// VideoTransformerBlock = TemporalBasicTransformerBlock, same inner names) and the frame-position MLP
// (an nn.Sequential: linear, SiLU, linear).
static const Leaf LEAF_TF[] = {
    {"norm.*", "norm.*", OP_SAME},
    {"proj_in.*", "proj_in.*", OP_SAME},
    {"transformer_blocks.*", "transformer_blocks.*", OP_SAME},
    {"temporal_transformer_blocks.*", "time_stack.*", OP_SAME},
    {"time_pos_embed.linear_1.*", "time_pos_embed.0.*", OP_SAME},
    {"time_pos_embed.linear_2.*", "time_pos_embed.2.*", OP_SAME},
    {"time_mixer.mix_factor", "time_mixer.mix_factor", OP_SAME},
    {"proj_out.*", "proj_out.*", OP_SAME},
    {NULL, NULL, 0}};
// ResnetBlock2D (VAE encoder) <- LDM ResnetBlock: the 1x1 shortcut is `nin_shortcut`.
static const Leaf LEAF_VAE_RES[] = {
    {"norm1.*", "norm1.*", OP_SAME}, {"conv1.*", "conv1.*", OP_SAME},       {"norm2.*", "norm2.*", OP_SAME},
    {"conv2.*", "conv2.*", OP_SAME}, {"conv_shortcut.*", "nin_shortcut.*", OP_SAME}, {NULL, NULL, 0}};
// SpatioTemporalResBlock (temporal decoder) <- SGM temporal_ae.VideoResBlock: an LDM ResnetBlock with a
// time_stack (3-D ResBlock without timestep embedding) and its own `mix_factor` parameter. SGM blends
// sigmoid(m)·temporal + (1-sigmoid(m))·spatial; diffusers' AlphaBlender with switch_spatial_to_temporal_mix
// computes the same, so the scalar is copied as is.
static const Leaf LEAF_VAE_STRES[] = {
    {"spatial_res_block.norm1.*", "norm1.*", OP_SAME},
    {"spatial_res_block.conv1.*", "conv1.*", OP_SAME},
    {"spatial_res_block.norm2.*", "norm2.*", OP_SAME},
    {"spatial_res_block.conv2.*", "conv2.*", OP_SAME},
    {"spatial_res_block.conv_shortcut.*", "nin_shortcut.*", OP_SAME},
    {"temporal_res_block.norm1.*", "time_stack.in_layers.0.*", OP_SAME},
    {"temporal_res_block.conv1.*", "time_stack.in_layers.2.*", OP_SAME},
    {"temporal_res_block.norm2.*", "time_stack.out_layers.0.*", OP_SAME},
    {"temporal_res_block.conv2.*", "time_stack.out_layers.3.*", OP_SAME},
    {"time_mixer.mix_factor", "mix_factor", OP_SAME},
    {NULL, NULL, 0}};
// Attention (VAE mid blocks, Linear q/k/v/out) <- LDM AttnBlock (GroupNorm `norm`, 1x1 convolutions).
static const Leaf LEAF_VAE_ATTN[] = {
    {"group_norm.*", "norm.*", OP_SAME},         {"to_q.weight", "q.weight", OP_CONV1X1},
    {"to_q.bias", "q.bias", OP_SAME},            {"to_k.weight", "k.weight", OP_CONV1X1},
    {"to_k.bias", "k.bias", OP_SAME},            {"to_v.weight", "v.weight", OP_CONV1X1},
    {"to_v.bias", "v.bias", OP_SAME},            {"to_out.0.weight", "proj_out.weight", OP_CONV1X1},
    {"to_out.0.bias", "proj_out.bias", OP_SAME}, {NULL, NULL, 0}};
// CLIPEncoderLayer (transformers) <- OpenCLIP ResidualAttentionBlock (ln_1, nn.MultiheadAttention with
// the fused in_proj, ln_2, mlp.c_fc / mlp.c_proj; no layer scale in ViT-H/14).
static const Leaf LEAF_CLIP[] = {
    {"layer_norm1.*", "ln_1.*", OP_SAME},
    {"self_attn.q_proj.weight", "attn.in_proj_weight", OP_ROWS0},
    {"self_attn.k_proj.weight", "attn.in_proj_weight", OP_ROWS1},
    {"self_attn.v_proj.weight", "attn.in_proj_weight", OP_ROWS2},
    {"self_attn.q_proj.bias", "attn.in_proj_bias", OP_ROWS0},
    {"self_attn.k_proj.bias", "attn.in_proj_bias", OP_ROWS1},
    {"self_attn.v_proj.bias", "attn.in_proj_bias", OP_ROWS2},
    {"self_attn.out_proj.*", "attn.out_proj.*", OP_SAME},
    {"layer_norm2.*", "ln_2.*", OP_SAME},
    {"mlp.fc1.*", "mlp.c_fc.*", OP_SAME},
    {"mlp.fc2.*", "mlp.c_proj.*", OP_SAME},
    {NULL, NULL, 0}};

static const Rule RULES[] = {
    // UNetSpatioTemporalConditionModel <- VideoUNet (time_embed / label_emb are nn.Sequential: linear,
    // SiLU, linear; label_emb wraps its Sequential once more)
    {"unet.conv_in.*", P_UNET "input_blocks.0.0.*", OP_SAME, NULL},
    {"unet.time_embedding.linear_1.*", P_UNET "time_embed.0.*", OP_SAME, NULL},
    {"unet.time_embedding.linear_2.*", P_UNET "time_embed.2.*", OP_SAME, NULL},
    {"unet.add_embedding.linear_1.*", P_UNET "label_emb.0.0.*", OP_SAME, NULL},
    {"unet.add_embedding.linear_2.*", P_UNET "label_emb.0.2.*", OP_SAME, NULL},
    {"unet.down_blocks.#.resnets.#.@", P_UNET "input_blocks.{in}.0.@", OP_SAME, LEAF_UNET_RES},
    {"unet.down_blocks.#.attentions.#.@", P_UNET "input_blocks.{in}.1.@", OP_SAME, LEAF_TF},
    {"unet.down_blocks.#.downsamplers.0.conv.*", P_UNET "input_blocks.{ds}.0.op.*", OP_SAME, NULL},
    {"unet.mid_block.resnets.0.@", P_UNET "middle_block.0.@", OP_SAME, LEAF_UNET_RES},
    {"unet.mid_block.attentions.0.@", P_UNET "middle_block.1.@", OP_SAME, LEAF_TF},
    {"unet.mid_block.resnets.1.@", P_UNET "middle_block.2.@", OP_SAME, LEAF_UNET_RES},
    {"unet.up_blocks.#.resnets.#.@", P_UNET "output_blocks.{out}.0.@", OP_SAME, LEAF_UNET_RES},
    {"unet.up_blocks.#.attentions.#.@", P_UNET "output_blocks.{out}.1.@", OP_SAME, LEAF_TF},
    {"unet.up_blocks.#.upsamplers.0.conv.*", P_UNET "output_blocks.{us}.{usi}.conv.*", OP_SAME, NULL},
    {"unet.conv_norm_out.*", P_UNET "out.0.*", OP_SAME, NULL},
    {"unet.conv_out.*", P_UNET "out.2.*", OP_SAME, NULL},
    // AutoencoderKLTemporalDecoder: encoder + quant_conv <- conditioner.embedders.3 (LDM Encoder)
    {"vae.encoder.conv_in.*", P_VENC "encoder.conv_in.*", OP_SAME, NULL},
    {"vae.encoder.down_blocks.#.resnets.#.@", P_VENC "encoder.down.{a}.block.{b}.@", OP_SAME, LEAF_VAE_RES},
    {"vae.encoder.down_blocks.#.downsamplers.0.conv.*", P_VENC "encoder.down.{a}.downsample.conv.*", OP_SAME, NULL},
    {"vae.encoder.mid_block.resnets.#.@", P_VENC "encoder.mid.block_{a1}.@", OP_SAME, LEAF_VAE_RES},
    {"vae.encoder.mid_block.attentions.0.@", P_VENC "encoder.mid.attn_1.@", OP_SAME, LEAF_VAE_ATTN},
    {"vae.encoder.conv_norm_out.*", P_VENC "encoder.norm_out.*", OP_SAME, NULL},
    {"vae.encoder.conv_out.*", P_VENC "encoder.conv_out.*", OP_SAME, NULL},
    {"vae.quant_conv.*", P_VENC "quant_conv.*", OP_SAME, NULL},
    // ... temporal decoder <- first_stage_model.decoder (SGM VideoDecoder; conv_out is an AE3DConv: the
    // Conv2d itself plus its time_mix_conv Conv3d)
    {"vae.decoder.conv_in.*", P_VDEC "decoder.conv_in.*", OP_SAME, NULL},
    {"vae.decoder.mid_block.resnets.#.@", P_VDEC "decoder.mid.block_{a1}.@", OP_SAME, LEAF_VAE_STRES},
    {"vae.decoder.mid_block.attentions.0.@", P_VDEC "decoder.mid.attn_1.@", OP_SAME, LEAF_VAE_ATTN},
    {"vae.decoder.up_blocks.#.resnets.#.@", P_VDEC "decoder.up.{lvl}.block.{b}.@", OP_SAME, LEAF_VAE_STRES},
    {"vae.decoder.up_blocks.#.upsamplers.0.conv.*", P_VDEC "decoder.up.{lvl}.upsample.conv.*", OP_SAME, NULL},
    {"vae.decoder.conv_norm_out.*", P_VDEC "decoder.norm_out.*", OP_SAME, NULL},
    {"vae.decoder.conv_out.*", P_VDEC "decoder.conv_out.*", OP_SAME, NULL},
    {"vae.decoder.time_conv_out.*", P_VDEC "decoder.conv_out.time_mix_conv.*", OP_SAME, NULL},
    // CLIPVisionModelWithProjection <- OpenCLIP VisionTransformer (conv1 without bias, class_embedding
    // [W], positional_embedding [T,W], ln_pre, transformer.resblocks.N, ln_post, proj [W,D])
    {"image_encoder.vision_model.embeddings.patch_embedding.weight", P_CLIP "conv1.weight", OP_SAME, NULL},
    {"image_encoder.vision_model.embeddings.class_embedding", P_CLIP "class_embedding", OP_SAME, NULL},
    {"image_encoder.vision_model.embeddings.position_embedding.weight", P_CLIP "positional_embedding", OP_SAME, NULL},
    {"image_encoder.vision_model.pre_layrnorm.*", P_CLIP "ln_pre.*", OP_SAME, NULL},
    {"image_encoder.vision_model.encoder.layers.#.@", P_CLIP "transformer.resblocks.{a}.@", OP_SAME, LEAF_CLIP},
    {"image_encoder.vision_model.post_layernorm.*", P_CLIP "ln_post.*", OP_SAME, NULL},
    {"image_encoder.visual_projection.weight", P_CLIP "proj", OP_TRANSPOSE, NULL},
};
#define N_RULES ((int)(sizeof RULES / sizeof RULES[0]))

// What the block arithmetic needs of the configuration.
typedef struct {
  int unet_levels, unet_lpb, up_attn[VDP_MAX_LEVELS], vae_levels;
} MapCtx;

// Matches `name` against `pat`; fills caps (at most 2) and *rest (the text matched by a final '*'/'@').
static int pat_match(const char *pat, const char *name, int *caps, int *ncaps, const char **rest) {
  *ncaps = 0;
  *rest = NULL;
  for (;;) {
    char c = *pat;
    if (c == '*' || c == '@') {
      if (!*name) return 0;
      *rest = name;
      return 1;
    }
    if (c == '#') {
      if (*name < '0' || *name > '9' || *ncaps == 2) return 0;
      long v = 0;
      int digits = 0;
      while (*name >= '0' && *name <= '9') {
        if (++digits > 6) return 0;
        v = v * 10 + (*name++ - '0');
      }
      caps[(*ncaps)++] = (int)v;
      pat++;
      continue;
    }
    if (c != *name) return 0;
    if (!c) return 1;
    pat++, name++;
  }
}

// Writes the template with the captures and rest substituted; -1 when it does not fit or an index is
// outside the configuration.
static int expand(char *out, size_t cap, const char *tpl, const int *caps, int ncaps, const char *rest, const MapCtx *x) {
  size_t k = 0;
  int a = ncaps > 0 ? caps[0] : 0, b = ncaps > 1 ? caps[1] : 0, lpb = x->unet_lpb;
  for (const char *p = tpl; *p; p++) {
    char num[32];
    const char *ins = NULL;
    if (*p == '*' || *p == '@') ins = rest ? rest : "";
    else if (*p == '{') {
      const char *e = strchr(p, '}');
      if (!e) return -1;
      size_t n = (size_t)(e - p - 1);
      long v;
#define IS(s) (n == strlen(s) && !strncmp(p + 1, s, n))
      if (IS("a")) v = a;
      else if (IS("b")) v = b;
      else if (IS("a1")) v = a + 1;
      else if (IS("in")) v = 1 + (long)a * (lpb + 1) + b;
      else if (IS("ds")) v = (long)(a + 1) * (lpb + 1);
      else if (IS("out")) v = (long)a * (lpb + 1) + b;
      else if (IS("us")) v = (long)a * (lpb + 1) + lpb;
      else if (IS("usi")) {
        if (a < 0 || a >= x->unet_levels) return -1;
        v = 1 + x->up_attn[a];
      } else if (IS("lvl")) v = x->vae_levels - 1 - a;
      else return -1;
#undef IS
      if (v < 0) return -1;
      snprintf(num, sizeof num, "%ld", v);
      ins = num;
      p = e;
    }
    if (ins) {
      size_t n = strlen(ins);
      if (k + n >= cap) return -1;
      memcpy(out + k, ins, n);
      k += n;
    } else {
      if (k + 1 >= cap) return -1;
      out[k++] = *p;
    }
  }
  out[k] = 0;
  return 0;
}

// The SGM name and op of one diffusers name; -1 when no rule covers it.
static int map_name(const char *dname, const MapCtx *x, char *sgm, size_t cap, int *op) {
  for (int r = 0; r < N_RULES; r++) {
    int caps[2], nc;
    const char *rest;
    if (!pat_match(RULES[r].from, dname, caps, &nc, &rest)) continue;
    *op = RULES[r].op;
    if (!RULES[r].leaf) return expand(sgm, cap, RULES[r].to, caps, nc, rest, x);
    for (const Leaf *l = RULES[r].leaf; l->from; l++) {
      int lc[2], lnc;
      const char *lrest;
      if (!pat_match(l->from, rest, lc, &lnc, &lrest)) continue;
      char leaf[ST_MAX_NAME + 1];
      if (expand(leaf, sizeof leaf, l->to, lc, lnc, lrest, x)) return -1;
      *op = l->op;
      return expand(sgm, cap, RULES[r].to, caps, nc, leaf, x);
    }
    return -1;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------------
// 2. What the file is
// ---------------------------------------------------------------------------------------------------
static int has_prefix(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static int count_prefix(const StHeader *h, const char *p) {
  int n = 0;
  for (int i = 0; i < h->n; i++) n += has_prefix(h->t[i].name, p);
  return n;
}

static int count_containing(const StHeader *h, const char *prefix, const char *sub) {
  int n = 0;
  for (int i = 0; i < h->n; i++) n += has_prefix(h->t[i].name, prefix) && strstr(h->t[i].name + strlen(prefix), sub);
  return n;
}

#define ACCEPTS                                                                                                 \
  "vdp converts the SGM single-file SVD image-to-video checkpoints (svd.safetensors, svd_xt.safetensors, "    \
  "svd_xt_1_1.safetensors: model.diffusion_model.* with temporal layers, first_stage_model.decoder.* with "   \
  "time_stack, conditioner.embedders.0.open_clip.model.visual.*, conditioner.embedders.3.encoder.*) or a "    \
  "diffusers StableVideoDiffusionPipeline folder"

// Refuses what is not an SVD image-to-video checkpoint with what it looks like.
static int classify(const StHeader *h, const char *path, char *err, size_t errlen) {
  const char *looks = NULL;
  if (h->n == 0) looks = "an empty safetensors file (no tensors)";
  else if (count_containing(h, "", "lora_") || count_containing(h, "", ".lora.") || count_containing(h, "", "lora_A") ||
           count_containing(h, "", "hada_") || count_containing(h, "", "lokr_"))
    looks = "a LoRA/LyCORIS adapter (lora_* tensors), not a full model";
  else if (count_prefix(h, P_UNET)) {
    if (!count_containing(h, P_UNET, "time_stack")) {
      if (count_prefix(h, "cond_stage_model.")) looks = "a Stable Diffusion 1.x/2.x checkpoint (an image UNet without temporal layers, a cond_stage_model text encoder)";
      else if (count_prefix(h, "conditioner.embedders.1.") || count_containing(h, "conditioner.", "transformer.text_model"))
        looks = "an SDXL-style checkpoint (an image UNet without temporal layers, conditioner text encoders)";
      else looks = "an image-generation checkpoint (its UNet has no temporal layers)";
    } else if (!count_prefix(h, P_VDEC "decoder.")) {
      looks = "a video UNet without first_stage_model.decoder (no VAE decoder in the file)";
    } else if (!count_containing(h, P_VDEC "decoder.", "time_stack")) {
      looks = "an svd*_image_decoder checkpoint (first_stage_model.decoder has no temporal layers: a per-frame "
              "AutoencoderKL decoder, which vdp does not implement)";
    } else if (!count_prefix(h, P_VENC "encoder.")) {
      looks = count_prefix(h, P_VDEC "encoder.")
                  ? "an SVD-like file without conditioner.embedders.3.encoder: the conditioning-image encoder with its "
                    "quant_conv (what diffusers' vae.encoder/vae.quant_conv hold) is missing; first_stage_model.encoder "
                    "has no quant_conv and is not substituted"
                  : "a video UNet without the conditioning-image encoder conditioner.embedders.3.encoder";
    } else if (!count_prefix(h, P_CLIP)) {
      looks = "an SVD-like file without the OpenCLIP image encoder (conditioner.embedders.0.open_clip.model.visual.*)";
    }
  } else if (count_prefix(h, "down_blocks.") || count_prefix(h, "conv_in.") || count_prefix(h, "encoder.down_blocks.") ||
             count_prefix(h, "vision_model."))
    looks = "one component of a diffusers pipeline (diffusers names without a model prefix): give the pipeline folder";
  else if (count_prefix(h, "first_stage_model.") || count_prefix(h, "encoder.down.") || count_prefix(h, "decoder.up."))
    looks = "a VAE-only file (no model.diffusion_model.* UNet)";
  else looks = "no recognisable prefix (none of model.diffusion_model., first_stage_model., conditioner.embedders.)";
  if (!looks) return 0;
  return errf(err, errlen, "%s: not an SVD image-to-video checkpoint: it looks like %s. " ACCEPTS, path, looks);
}

// ---------------------------------------------------------------------------------------------------
// 3. The configuration
// ---------------------------------------------------------------------------------------------------
typedef struct {
  const StHeader *h;
  const char *path;
  FILE *log;
  char *err;
  size_t errlen;
} Inf;

// The shape of a tensor the inference needs: it must exist with ndim dims.
static const StTensor *need(Inf *f, const char *name, int ndim) {
  const StTensor *t = st_find(f->h, name);
  if (!t) {
    errf(f->err, f->errlen, "%s: tensor %s is missing (vdp reads the configuration from it)", f->path, name);
    return NULL;
  }
  if (t->ndim != ndim) {
    char d[128];
    fmt_dims(d, sizeof d, t->ndim, t->shape);
    errf(f->err, f->errlen, "%s: tensor %s has shape %s, expected %d dimensions", f->path, name, d, ndim);
    return NULL;
  }
  for (int i = 0; i < ndim; i++)
    if (t->shape[i] < 1 || t->shape[i] > 1000000) {
      char d[128];
      fmt_dims(d, sizeof d, t->ndim, t->shape);
      errf(f->err, f->errlen, "%s: tensor %s has an implausible shape %s", f->path, name, d);
      return NULL;
    }
  return t;
}

static int exists(Inf *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int exists(Inf *f, const char *fmt, ...) {
  char name[ST_MAX_NAME + 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  return st_find(f->h, name) != NULL;
}

// Highest N + 1 of names "<prefix>N." (a module list's length); 0 when there is none.
static int count_list(Inf *f, const char *prefix) {
  int n = 0;
  size_t pl = strlen(prefix);
  for (int i = 0; i < f->h->n; i++) {
    const char *s = f->h->t[i].name;
    if (strncmp(s, prefix, pl)) continue;
    s += pl;
    int v = 0, d = 0;
    while (*s >= '0' && *s <= '9' && d < 7) v = v * 10 + (*s++ - '0'), d++;
    if (d && *s == '.' && v + 1 > n) n = v + 1;
  }
  return n;
}

#define LOG(...)                                  \
  do {                                            \
    if (f->log) {                                 \
      fprintf(f->log, "convert: " __VA_ARGS__); \
      fputc('\n', f->log);                        \
    }                                             \
  } while (0)
#define FAIL(...) return errf(f->err, f->errlen, __VA_ARGS__)

static int infer_unet(Inf *f, VdpConfig *c) {
  char n[256];
  const StTensor *t;
  if (!(t = need(f, P_UNET "input_blocks.0.0.weight", 4))) return -1;
  int b0 = (int)t->shape[0];
  c->unet_in_channels = (int)t->shape[1];
  if (!(t = need(f, P_UNET "out.2.weight", 4))) return -1;
  c->unet_out_channels = (int)t->shape[0];
  if (!(t = need(f, P_UNET "label_emb.0.0.weight", 2))) return -1;
  c->unet_proj_class_in_dim = (int)t->shape[1];
  if (t->shape[1] % 6)
    FAIL("%s: %s takes %d inputs; an SVD image-to-video UNet takes 3 sinusoidal embeddings (fps, motion bucket, noise "
         "augmentation) of one even width (3 x 256 in the published models). SV3D (256 or 1280 inputs) and other "
         "conditionings are not supported",
         f->path, P_UNET "label_emb.0.0.weight", (int)t->shape[1]);
  c->unet_addition_time_embed_dim = (int)t->shape[1] / 3;
  // input_blocks: conv_in, then per level lpb resblocks and (except the last level) one Downsample (`op`).
  int nin = count_list(f, P_UNET "input_blocks."), lpb = 0;
  if (nin > VDP_MAX_LEVELS * 64) FAIL("%s: %d UNet input_blocks (vdp supports at most %d levels)", f->path, nin, VDP_MAX_LEVELS);
  while (1 + lpb < nin && !exists(f, P_UNET "input_blocks.%d.0.op.weight", 1 + lpb)) lpb++;
  if (lpb < 1) FAIL("%s: %s1 is not a resnet block", f->path, P_UNET "input_blocks.");
  // nin = 1 + L*lpb + (L-1) = L*(lpb+1)
  if (nin % (lpb + 1)) FAIL("%s: %d input_blocks do not form levels of %d resnets + 1 downsample", f->path, nin, lpb);
  int L = nin / (lpb + 1);
  if (L < 1 || L > VDP_MAX_LEVELS) FAIL("%s: %d UNet levels (vdp supports 1..%d)", f->path, L, VDP_MAX_LEVELS);
  c->unet_levels = L, c->unet_layers_per_block = lpb;
  int nout = count_list(f, P_UNET "output_blocks.");
  if (nout != L * (lpb + 1))
    FAIL("%s: %d output_blocks, expected %d (%d levels of %d resnets)", f->path, nout, L * (lpb + 1), L, lpb + 1);
  for (int i = 0; i < L; i++) {
    snprintf(n, sizeof n, P_UNET "input_blocks.%d.0.out_layers.3.weight", 1 + i * (lpb + 1));
    if (!(t = need(f, n, 4))) return -1;
    c->unet_block_out[i] = (int)t->shape[0];
    if (i < L - 1 && !exists(f, P_UNET "input_blocks.%d.0.op.weight", (i + 1) * (lpb + 1)))
      FAIL("%s: %sinput_blocks.%d.0.op.weight (level %d's downsample) is missing", f->path, P_UNET, (i + 1) * (lpb + 1), i);
    // Attention in a level's blocks: all or none (SGM puts a SpatialVideoTransformer after every resnet of
    // a level listed in attention_resolutions).
    int d = exists(f, P_UNET "input_blocks.%d.1.proj_in.weight", 1 + i * (lpb + 1));
    int u = exists(f, P_UNET "output_blocks.%d.1.proj_in.weight", (L - 1 - i) * (lpb + 1));
    c->unet_down_attn[i] = d;
    c->unet_up_attn[L - 1 - i] = u;
    for (int j = 0; j < lpb + 1; j++) {
      if (j < lpb && exists(f, P_UNET "input_blocks.%d.1.proj_in.weight", 1 + i * (lpb + 1) + j) != d)
        FAIL("%s: level %d has attention in some of its input blocks only", f->path, i);
      if (exists(f, P_UNET "output_blocks.%d.1.proj_in.weight", (L - 1 - i) * (lpb + 1) + j) != u)
        FAIL("%s: level %d has attention in some of its output blocks only", f->path, i);
    }
    int depth = 0;
    if (d) snprintf(n, sizeof n, P_UNET "input_blocks.%d.1.transformer_blocks.", 1 + i * (lpb + 1)), depth = count_list(f, n);
    else if (u) snprintf(n, sizeof n, P_UNET "output_blocks.%d.1.transformer_blocks.", (L - 1 - i) * (lpb + 1)), depth = count_list(f, n);
    if ((d || u) && depth < 1) FAIL("%s: level %d's transformer has no transformer_blocks", f->path, i);
    c->unet_transformer_layers[i] = depth ? depth : 1;
  }
  int mid = count_list(f, P_UNET "middle_block.1.transformer_blocks.");
  if (mid < 1) FAIL("%s: %s is missing (the mid block's transformer)", f->path, P_UNET "middle_block.1.transformer_blocks.0");
  if (c->unet_down_attn[L - 1] || c->unet_up_attn[0]) {
    if (mid != c->unet_transformer_layers[L - 1])
      FAIL("%s: the mid block has %d transformer blocks, level %d has %d (diffusers has one count per level)", f->path, mid, L - 1,
           c->unet_transformer_layers[L - 1]);
  } else c->unet_transformer_layers[L - 1] = mid;
  if (!(t = need(f, P_UNET "middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2))) return -1;
  int cross = (int)t->shape[1];
  for (int i = 0; i < L; i++) {
    c->unet_cross_dim[i] = cross;
    // SGM's num_head_channels: 64 in every published SVD config (not stored in the weights).
    int ch = c->unet_block_out[i], used = c->unet_down_attn[i] || c->unet_up_attn[L - 1 - i] || i == L - 1;
    if (used && (ch % 64 || ch < 64))
      FAIL("%s: level %d has attention over %d channels, not a multiple of SVD's 64-channel heads (num_head_channels 64)",
           f->path, i, ch);
    c->unet_heads[i] = ch >= 64 ? ch / 64 : 1;
  }
  c->unet_sample_size = 96;
  if (b0 != c->unet_block_out[0]) FAIL("%s: conv_in has %d channels, the first level %d", f->path, b0, c->unet_block_out[0]);
  char lv[128] = "", hd[128] = "", da[64] = "", ua[64] = "", tl[64] = "";
  for (int i = 0; i < L; i++) {
    size_t k = strlen(lv);
    snprintf(lv + k, sizeof lv - k, "%s%d", i ? "," : "", c->unet_block_out[i]);
    k = strlen(hd), snprintf(hd + k, sizeof hd - k, "%s%d", i ? "," : "", c->unet_heads[i]);
    k = strlen(da), snprintf(da + k, sizeof da - k, "%s%d", i ? "," : "", c->unet_down_attn[i]);
    k = strlen(ua), snprintf(ua + k, sizeof ua - k, "%s%d", i ? "," : "", c->unet_up_attn[i]);
    k = strlen(tl), snprintf(tl + k, sizeof tl - k, "%s%d", i ? "," : "", c->unet_transformer_layers[i]);
  }
  LOG("unet: in/out channels %d/%d (input_blocks.0.0.weight, out.2.weight); block_out_channels [%s] (out_layers.3 of each "
      "level's first resnet); %d levels of %d resnets (counted input_blocks/output_blocks)",
      c->unet_in_channels, c->unet_out_channels, lv, L, lpb);
  LOG("unet: attention down [%s] up [%s] (proj_in present); transformer_layers [%s] (transformer_blocks counted); "
      "cross_attention_dim %d (attn2.to_k.weight); addition_time_embed_dim %d = %d/3 (label_emb.0.0.weight)",
      da, ua, tl, cross, c->unet_addition_time_embed_dim, c->unet_proj_class_in_dim);
  LOG("unet: num_attention_heads [%s] = channels/64 (SGM num_head_channels 64 of the published SVD configs; not in the "
      "weights); sample_size 96 (published; unused by vdp)",
      hd);
  return 0;
}

static int infer_vae(Inf *f, VdpConfig *c) {
  char n[256];
  const StTensor *t;
  if (!(t = need(f, P_VENC "encoder.conv_in.weight", 4))) return -1;
  c->vae_in_channels = (int)t->shape[1];
  int L = count_list(f, P_VENC "encoder.down."), Ld = count_list(f, P_VDEC "decoder.up.");
  if (L < 1 || L > VDP_MAX_LEVELS) FAIL("%s: %d VAE encoder levels (vdp supports 1..%d)", f->path, L, VDP_MAX_LEVELS);
  if (Ld != L) FAIL("%s: the VAE encoder has %d levels (%sencoder.down.N), the decoder %d (%sdecoder.up.N)", f->path, L, P_VENC, Ld, P_VDEC);
  c->vae_levels = L;
  int lpb = count_list(f, P_VENC "encoder.down.0.block.");
  if (lpb < 1) FAIL("%s: %sencoder.down.0.block.0 is missing", f->path, P_VENC);
  // diffusers' TemporalDecoder has layers_per_block resnets in its mid block, LDM's decoder always 2
  // (mid.block_1, mid.block_2): only layers_per_block 2 (the published value) has the same tensors.
  if (lpb != 2)
    FAIL("%s: the VAE has %d resnets per level (%sencoder.down.0.block.N); diffusers' temporal decoder, and vdp, "
         "match LDM's 2-resnet mid block only with 2",
         f->path, lpb, P_VENC);
  c->vae_layers_per_block = lpb;
  for (int i = 0; i < L; i++) {
    snprintf(n, sizeof n, P_VENC "encoder.down.%d.block.0.conv1.weight", i);
    if (!(t = need(f, n, 4))) return -1;
    c->vae_block_out[i] = (int)t->shape[0];
  }
  if (!(t = need(f, P_VDEC "decoder.conv_in.weight", 4))) return -1;
  c->vae_latent_channels = (int)t->shape[1];
  if (!(t = need(f, P_VDEC "decoder.conv_out.weight", 4))) return -1;
  c->vae_out_channels = (int)t->shape[0];
  c->vae_norm_groups = 32;
  c->vae_scaling_factor = 0.18215f;
  c->vae_force_upcast = 1;
  char lv[128] = "";
  for (int i = 0; i < L; i++) {
    size_t k = strlen(lv);
    snprintf(lv + k, sizeof lv - k, "%s%d", i ? "," : "", c->vae_block_out[i]);
  }
  LOG("vae: encoder + quant_conv from %s (the conditioning-image encoder of SGM's sampler), temporal decoder from %sdecoder",
      P_VENC, P_VDEC);
  LOG("vae: in/out channels %d/%d, latent_channels %d (encoder.conv_in, decoder.conv_out, decoder.conv_in); block_out_channels "
      "[%s] (conv1 of each encoder level's first block); layers_per_block %d (blocks counted)",
      c->vae_in_channels, c->vae_out_channels, c->vae_latent_channels, lv, lpb);
  LOG("vae: scaling_factor 0.18215 (SGM scale_factor of the published configs), GroupNorm 32 groups, force_upcast 1 "
      "(published; not in the weights)");
  return 0;
}

static int infer_clip(Inf *f, VdpConfig *c) {
  const StTensor *t;
  if (!(t = need(f, P_CLIP "conv1.weight", 4))) return -1;
  int W = (int)t->shape[0];
  c->clip_hidden = W, c->clip_channels = (int)t->shape[1], c->clip_patch = (int)t->shape[2];
  if (t->shape[2] != t->shape[3]) FAIL("%s: %sconv1.weight has a non-square patch", f->path, P_CLIP);
  if (!(t = need(f, P_CLIP "positional_embedding", 2))) return -1;
  int64_t T = t->shape[0], G = 0;
  while ((G + 1) * (G + 1) <= T - 1) G++;
  if (G < 1 || G * G + 1 != T) FAIL("%s: %spositional_embedding has %" PRId64 " positions, not 1 + a square grid", f->path, P_CLIP, T);
  c->clip_image_size = (int)G * c->clip_patch;
  c->clip_layers = count_list(f, P_CLIP "transformer.resblocks.");
  if (c->clip_layers < 1) FAIL("%s: %stransformer.resblocks.0 is missing", f->path, P_CLIP);
  if (!(t = need(f, P_CLIP "transformer.resblocks.0.mlp.c_fc.weight", 2))) return -1;
  c->clip_intermediate = (int)t->shape[0];
  if (!(t = need(f, P_CLIP "proj", 2))) return -1;
  c->clip_projection_dim = (int)t->shape[1];
  // OpenCLIP's head width is a model-config fact, not in the weights: ViT-H-14 (width 1280) 80,
  // ViT-bigG-14 (1664) 104, everything else the CLIPVisionCfg default of 64.
  int hw = W == 1280 ? 80 : W == 1664 ? 104 : 64;
  if (W % hw) FAIL("%s: image encoder width %d is not a multiple of OpenCLIP's head width %d", f->path, W, hw);
  c->clip_heads = W / hw;
  c->clip_act = 0;  // OpenCLIP ViT-H-14: nn.GELU (exact)
  c->clip_eps = 1e-5f;
  const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  for (int i = 0; i < 3; i++) c->clip_mean[i] = mean[i], c->clip_std[i] = std[i];
  LOG("image_encoder: hidden %d, patch %d, channels %d (conv1.weight); image_size %d = %d x sqrt(%" PRId64 " - 1) "
      "(positional_embedding); %d layers (resblocks counted); intermediate %d (mlp.c_fc); projection_dim %d (proj)",
      W, c->clip_patch, c->clip_channels, c->clip_image_size, c->clip_patch, T, c->clip_layers, c->clip_intermediate,
      c->clip_projection_dim);
  LOG("image_encoder: %d heads = %d/%d (OpenCLIP head width %d%s; not in the weights); exact GELU, LayerNorm eps 1e-5, "
      "OpenAI CLIP mean/std (OpenCLIP ViT-H-14)",
      c->clip_heads, W, hw, hw, W == 1280 ? ": ViT-H-14" : W == 1664 ? ": ViT-bigG-14" : ": OpenCLIP's default");
  return 0;
}

static void infer_scheduler(Inf *f, VdpConfig *c) {
  // EDM discretisation of SGM's sampler (sigma_max 700, sigma_min 0.002, rho 7) with v-prediction and
  // continuous timesteps = diffusers' EulerDiscreteScheduler config of the published SVD repos.
  c->sched_sigma_min = 0.002f, c->sched_sigma_max = 700.0f, c->sched_num_train_timesteps = 1000;
  c->sched_v_prediction = 1, c->sched_karras = 1, c->sched_continuous = 1, c->sched_leading = 1;
  LOG("scheduler: Euler, Karras sigmas 0.002..700, v-prediction, continuous timesteps, leading (the published SVD "
      "scheduler; not in the weights)");
}

// ---------------------------------------------------------------------------------------------------
// 4. sgm_map
// ---------------------------------------------------------------------------------------------------
static int cmp_sgm(const void *a, const void *b) { return strcmp(((const SgmTensor *)a)->name, ((const SgmTensor *)b)->name); }

const SgmTensor *sgm_find(const SgmMap *m, const char *name) {
  return bsearch(name, m->t, (size_t)m->n, sizeof *m->t, name_key_cmp);
}

void sgm_map_free(SgmMap *m) {
  for (int i = 0; m->t && i < m->n; i++) free(m->t[i].transposed);
  free(m->t);
  memset(m, 0, sizeof *m);
}

// Which of the file's modules a name belongs to: 1 = mapped (must be used), 0 = ignored; *group names the
// ignored group for the log.
static int module_of(const char *s, char *group, size_t cap) {
  static const char *const mapped[] = {P_UNET, P_VDEC "decoder.", P_VENC "encoder.", P_VENC "quant_conv.", P_CLIP};
  for (int i = 0; i < 5; i++)
    if (has_prefix(s, mapped[i])) return 1;
  if (has_prefix(s, "conditioner.embedders.0.open_clip.model."))
    snprintf(group, cap, "conditioner.embedders.0.open_clip.model (OpenCLIP text-tower leftovers)");
  else if (has_prefix(s, P_VDEC "encoder."))
    snprintf(group, cap, "first_stage_model.encoder (training-time encoder without quant_conv)");
  else if (has_prefix(s, P_VENC))
    snprintf(group, cap, "conditioner.embedders.3.encoder (its unused decoder side)");
  else {
    // the first two dot-separated parts ("conditioner.embedders.5" keeps three)
    int parts = has_prefix(s, "conditioner.embedders.") ? 3 : 2;
    size_t k = 0;
    for (int p = 0; s[k] && k + 1 < cap; k++)
      if (s[k] == '.' && ++p == parts) break;
    snprintf(group, cap, "%.*s", (int)k, s);
  }
  return 0;
}

// Appends "text" to a bounded message list (the first few; the count says the rest).
typedef struct {
  int n;
  char s[1600];
} List;
static void list_add(List *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void list_add(List *l, const char *fmt, ...) {
  if (l->n++ >= 4) return;
  size_t k = strlen(l->s);
  if (k) k += (size_t)snprintf(l->s + k, sizeof l->s - k, "; ");
  if (k >= sizeof l->s) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(l->s + k, sizeof l->s - k, fmt, ap);
  va_end(ap);
}

// Maps the expected tensors of `list` whose name starts with `prefix` ("" = all) to the file's SGM tensors
// (m->t, used[] marks the file's tensors taken), collecting what is missing, misshapen or of an unsupported
// dtype. -1 only for an internal error (a diffusers name no rule covers).
typedef struct {
  List missing, shape, dtype, unexpected;
} MapDiff;
static int map_specs(const StHeader *h, const VdpSpecList *list, const char *prefix, const MapCtx *x, SgmMap *m,
                     uint8_t *used, MapDiff *df, char *err, size_t errlen) {
  List *missing = &df->missing, *shape = &df->shape, *dtype = &df->dtype;
  char last_bad[ST_MAX_NAME + 1] = "";  // q, k, v share one fused SGM tensor: report it once
  for (int i = 0; i < list->n; i++) {
    const VdpTensorSpec *e = &list->specs[i];
    if (!has_prefix(e->name, prefix)) continue;
    SgmTensor *g = &m->t[m->n++];
    snprintf(g->name, sizeof g->name, "%s", e->name);
    if (map_name(e->name, x, g->sgm, sizeof g->sgm, &g->op))
      return errf(err, errlen, "internal error: no SGM rule for the diffusers tensor %s", e->name);
    const StTensor *s = st_find(h, g->sgm);
    char es[128], fs[128];
    fmt_dims(es, sizeof es, e->ndim, e->shape);
    if (!s) {
      list_add(missing, "%s (diffusers %s)", g->sgm, e->name);
      continue;
    }
    used[s - h->t] = 1;
    fmt_dims(fs, sizeof fs, s->ndim, s->shape);
    // The shape the SGM tensor must have for the diffusers one.
    int64_t want[VDP_MAX_DIMS];
    int wn = e->ndim;
    memcpy(want, e->shape, sizeof want);
    if (g->op == OP_CONV1X1) want[wn++] = 1, want[wn++] = 1;
    else if (g->op >= OP_ROWS0 && g->op <= OP_ROWS2) want[0] *= 3;
    else if (g->op == OP_TRANSPOSE) want[0] = e->shape[1], want[1] = e->shape[0];
    int same = s->ndim == wn;
    for (int k = 0; same && k < wn; k++) same = s->shape[k] == want[k];
    if (!same) {
      if (!strcmp(last_bad, g->sgm)) continue;
      snprintf(last_bad, sizeof last_bad, "%s", g->sgm);
      char ws[128];
      fmt_dims(ws, sizeof ws, wn, want);
      list_add(shape, "%s is %s, expected %s (diffusers %s %s)", g->sgm, fs, ws, e->name, es);
      continue;
    }
    if (s->dtype < 0) {
      list_add(dtype, "%s: %s", g->sgm, s->dtype_str);
      continue;
    }
    // The view: the diffusers shape over the SGM bytes (a third of the rows for a fused projection).
    g->view = *s;
    g->view.ndim = e->ndim;
    memcpy(g->view.shape, e->shape, sizeof g->view.shape);
    if (g->op >= OP_ROWS0 && g->op <= OP_ROWS2) {
      uint64_t third = (s->end - s->begin) / 3;
      g->view.begin = s->begin + (uint64_t)(g->op - OP_ROWS0) * third;
      g->view.end = g->view.begin + third;
      g->view.numel = s->numel / 3;
    }
  }
  return 0;
}

// The SVD-XT frame default: "xt" (any case) as a word of the file name, between delimiters (start or end,
// '_', '-', '.', ' '), so svd_xt.safetensors, svd_xt_1_1 and AnimateLCM-SVD-xt count, while "next", "text",
// "extra" or "context" inside a word do not.
int sgm_name_says_xt(const char *base) {
  for (const char *p = base; (p = strcasestr(p, "xt")); p++) {
    int before = p == base || strchr("_-. ", p[-1]) != NULL, after = !p[2] || strchr("_-. ", p[2]) != NULL;
    if (before && after) return 1;
  }
  return 0;
}


// Appends the non-empty lists of a mismatch ("; 3 missing (a, b, c)") to err, which holds k characters.
static void list_mismatches(char *err, size_t errlen, size_t k, const List *const ls[4], const char *const what[4]) {
  for (int j = 0, first = 1; j < 4; j++) {
    if (!ls[j]->n || k >= errlen) continue;
    k += (size_t)snprintf(err + k, errlen - k, "%s %d %s (%s%s)", first ? "" : ";", ls[j]->n, what[j], ls[j]->s,
                          ls[j]->n > 4 ? "; ..." : "");
    first = 0;
  }
}

int sgm_map(const StHeader *h, const char *path, int num_frames, SgmMap *m, FILE *log, char *err, size_t errlen) {
  memset(m, 0, sizeof *m);
  if (classify(h, path, err, errlen)) return -1;
  Inf inf = {h, path, log, err, errlen}, *f = &inf;
  VdpConfig *c = &m->cfg;
  if (infer_unet(f, c) || infer_vae(f, c) || infer_clip(f, c)) return -1;
  infer_scheduler(f, c);
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (num_frames > 0) {
    c->unet_num_frames = num_frames;
    LOG("num_frames %d (--num-frames)", num_frames);
  } else {
    c->unet_num_frames = sgm_name_says_xt(base) ? 25 : 14;
    LOG("num_frames %d (the file name %s the word \"xt\" (delimited by the name's start or end, '_', '-', '.' or a "
        "space, as in svd_xt, svd_xt_1_1, AnimateLCM-SVD-xt): SVD-XT is trained on 25 frames, SVD on 14; --num-frames "
        "overrides)", c->unet_num_frames, c->unet_num_frames == 25 ? "holds" : "does not hold");
  }
  if (config_validate(c, err, errlen)) {
    err_prefix(err, errlen, path);
    return -1;
  }

  // Every tensor the models need for this configuration, and where the file holds it.
  VdpSpecList list = {0};
  if (model_expected_tensors(c, &list, err, errlen)) return -1;
  MapCtx x = {c->unet_levels, c->unet_layers_per_block, {0}, c->vae_levels};
  memcpy(x.up_attn, c->unet_up_attn, sizeof x.up_attn);
  m->t = calloc((size_t)list.n + 1, sizeof *m->t);
  uint8_t *used = calloc((size_t)h->n + 1, 1);
  if (!m->t || !used) {
    free(used);
    speclist_free(&list);
    sgm_map_free(m);
    return errf(err, errlen, "out of memory");
  }
  MapDiff df = {0};
  if (map_specs(h, &list, "", &x, m, used, &df, err, errlen)) {
    free(used);
    speclist_free(&list);
    sgm_map_free(m);
    return -1;
  }
  List *missing = &df.missing, *shape = &df.shape, *dtype = &df.dtype, *unexpected_l = &df.unexpected;
  speclist_free(&list);
  // Everything else: an unused tensor inside a mapped module is an error; the rest is ignored, by group.
  struct {
    char name[96];
    int n;
  } groups[16];
  int ng = 0, n_ignored = 0;
  for (int i = 0; i < h->n; i++) {
    if (used[i]) continue;
    char group[96];
    if (module_of(h->t[i].name, group, sizeof group)) {
      list_add(unexpected_l, "%s", h->t[i].name);
      continue;
    }
    n_ignored++;
    int g = 0;
    while (g < ng && strcmp(groups[g].name, group)) g++;
    if (g == ng && ng < 16) snprintf(groups[ng].name, sizeof groups[ng].name, "%s", group), groups[ng++].n = 0;
    if (g < ng) groups[g].n++;
  }
  free(used);
  if (missing->n || shape->n || dtype->n || unexpected_l->n) {
    sgm_map_free(m);
    const List *ls[4] = {missing, shape, dtype, unexpected_l};
    static const char *const what[4] = {"missing", "with the wrong shape", "of an unsupported dtype",
                                        "unexpected inside the mapped modules"};
    size_t k = (size_t)snprintf(err, errlen, "%s: SGM checkpoint does not match the configuration inferred from it:", path);
    list_mismatches(err, errlen, k, ls, what);
    return -1;
  }
  qsort(m->t, (size_t)m->n, sizeof *m->t, cmp_sgm);
  m->n_ignored = n_ignored;
  if (log) {
    fprintf(log, "convert: %s: %d tensors, %d mapped to %d diffusers tensors, %d ignored%s", path, h->n, h->n - n_ignored, m->n,
            n_ignored, ng ? ":" : "\n");
    for (int g = 0; g < ng; g++) fprintf(log, " %d %s%s", groups[g].n, groups[g].name, g + 1 < ng ? "," : "\n");
  }
  return 0;
}

// A UNet alone in SGM names (`vdp convert --unet FILE`): every tensor of cfg's UNet under
// model.diffusion_model., by the same rules and checks as sgm_map, and nothing else in the file.
int sgm_map_unet(const StHeader *h, const char *path, const VdpConfig *cfg, SgmMap *m, char *err, size_t errlen) {
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  VdpSpecList list = {0};
  if (model_expected_tensors(cfg, &list, err, errlen)) return -1;
  MapCtx x = {cfg->unet_levels, cfg->unet_layers_per_block, {0}, cfg->vae_levels};
  memcpy(x.up_attn, cfg->unet_up_attn, sizeof x.up_attn);
  m->t = calloc((size_t)list.n + 1, sizeof *m->t);
  uint8_t *used = calloc((size_t)h->n + 1, 1);
  MapDiff df = {0};
  if (!m->t || !used || map_specs(h, &list, "unet.", &x, m, used, &df, err, errlen)) {
    if (!m->t || !used) errf(err, errlen, "out of memory");
    free(used);
    speclist_free(&list);
    sgm_map_free(m);
    return -1;
  }
  speclist_free(&list);
  for (int i = 0; i < h->n; i++)
    if (!used[i]) list_add(&df.unexpected, "%s", h->t[i].name);
  free(used);
  if (df.missing.n || df.shape.n || df.dtype.n || df.unexpected.n) {
    sgm_map_free(m);
    // misshapen first: a UNet of another architecture is named by its first misshapen tensor
    const List *ls[4] = {&df.shape, &df.missing, &df.dtype, &df.unexpected};
    static const char *const what[4] = {"with the wrong shape", "missing", "of an unsupported dtype", "unexpected"};
    size_t k = (size_t)snprintf(err, errlen, "--unet %s: the UNet (SGM names, " P_UNET "*) does not match the base "
                                "model's UNet:", path);
    list_mismatches(err, errlen, k, ls, what);
    return -1;
  }
  qsort(m->t, (size_t)m->n, sizeof *m->t, cmp_sgm);
  return 0;
}

// Fuzzing entry point: a whole file in memory, header parsed, then mapped.
int sgm_parse_buffer(const uint8_t *buf, size_t len, char *err, size_t errlen) {
  StHeader h;
  if (st_parse_mem(buf, len, len, &h, err, errlen)) return -1;
  SgmMap m;
  int rc = sgm_map(&h, "fuzz_xt.safetensors", 0, &m, NULL, err, errlen);
  if (!rc) {
    volatile uint8_t sink = 0;  // touch each view's bytes: the sanitizers see a view outside the file
    for (int i = 0; i < m.n; i++)
      if (m.t[i].view.end > m.t[i].view.begin) sink ^= buf[m.t[i].view.begin] ^ buf[m.t[i].view.end - 1];
    (void)sink;
    sgm_map_free(&m);
  }
  st_header_free(&h);
  return rc;
}

// ---------------------------------------------------------------------------------------------------
// 5. sgm_read
// ---------------------------------------------------------------------------------------------------
int sgm_read(int fd, const SgmTensor *t, uint64_t e0, size_t n, void *dst) {
  const StTensor *v = &t->view;
  size_t es = v->dtype == VDP_F32 ? 4 : 2;
  if (e0 > v->numel || n > v->numel - e0) return -1;
  if (t->op != OP_TRANSPOSE) return pread_full(fd, dst, n * es, v->begin + e0 * es);
  // proj [in=R', out=C'] stored row-major; the Linear weight is [out, in]: element (o, i) = proj[i][o].
  // The whole tensor is read once, on the first chunk, and kept transposed for the next chunks (the
  // caller reads a tensor in order; the last chunk frees it): reading it again per chunk would make a
  // large projection quadratic in its size.
  SgmTensor *mt = (SgmTensor *)t;  // the cache is the map's, not part of what the view describes
  if (!mt->transposed || mt->transposed_fd != fd) {
    free(mt->transposed);
    mt->transposed = NULL;
    int64_t rows = v->shape[0], cols = v->shape[1];  // diffusers [out, in]
    uint8_t *all = malloc((size_t)v->numel * es + 1), *tr = malloc((size_t)v->numel * es + 1);
    if (!all || !tr || pread_full(fd, all, (size_t)v->numel * es, v->begin)) {
      free(all), free(tr);
      return -1;
    }
    for (uint64_t o = 0; o < (uint64_t)rows; o++)
      for (uint64_t i = 0; i < (uint64_t)cols; i++)
        memcpy(tr + (o * (uint64_t)cols + i) * es, all + (i * (uint64_t)rows + o) * es, es);
    free(all);
    mt->transposed = tr, mt->transposed_fd = fd;
  }
  memcpy(dst, mt->transposed + e0 * es, n * es);
  if (e0 + n == v->numel) free(mt->transposed), mt->transposed = NULL;  // the last chunk: done with it
  return 0;
}
