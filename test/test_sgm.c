// test_sgm.c — single-file SGM checkpoints (sgm.c) against the diffusers folder of the same model.
// test/data/sgm/svd_mini.safetensors and test/data/sgm/svd_mini/ are written by test/golden/make_golden.py
// from one set of weights (the SGM file by walking diffusers' modules, independently of sgm.c's table).
//   1. the SGM file (fp16, and an fp32 copy made here) and the folder convert to .vdpw files whose
//      tensors are byte-identical name by name, with the same configuration
//   2. the frame count default (file name with / without "xt" as a word) and its override; a transposed
//      tensor (OpenCLIP's proj) read in chunks reads the file once
//   3. malformed and non-SVD files: each one clean error naming what is wrong, no output left behind
//   4. the configuration inferred from the published SVD / SVD-XT shapes (test/data/sgm/svd_xt_shapes.header,
//      a header without data, padded here with a sparse data area) is the published one; that of another
//      layout (svd_layout.header) is the one its diffusers config files give
//   5. `vdp convert --unet` (AnimateLCM-SVD-xt's UNet swap): the base's own UNet given back, in diffusers or
//      SGM names and over either base, converts byte-identical to the base alone; another UNet replaces
//      exactly the unet.* tensors and --sampler is recorded; missing, extra, misshapen tensors, a VAE or
//      CLIP file, a whole checkpoint, a non-SVD base: each a clean refusal naming it, nothing written
#include "vdp.h"
#include "test/check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"  // config_preset: the published configurations

int vdpw_convert(const char *src_dir, const char *out_path, int out_dtype, int variant, int verbose, char *err,
                 size_t errlen);
int vdpw_convert_src(const char *src, const char *out_path, int out_dtype, int variant, int num_frames, int verbose,
                     char *err, size_t errlen);
int config_to_text(const VdpConfig *c, char **text, size_t *len);
typedef struct {
  int out_dtype, variant, num_frames, verbose;
  const char *unet;
  int sampler;
} ConvertOpts;  // weights.c
int vdpw_convert_opts(const char *src, const char *out_path, const ConvertOpts *o, char *err, size_t errlen);

static const char *SGM_FILE = "test/data/sgm/svd_mini.safetensors", *SGM_DIR = "test/data/sgm/svd_mini";
static char g_tmp[256];

static const char *tmp(const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s/%s", g_tmp, name);
  return b;
}

// ---------------------------------------------------------------------------------------------------
// Rewriting a safetensors file: every tensor as (name, dtype, shape, bytes), edited, packed again.
// ---------------------------------------------------------------------------------------------------
typedef struct {
  char name[ST_MAX_NAME + 1];
  char dtype[12];
  int ndim;
  int64_t shape[VDP_MAX_DIMS];
  uint8_t *data;
  size_t nbytes;
  int drop;
} Ed;
typedef struct {
  Ed *t;
  int n;
} Eds;

static int load_eds(const char *path, Eds *e) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return -1;
  fseek(fp, 0, SEEK_END);
  long size = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  uint8_t *buf = malloc((size_t)size);
  size_t got = fread(buf, 1, (size_t)size, fp);
  fclose(fp);
  StHeader h;
  char err[512];
  if (got != (size_t)size || st_parse_mem(buf, (size_t)size, (uint64_t)size, &h, err, sizeof err)) {
    free(buf);
    return -1;
  }
  e->n = h.n;
  e->t = calloc((size_t)h.n + 8, sizeof *e->t);  // room for added tensors
  for (int i = 0; i < h.n; i++) {
    Ed *d = &e->t[i];
    const StTensor *s = &h.t[i];
    snprintf(d->name, sizeof d->name, "%s", s->name);
    snprintf(d->dtype, sizeof d->dtype, "%s", s->dtype_str);
    d->ndim = s->ndim;
    memcpy(d->shape, s->shape, sizeof d->shape);
    d->nbytes = (size_t)(s->end - s->begin);
    d->data = malloc(d->nbytes + 1);
    memcpy(d->data, buf + s->begin, d->nbytes);
  }
  st_header_free(&h);
  free(buf);
  return 0;
}

static void free_eds(Eds *e) {
  for (int i = 0; i < e->n; i++) free(e->t[i].data);
  free(e->t);
  memset(e, 0, sizeof *e);
}

static Ed *ed_find(Eds *e, const char *name) {
  for (int i = 0; i < e->n; i++)
    if (!strcmp(e->t[i].name, name)) return &e->t[i];
  return NULL;
}

static Ed *ed_add(Eds *e, const char *name, const char *dtype, int ndim, const int64_t *shape) {
  Ed *d = &e->t[e->n++];
  memset(d, 0, sizeof *d);
  snprintf(d->name, sizeof d->name, "%s", name);
  snprintf(d->dtype, sizeof d->dtype, "%s", dtype);
  d->ndim = ndim;
  size_t n = strcmp(dtype, "F32") ? 2 : 4;
  for (int k = 0; k < ndim; k++) d->shape[k] = shape[k], n *= (size_t)shape[k];
  d->nbytes = n;
  d->data = calloc(n + 1, 1);
  return d;
}

static int write_eds(const char *path, const Eds *e) {
  size_t cap = 1 << 20, k = 0;
  char *js = malloc(cap);
  uint64_t off = 0;
  k += (size_t)snprintf(js + k, cap - k, "{");
  for (int i = 0, first = 1; i < e->n; i++) {
    const Ed *d = &e->t[i];
    if (d->drop) continue;
    if (k + 512 > cap) js = realloc(js, cap *= 2);
    k += (size_t)snprintf(js + k, cap - k, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", first ? "" : ",", d->name, d->dtype);
    for (int j = 0; j < d->ndim; j++) k += (size_t)snprintf(js + k, cap - k, "%s%lld", j ? "," : "", (long long)d->shape[j]);
    k += (size_t)snprintf(js + k, cap - k, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                          (unsigned long long)(off + d->nbytes));
    off += d->nbytes;
    first = 0;
  }
  k += (size_t)snprintf(js + k, cap - k, "}");
  while (k % 8) js[k++] = ' ';
  FILE *fp = fopen(path, "wb");
  if (!fp) return -1;
  uint64_t hl = k;
  int bad = fwrite(&hl, 8, 1, fp) != 1 || fwrite(js, 1, k, fp) != k;
  for (int i = 0; i < e->n && !bad; i++)
    if (!e->t[i].drop) bad = fwrite(e->t[i].data, 1, e->t[i].nbytes, fp) != e->t[i].nbytes;
  free(js);
  return fclose(fp) || bad ? -1 : 0;
}

// F16 -> F32 (exact), nothing renamed: the fp32 checkpoint of the same weights.
static void upcast(Eds *e) {
  for (int i = 0; i < e->n; i++) {
    Ed *d = &e->t[i];
    if (strcmp(d->dtype, "F16")) continue;
    size_t n = d->nbytes / 2;
    float *f = malloc(4 * n + 1);
    for (size_t j = 0; j < n; j++) {
      uint16_t h;
      memcpy(&h, d->data + 2 * j, 2);
      f[j] = half_to_float(h);
    }
    free(d->data);
    d->data = (uint8_t *)f;
    d->nbytes = 4 * n;
    strcpy(d->dtype, "F32");
  }
}

// ---------------------------------------------------------------------------------------------------
// 1. SGM file == diffusers folder
// ---------------------------------------------------------------------------------------------------
// Tensors of two .vdpw files, name by name: returns how many are identical (dtype, shape, bytes); the
// first difference goes to why.
static int same_tensors(const char *a, const char *b, int *n, char *why, size_t wl) {
  VdpFile fa, fb;
  char err[1024];
  why[0] = 0;
  if (vdpw_open(a, &fa, err, sizeof err)) return snprintf(why, wl, "%s", err), -1;
  if (vdpw_open(b, &fb, err, sizeof err)) return vdpw_close(&fa), snprintf(why, wl, "%s", err), -1;
  int same = 0;
  *n = fa.n_tensors;
  if (fa.n_tensors != fb.n_tensors) snprintf(why, wl, "%d vs %d tensors", fa.n_tensors, fb.n_tensors);
  for (int i = 0; i < fa.n_tensors; i++) {
    const VdpTensor *x = &fa.tensors[i], *y = vdpw_find(&fb, x->name);
    int eq = y && x->dtype == y->dtype && x->ndim == y->ndim && x->nbytes == y->nbytes &&
             !memcmp(x->shape, y->shape, sizeof x->shape) && !memcmp(x->data, y->data, x->nbytes);
    if (eq) same++;
    else if (!why[0]) snprintf(why, wl, "first difference: %s%s", x->name, y ? "" : " (absent)");
  }
  char *ta, *tb;
  size_t la, lb;
  config_to_text(&fa.cfg, &ta, &la);
  config_to_text(&fb.cfg, &tb, &lb);
  if ((la != lb || memcmp(ta, tb, la)) && !why[0]) snprintf(why, wl, "configurations differ");
  if (la != lb || memcmp(ta, tb, la)) same = -1;
  free(ta), free(tb);
  vdpw_close(&fa), vdpw_close(&fb);
  return same;
}

static void test_same_as_folder(void) {
  char err[4096], why[600];
  int n = 0;
  // The fp32 SGM file: the fp16 one upcast tensor by tensor (make_golden.py stores only fp16).
  Eds e = {0};
  int have = !load_eds(SGM_FILE, &e);
  check(have, "sgm_fixture_read", "%s: %d tensors", SGM_FILE, e.n);
  if (!have) return;
  upcast(&e);
  check(!write_eds(tmp("svd_mini_fp32.safetensors"), &e), "sgm_fp32_copy", "written");
  free_eds(&e);
  char fp32[512];
  snprintf(fp32, sizeof fp32, "%s", tmp("svd_mini_fp32.safetensors"));
  const char *srcs[2] = {SGM_FILE, fp32};
  for (int d = 0; d < 2; d++) {
    int dt = d ? VDP_F32 : VDP_F16;
    const char *dn = d ? "fp32" : "fp16";
    char ref[64];
    snprintf(ref, sizeof ref, "folder_%s.vdpw", dn);
    if (vdpw_convert(SGM_DIR, tmp(ref), dt, 0, 0, err, sizeof err)) {
      check(0, "sgm_folder_convert", "%s", err);
      continue;
    }
    for (int s = 0; s < 2; s++) {
      char out[64], name[64];
      snprintf(out, sizeof out, "sgm%d_%s.vdpw", s, dn);
      snprintf(name, sizeof name, "sgm_%s_source_to_%s", s ? "fp32" : "fp16", dn);
      if (vdpw_convert_src(srcs[s], tmp(out), dt, 0, 0, 0, err, sizeof err)) {
        check(0, name, "convert failed: %s", err);
        continue;
      }
      int same = same_tensors(tmp(out), tmp(ref), &n, why, sizeof why);
      check(same == n && n > 0, name, "%d of %d tensors byte-identical to the folder's, same configuration %s", same, n, why);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// 2. Frame count
// ---------------------------------------------------------------------------------------------------
static void test_num_frames(void) {
  char err[4096];
  char abs[4096];
  if (!realpath(SGM_FILE, abs)) {
    check(0, "sgm_num_frames", "realpath %s failed", SGM_FILE);
    return;
  }
  const struct {
    const char *name;
    int override, want;
  } cases[] = {{"svd_mini.safetensors", 0, 14}, {"svd_mini_xt.safetensors", 0, 25}, {"SVD_XT_1_1.safetensors", 0, 25},
               {"svd_mini_xt.safetensors", 9, 9},
               // "xt" as a word of the name only (issue 20): not inside "context", "next", "text", "extra"
               {"AnimateLCM-SVD-xt.safetensors", 0, 25}, {"svd xt.safetensors", 0, 25}, {"xt.safetensors", 0, 25},
               {"svd_context_fix.safetensors", 0, 14}, {"next.safetensors", 0, 14}, {"text_svd.safetensors", 0, 14},
               {"svd_extra.safetensors", 0, 14}, {"svd_xtra.safetensors", 0, 14}};
  for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
    const char *p = tmp(cases[i].name);
    unlink(p);
    if (symlink(abs, p)) {
      check(0, "sgm_num_frames", "symlink %s", p);
      continue;
    }
    StFile f;
    SgmMap m;
    int rc = st_open(p, &f, err, sizeof err);
    if (!rc) rc = sgm_map(&f.h, p, cases[i].override, &m, NULL, err, sizeof err);
    check(!rc && m.cfg.unet_num_frames == cases[i].want, "sgm_num_frames", "%s%s: %d (want %d) %s", cases[i].name,
          cases[i].override ? " --num-frames 9" : "", rc ? -1 : m.cfg.unet_num_frames, cases[i].want, rc ? err : "");
    if (!rc) sgm_map_free(&m), st_close(&f);
    unlink(p);
  }
}

// ---------------------------------------------------------------------------------------------------
// 3. Malformed and non-SVD files
// ---------------------------------------------------------------------------------------------------
// Converts `file` and expects a clean failure whose message holds every string in want (NULL-ended),
// and no output (nor its temporary) left behind.
static void expect_fail(const char *name, const char *file, const char *const *want) {
  char err[4096] = "";
  const char *out = tmp("bad.vdpw");
  char outtmp[600];
  snprintf(outtmp, sizeof outtmp, "%s.tmp", out);
  int rc = vdpw_convert_src(file, out, VDP_F16, 0, 0, 0, err, sizeof err);
  int has = 1;
  const char *miss = "";
  for (int i = 0; want[i]; i++)
    if (!strstr(err, want[i])) has = 0, miss = want[i];
  struct stat st;
  int left = !stat(out, &st) || !stat(outtmp, &st);
  check(rc == -1 && has && !left, name, "%s%s%s| %.600s", rc ? "" : "succeeded! ", has ? "" : "message lacks: ", miss, err);
  unlink(out);
}

typedef void (*EditFn)(Eds *e);
static void edit_case(const char *name, EditFn fn, const char *const *want) {
  Eds e = {0};
  if (load_eds(SGM_FILE, &e)) {
    check(0, name, "cannot read %s", SGM_FILE);
    return;
  }
  fn(&e);
  char file[128];
  snprintf(file, sizeof file, "%s.safetensors", name);
  if (write_eds(tmp(file), &e)) check(0, name, "cannot write %s", tmp(file));
  else expect_fail(name, tmp(file), want);
  free_eds(&e);
  unlink(tmp(file));
}

#define U "model.diffusion_model."
#define C "conditioner.embedders.0.open_clip.model.visual."
static void drop_unet_tensor(Eds *e) { ed_find(e, U "middle_block.1.transformer_blocks.0.attn1.to_q.weight")->drop = 1; }
static void reshape_in_proj(Eds *e) {
  Ed *d = ed_find(e, C "transformer.resblocks.1.attn.in_proj_weight");  // [192, 64] -> [64, 192]: same bytes
  int64_t t = d->shape[0];
  d->shape[0] = d->shape[1], d->shape[1] = t;
}
static void rename_all(Eds *e) {
  for (int i = 0; i < e->n; i++) {
    char n[ST_MAX_NAME + 1];
    snprintf(n, sizeof n, "net.%.150s", e->t[i].name + (strchr(e->t[i].name, '.') ? strchr(e->t[i].name, '.') - e->t[i].name + 1 : 0));
    strcpy(e->t[i].name, n);
  }
}
static void unexpected_unet_tensor(Eds *e) {
  ed_add(e, U "input_blocks.1.0.extra_norm.weight", "F16", 1, (const int64_t[]){32});
}
static void image_decoder(Eds *e) {  // a per-frame decoder: no time_stack / mix_factor / time_mix_conv
  for (int i = 0; i < e->n; i++)
    if (!strncmp(e->t[i].name, "first_stage_model.decoder.", 26) &&
        (strstr(e->t[i].name, "time_stack") || strstr(e->t[i].name, "mix_factor") || strstr(e->t[i].name, "time_mix")))
      e->t[i].drop = 1;
}
static void no_conditioning_encoder(Eds *e) {
  for (int i = 0; i < e->n; i++)
    if (!strncmp(e->t[i].name, "conditioner.embedders.3.", 24)) e->t[i].drop = 1;
}
static void sv3d_like(Eds *e) {  // label_emb.0.0.weight [128, 24] -> [24, 128]: 128 inputs
  Ed *d = ed_find(e, U "label_emb.0.0.weight");
  int64_t t = d->shape[0];
  d->shape[0] = d->shape[1], d->shape[1] = t;
}
static void sd15_like(Eds *e) {  // an image UNet with a CLIP text encoder: no temporal layers anywhere
  for (int i = 0; i < e->n; i++) e->t[i].drop = 1;
  ed_add(e, U "input_blocks.0.0.weight", "F16", 4, (const int64_t[]){32, 4, 3, 3});
  ed_add(e, U "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", "F16", 2, (const int64_t[]){32, 32});
  ed_add(e, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "F16", 2, (const int64_t[]){16, 8});
  ed_add(e, "first_stage_model.decoder.conv_in.weight", "F16", 4, (const int64_t[]){32, 4, 3, 3});
}
static void lora_like(Eds *e) {
  for (int i = 0; i < e->n; i++) e->t[i].drop = 1;
  ed_add(e, "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "F16", 2, (const int64_t[]){4, 32});
  ed_add(e, "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", "F16", 2, (const int64_t[]){32, 4});
  ed_add(e, "lora_unet_down_blocks_0_attentions_0_proj_in.alpha", "F16", 0, NULL);
}
static void bad_dtype(Eds *e) {  // an integer tensor where a weight must be
  Ed *d = ed_find(e, U "out.2.bias");
  strcpy(d->dtype, "I16");
}

static void test_malformed(void) {
  edit_case("sgm_missing_unet_tensor", drop_unet_tensor,
            (const char *const[]){"1 missing", U "middle_block.1.transformer_blocks.0.attn1.to_q.weight",
                                  "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight", NULL});
  edit_case("sgm_misshapen_in_proj", reshape_in_proj,
            (const char *const[]){"wrong shape", C "transformer.resblocks.1.attn.in_proj_weight is [64,192], expected [192,64]",
                                  "self_attn.", NULL});
  edit_case("sgm_no_prefix", rename_all, (const char *const[]){"not an SVD image-to-video checkpoint", "no recognisable prefix", NULL});
  edit_case("sgm_unexpected_tensor", unexpected_unet_tensor,
            (const char *const[]){"1 unexpected", U "input_blocks.1.0.extra_norm.weight", NULL});
  edit_case("sgm_image_decoder", image_decoder, (const char *const[]){"svd*_image_decoder", "vdp converts", NULL});
  edit_case("sgm_no_embedders3", no_conditioning_encoder,
            (const char *const[]){"conditioner.embedders.3.encoder", "quant_conv", NULL});
  edit_case("sgm_sv3d_label_emb", sv3d_like, (const char *const[]){"label_emb.0.0.weight takes 128 inputs", "SV3D", NULL});
  edit_case("sgm_sd15_like", sd15_like, (const char *const[]){"Stable Diffusion 1.x/2.x", "vdp converts", NULL});
  edit_case("sgm_lora_like", lora_like, (const char *const[]){"LoRA", NULL});
  edit_case("sgm_bad_dtype", bad_dtype, (const char *const[]){"unsupported dtype", U "out.2.bias", NULL});
  // Not a safetensors file at all, and a file that is not there.
  expect_fail("sgm_not_safetensors", "README.md", (const char *const[]){"README.md", NULL});
  expect_fail("sgm_absent_file", tmp("absent.safetensors"), (const char *const[]){"absent.safetensors", NULL});
}

// ---------------------------------------------------------------------------------------------------
// 4. Published shapes
// ---------------------------------------------------------------------------------------------------
static void first_diff(const char *a, const char *b, char *out, size_t n) {
  while (*a && *a == *b) a++, b++;
  snprintf(out, n, "inferred '%.60s' vs published '%.60s'", a, b);
}

// Pads an SGM header without data (make_golden.py) into a sparse file named `name` and maps it.
static int map_header(const char *hdr, const char *name, StFile *f, SgmMap *m, char *err, size_t errlen) {
  FILE *fp = fopen(hdr, "rb");
  uint8_t *buf = NULL;
  long len = 0;
  if (fp) {
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)len + 1);
    if (fread(buf, 1, (size_t)len, fp) != (size_t)len) len = 0;
    fclose(fp);
  }
  StHeader h;
  if (!len || st_parse_mem(buf, (size_t)len, (uint64_t)len + (16ull << 30), &h, err, errlen)) {
    if (!len) snprintf(err, errlen, "%s: cannot read", hdr);
    free(buf);
    return -1;
  }
  uint64_t end = h.data_start;
  for (int i = 0; i < h.n; i++)
    if (h.t[i].end > end) end = h.t[i].end;
  st_header_free(&h);
  const char *p = tmp(name);
  fp = fopen(p, "wb");
  int bad = !fp || fwrite(buf, 1, (size_t)len, fp) != (size_t)len;
  if (fp) bad |= fclose(fp) != 0;
  free(buf);
  if (bad || truncate(p, (off_t)end)) {  // sparse: the data area takes no space
    snprintf(err, errlen, "cannot write %s", p);
    return -1;
  }
  int rc = st_open(p, f, err, errlen);
  if (!rc && (rc = sgm_map(&f->h, p, 0, m, NULL, err, errlen))) st_close(f);
  unlink(p);
  return rc;
}

// The inferred configuration against the expected one, as their .vdpw texts.
static void check_config(const char *name, const char *what, const StFile *f, const SgmMap *m, const VdpConfig *want) {
  char *ta, *tb, why[200] = "";
  size_t la, lb;
  config_to_text(&m->cfg, &ta, &la);
  config_to_text(want, &tb, &lb);
  int same = la == lb && !memcmp(ta, tb, la);
  if (!same) first_diff(ta, tb, why, sizeof why);
  check(same, name, "%d tensors (%d mapped to diffusers names and shapes, %d ignored): the inferred configuration %s %s %s",
        f->h.n, m->n, m->n_ignored, same ? "is" : "is NOT", what, why);
  free(ta), free(tb);
}

// The published SVD-XT shapes (as svd_xt.safetensors and as svd.safetensors: 25 / 14 frames) give the
// published configurations (model.c config_preset: heads 5,10,20,20, CLIP 16 heads, ...).
static void test_published_shapes(void) {
  const char *names[2] = {"svd_xt.safetensors", "svd.safetensors"}, *presets[2] = {"svd-xt", "svd"};
  for (int k = 0; k < 2; k++) {
    char err[4096], what[64];
    StFile f;
    SgmMap m;
    if (map_header("test/data/sgm/svd_xt_shapes.header", names[k], &f, &m, err, sizeof err)) {
      check(0, "sgm_published_shapes", "%s: %s", names[k], err);
      continue;
    }
    VdpConfig want;
    config_preset(presets[k], &want);
    snprintf(what, sizeof what, "the published %s one (as %s)", presets[k], names[k]);
    check_config("sgm_published_shapes", what, &f, &m, &want);
    sgm_map_free(&m);
    st_close(&f);
  }
}

// A layout the weight fixtures lack (3 levels of 3 resnets, attention in every block, 2 transformer
// blocks, width changes in the VAE): the configuration of its diffusers config files.
static void test_layout_case(void) {
  char err[4096];
  StFile f;
  SgmMap m;
  VdpConfig want;
  if (config_from_diffusers("test/data/sgm/svd_layout", &want, err, sizeof err)) {
    check(0, "sgm_layout_case", "%s", err);
    return;
  }
  if (map_header("test/data/sgm/svd_layout.header", "svd_layout.safetensors", &f, &m, err, sizeof err)) {
    check(0, "sgm_layout_case", "%s", err);
    return;
  }
  check_config("sgm_layout_case", "the one of test/data/sgm/svd_layout/*/config.json", &f, &m, &want);
  sgm_map_free(&m);
  st_close(&f);
}

// sgm_read of a transposed tensor (OpenCLIP's `proj`) in 1M-element chunks, as `vdp convert` reads it:
// the file's bytes are read once (counted by the kernel in /proc/self/io), not once per chunk, and the
// values come out transposed. The fixture's own proj mapping, pointed at a larger made-up tensor.
static uint64_t rchar(void) {
  FILE *f = fopen("/proc/self/io", "r");
  char line[128];
  uint64_t v = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "rchar:", 6)) v = strtoull(line + 6, NULL, 10);
  if (f) fclose(f);
  return v;
}

static void test_transposed_read_once(void) {
  char err[512];
  StFile f;
  SgmMap m;
  if (st_open(SGM_FILE, &f, err, sizeof err) || sgm_map(&f.h, SGM_FILE, 0, &m, NULL, err, sizeof err)) {
    check(0, "sgm_transposed_read_once", "%s", err);
    return;
  }
  SgmTensor t = *sgm_find(&m, "image_encoder.visual_projection.weight");
  const int64_t out = 2048, in = 4096;  // diffusers [out, in] over an SGM proj [in, out]: 16 MiB of fp16
  const char *path = tmp("proj.bin");
  FILE *fp = fopen(path, "wb");
  uint16_t *row = malloc(sizeof(uint16_t) * out);
  for (int64_t i = 0; fp && i < in; i++) {  // proj[i][o] = (i * 7 + o) mod 65521, as 16-bit values
    for (int64_t o = 0; o < out; o++) row[o] = (uint16_t)((i * 7 + o) % 65521);
    fwrite(row, sizeof(uint16_t), (size_t)out, fp);
  }
  if (fp) fclose(fp);
  free(row);
  int fd = open(path, O_RDONLY);
  t.view.dtype = VDP_F16, t.view.shape[0] = out, t.view.shape[1] = in, t.view.numel = (uint64_t)(out * in);
  t.view.begin = 0, t.view.end = (uint64_t)(out * in) * 2, t.transposed = NULL;
  const size_t chunk = (size_t)1 << 20;
  uint16_t *buf = malloc(chunk * 2);
  uint64_t r0 = rchar(), bad = 0;
  int rc = 0;
  for (uint64_t e0 = 0; e0 < t.view.numel && !rc; e0 += chunk) {
    rc = sgm_read(fd, &t, e0, chunk, buf);
    for (size_t k = 0; k < chunk && !rc; k += 997) {  // element (o, i) of the Linear weight = proj[i][o]
      uint64_t e = e0 + k, o = e / (uint64_t)in, i = e % (uint64_t)in;
      bad += buf[k] != (uint16_t)((i * 7 + o) % 65521);
    }
  }
  uint64_t read = rchar() - r0, bytes = t.view.numel * 2;
  check(!rc && !bad, "sgm_transposed_values", "%d chunks: rc %d, %llu sampled values wrong", (int)(t.view.numel / chunk), rc,
        (unsigned long long)bad);
  check(read >= bytes && read < bytes + bytes / 8, "sgm_transposed_read_once",
        "read %.1f MiB for a %.1f MiB tensor in %d chunks (once: not once per chunk)", read / 1048576.0, bytes / 1048576.0,
        (int)(t.view.numel / chunk));
  check(t.transposed == NULL, "sgm_transposed_freed", "the copy is freed after the last chunk");
  free(t.transposed);
  free(buf);
  close(fd);
  sgm_map_free(&m), st_close(&f);
}

// ---------------------------------------------------------------------------------------------------
// 5. --unet
// ---------------------------------------------------------------------------------------------------
static const char *LCM_UNET = "test/data/models/svd_mini_lcm_unet.safetensors";
static const char *DIFF_UNET = "test/data/sgm/svd_mini/unet/diffusion_pytorch_model.fp16.safetensors";

static int convert_unet(const char *base, const char *unet, int sampler, const char *out, char *err, size_t n) {
  ConvertOpts o = {.out_dtype = VDP_F16, .unet = unet, .sampler = sampler};
  return vdpw_convert_opts(base, out, &o, err, n);
}

// An edited copy of a safetensors file in the temporary folder (its path), or NULL.
static const char *edited(const char *src, const char *name, EditFn fn) {
  Eds e = {0};
  if (load_eds(src, &e)) return NULL;
  if (fn) fn(&e);
  const char *p = tmp(name);
  int rc = write_eds(p, &e);
  free_eds(&e);
  return rc ? NULL : p;
}
static void keep_sgm_unet(Eds *e) {  // the SGM checkpoint's UNet alone
  for (int i = 0; i < e->n; i++) e->t[i].drop = strncmp(e->t[i].name, U, strlen(U)) != 0;
}
static void sgm_unet_missing_one(Eds *e) {
  keep_sgm_unet(e);
  ed_find(e, U "out.2.weight")->drop = 1;
}
static void diff_unet_missing_one(Eds *e) { ed_find(e, "conv_out.weight")->drop = 1; }
static void diff_unet_extra_one(Eds *e) {
  e->t = realloc(e->t, (size_t)(e->n + 1) * sizeof *e->t);
  ed_add(e, "lora_down.weight", "F16", 2, (const int64_t[]){4, 4});
}

// Converts with --unet and expects a clean failure whose message holds every string in want, nothing written.
static void expect_unet_fail(const char *name, const char *base, const char *unet, const char *const *want) {
  char err[4096] = "";
  const char *out = tmp("bad_unet.vdpw");
  int rc = unet ? convert_unet(base, unet, 1, out, err, sizeof err) : -2;
  int has = 1;
  const char *miss = "";
  for (int i = 0; want[i]; i++)
    if (!strstr(err, want[i])) has = 0, miss = want[i];
  struct stat st;
  int left = !stat(out, &st);
  check(rc == -1 && has && !left, name, "%s%s%s| %.700s", rc == -1 ? "" : rc == -2 ? "no input file! " : "succeeded! ",
        has ? "" : "message lacks: ", miss, err);
  unlink(out);
}

static void test_unet_swap(void) {
  char err[4096], why[600];
  int n = 0;
  const char *ref = tmp("unet_ref.vdpw");
  if (vdpw_convert(SGM_DIR, ref, VDP_F16, 0, 0, err, sizeof err)) {
    check(0, "unet_ref_convert", "%s", err);
    return;
  }
  // The base's own UNet given back: the same file whatever the names and the base's form.
  const char *sgm_unet = edited(SGM_FILE, "sgm_unet.safetensors", keep_sgm_unet);
  const struct {
    const char *name, *base, *unet;
  } same[] = {{"unet_swap_diffusers_names", SGM_DIR, DIFF_UNET},
              {"unet_swap_sgm_names", SGM_DIR, sgm_unet},
              {"unet_swap_sgm_base_diffusers_names", SGM_FILE, DIFF_UNET},
              {"unet_swap_sgm_base_sgm_names", SGM_FILE, sgm_unet}};
  for (int i = 0; i < 4; i++) {
    const char *out = tmp("unet_same.vdpw");
    if (!same[i].unet || convert_unet(same[i].base, same[i].unet, -1, out, err, sizeof err)) {
      check(0, same[i].name, "convert failed: %s", same[i].unet ? err : "no UNet file");
      continue;
    }
    int k = same_tensors(out, ref, &n, why, sizeof why);
    check(k == n && n > 0, same[i].name, "%s --unet %s: %d of %d tensors byte-identical to the base alone %s", same[i].base,
          same[i].unet, k, n, why);
    unlink(out);
  }
  // Another UNet (AnimateLCM's role): every unet.* tensor replaced, nothing else touched, the sampler recorded.
  const char *lcm = tmp("unet_lcm.vdpw");
  if (convert_unet(SGM_DIR, LCM_UNET, VDP_SAMPLER_ANIMATELCM, lcm, err, sizeof err)) {
    check(0, "unet_swap_other", "convert failed: %s", err);
  } else {
    VdpFile a, b;
    if (vdpw_open(lcm, &a, err, sizeof err) || vdpw_open(ref, &b, err, sizeof err)) {
      check(0, "unet_swap_other", "%s", err);
    } else {
      int unet = 0, unet_diff = 0, other = 0, other_same = 0;
      for (int i = 0; i < a.n_tensors; i++) {
        const VdpTensor *x = &a.tensors[i], *y = vdpw_find(&b, x->name);
        int eq = y && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
        if (!strncmp(x->name, "unet.", 5)) unet++, unet_diff += !eq;
        else other++, other_same += eq;
      }
      check(a.n_tensors == b.n_tensors && unet > 0 && unet_diff == unet && other_same == other, "unet_swap_other",
            "%d of %d unet.* tensors replaced, %d of %d others identical", unet_diff, unet, other_same, other);
      check(a.cfg.sched_sampler == VDP_SAMPLER_ANIMATELCM && b.cfg.sched_sampler == VDP_SAMPLER_EULER, "unet_swap_sampler",
            "recorded sampler %d (base alone %d)", a.cfg.sched_sampler, b.cfg.sched_sampler);
      vdpw_close(&a), vdpw_close(&b);
    }
  }
  // Refusals
  expect_unet_fail("unet_missing_sgm", SGM_DIR, edited(SGM_FILE, "u1.safetensors", sgm_unet_missing_one),
                   (const char *const[]){"1 missing", U "out.2.weight", NULL});
  expect_unet_fail("unet_missing_diffusers", SGM_DIR, edited(DIFF_UNET, "u2.safetensors", diff_unet_missing_one),
                   (const char *const[]){"1 missing (conv_out.weight)", NULL});
  expect_unet_fail("unet_extra_diffusers", SGM_DIR, edited(DIFF_UNET, "u3.safetensors", diff_unet_extra_one),
                   (const char *const[]){"1 unexpected (lora_down.weight)", NULL});
  expect_unet_fail("unet_whole_sgm_checkpoint", SGM_DIR, SGM_FILE, (const char *const[]){"unexpected", "conditioner.", NULL});
  // another architecture (tiny3's UNet: other widths and levels): the misshapen tensors come first
  expect_unet_fail("unet_other_architecture", SGM_DIR, "test/data/models/tiny3/unet/diffusion_pytorch_model.fp16.safetensors",
                   (const char *const[]){"does not match the configuration: ", NULL});
  {
    char err2[4096] = "";
    int rc = convert_unet(SGM_DIR, "test/data/models/tiny3/unet/diffusion_pytorch_model.fp16.safetensors", 1,
                          tmp("arch.vdpw"), err2, sizeof err2);
    const char *c = strstr(err2, "configuration: ");
    int k = 0;
    char word[16] = "";
    int first_shape = c && sscanf(c + 15, "%d with the %15s", &k, word) == 2 && !strcmp(word, "wrong");
    check(rc == -1 && first_shape && k > 0, "unet_other_architecture_first_misshapen", "%.300s", err2);
  }
  expect_unet_fail("unet_vae_file", SGM_DIR, "test/data/sgm/svd_mini/vae/diffusion_pytorch_model.fp16.safetensors",
                   (const char *const[]){"not a UNet", "a VAE", NULL});
  expect_unet_fail("unet_clip_file", SGM_DIR, "test/data/sgm/svd_mini/image_encoder/model.fp16.safetensors",
                   (const char *const[]){"not a UNet", "CLIP image encoder", NULL});
  expect_unet_fail("unet_file_absent", SGM_DIR, tmp("no_such_unet.safetensors"), (const char *const[]){"--unet", NULL});
  // a base that is not SVD: refused as such, before the UNet file matters
  expect_unet_fail("unet_non_svd_base", "test/data/models/tiny3/unet/diffusion_pytorch_model.fp16.safetensors", LCM_UNET,
                   (const char *const[]){"tiny3/unet/diffusion_pytorch_model.fp16.safetensors", NULL});
  expect_unet_fail("unet_non_svd_folder", "test/data/images", LCM_UNET, (const char *const[]){"model_index.json", NULL});
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/test_sgm.XXXXXX");
  if (!mkdtemp(g_tmp)) {
    printf("FAIL - test_sgm cannot create a temporary folder\n");
    return 1;
  }
  test_same_as_folder();
  test_num_frames();
  test_transposed_read_once();
  test_malformed();
  test_published_shapes();
  test_layout_case();
  test_unet_swap();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  if (system(cmd)) printf("(could not remove %s)\n", g_tmp);
  printf("%d ok, %d failed\n", n_ok, n_fail);
  return n_fail ? 1 : 0;
}
