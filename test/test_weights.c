// test_weights.c — the weight files: .vdpw (weights/FORMAT.md), safetensors, the diffusers config
// importer and `vdp convert`, including malformed inputs that must be refused with one clear message.
//
// The valid files here are written by this test's own small writers, from the format descriptions
// (FORMAT.md, svd-spec §7.3), not by weights.c's writer; the converter's output is then compared value
// by value with the source data.
//
// Usage: test_weights [--seeds DIR]   (--seeds also writes the fuzzers' seed files into DIR)
#include "vdp.h"
#include "test/check.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// weights.c entry point outside vdp.h (st_parse_buffer is declared in vdp.h section 2b)
int vdpw_convert(const char *src_dir, const char *out_path, int out_dtype, int variant, int verbose, char *err,
                 size_t errlen);
enum { VARIANT_AUTO, VARIANT_FP32, VARIANT_FP16 };


// ---------------------------------------------------------------------------------------------------
// A small configuration that every part accepts
// ---------------------------------------------------------------------------------------------------
static VdpConfig small_cfg(void) {
  VdpConfig c;
  memset(&c, 0, sizeof c);
  c.unet_in_channels = 8, c.unet_out_channels = 4, c.unet_levels = 2;
  c.unet_block_out[0] = 32, c.unet_block_out[1] = 64;
  c.unet_down_attn[0] = 1, c.unet_down_attn[1] = 0;
  c.unet_up_attn[0] = 0, c.unet_up_attn[1] = 1;
  c.unet_heads[0] = 2, c.unet_heads[1] = 4;
  c.unet_transformer_layers[0] = c.unet_transformer_layers[1] = 1;
  c.unet_cross_dim[0] = c.unet_cross_dim[1] = 16;
  c.unet_layers_per_block = 1, c.unet_addition_time_embed_dim = 8, c.unet_proj_class_in_dim = 24;
  c.unet_num_frames = 3, c.unet_sample_size = 8;
  c.vae_in_channels = 3, c.vae_out_channels = 3, c.vae_latent_channels = 4, c.vae_levels = 1;
  c.vae_block_out[0] = 32, c.vae_layers_per_block = 1, c.vae_norm_groups = 32;
  c.vae_scaling_factor = 0.18215f, c.vae_force_upcast = 1;
  c.clip_hidden = 16, c.clip_intermediate = 20, c.clip_layers = 1, c.clip_heads = 2, c.clip_patch = 4;
  c.clip_image_size = 8, c.clip_channels = 3, c.clip_projection_dim = 16, c.clip_act = 1, c.clip_eps = 1e-5f;
  c.clip_mean[0] = 0.48145466f, c.clip_mean[1] = 0.4578275f, c.clip_mean[2] = 0.40821073f;
  c.clip_std[0] = 0.26862954f, c.clip_std[1] = 0.26130258f, c.clip_std[2] = 0.27577711f;
  c.sched_sigma_min = 0.002f, c.sched_sigma_max = 700.0f, c.sched_num_train_timesteps = 1000;
  c.sched_v_prediction = 1, c.sched_karras = 1, c.sched_continuous = 1, c.sched_leading = 1;
  return c;
}

// The smallest configuration (one level everywhere): the fuzzers' .vdpw seed.
static VdpConfig seed_cfg(void) {
  VdpConfig c = small_cfg();
  c.unet_levels = 1, c.unet_block_out[1] = 0, c.unet_down_attn[0] = 1, c.unet_up_attn[0] = 1;
  c.unet_heads[0] = 1, c.unet_cross_dim[0] = 8, c.unet_heads[1] = c.unet_cross_dim[1] = 0;
  c.unet_down_attn[1] = c.unet_up_attn[1] = c.unet_transformer_layers[1] = 0;
  c.unet_addition_time_embed_dim = 4, c.unet_proj_class_in_dim = 12;
  c.clip_hidden = 8, c.clip_intermediate = 8, c.clip_heads = 1, c.clip_image_size = 4, c.clip_projection_dim = 8;
  return c;
}

// The configuration text as FORMAT.md describes it, written here independently of weights.c.
static char *cfg_text(const VdpConfig *c, size_t *len) {
  static char buf[8192];
  size_t k = 0;
#define USED(name, n) (!strncmp(#name, "unet_", 5) && n == VDP_MAX_LEVELS ? c->unet_levels : !strncmp(#name, "vae_", 4) && n == VDP_MAX_LEVELS ? c->vae_levels : n)
#define T_I(name, comp, key) k += (size_t)snprintf(buf + k, sizeof buf - k, #name "=%d\n", c->name);
#define T_F(name, comp, key) k += (size_t)snprintf(buf + k, sizeof buf - k, #name "=%.9g\n", (double)c->name);
#define T_IA(name, n, comp, key)                                                                         \
  k += (size_t)snprintf(buf + k, sizeof buf - k, #name "=");                                             \
  for (int i = 0; i < USED(name, n); i++) k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%d", i ? "," : "", c->name[i]); \
  k += (size_t)snprintf(buf + k, sizeof buf - k, "\n");
#define T_FA(name, n, comp, key)                                                                         \
  k += (size_t)snprintf(buf + k, sizeof buf - k, #name "=");                                             \
  for (int i = 0; i < USED(name, n); i++) k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%.9g", i ? "," : "", (double)c->name[i]); \
  k += (size_t)snprintf(buf + k, sizeof buf - k, "\n");
  VDP_CONFIG_FIELDS(T_I, T_F, T_IA, T_FA)
#undef T_I
#undef T_F
#undef T_IA
#undef T_FA
  *len = k;
  return buf;
}

static int cmp_spec(const void *a, const void *b) { return strcmp(((const VdpTensorSpec *)a)->name, ((const VdpTensorSpec *)b)->name); }

static int64_t numel_of(const VdpTensorSpec *s) {
  int64_t n = 1;
  for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
  return n;
}

// Deterministic test values: tensor k, element i.
static float value_at(int k, int64_t i) { return 0.5f * sinf(0.37f * (float)k + 0.013f * (float)i); }

// ---------------------------------------------------------------------------------------------------
// .vdpw writer following FORMAT.md: header 16 bytes, configuration text, table at a multiple of 64
// (256-byte entries, sorted by name), each tensor's data at a multiple of 64.
// ---------------------------------------------------------------------------------------------------
static uint64_t al64(uint64_t x) { return (x + 63) / 64 * 64; }

static uint8_t *build_vdpw(const char *cfgtext, size_t cfglen, const VdpTensorSpec *specs, int n, int dtype, size_t *len) {
  int esz = dtype == VDP_F32 ? 4 : 2;
  uint64_t table = al64(16 + cfglen), pos = al64(table + 256 * (uint64_t)n);
  uint64_t *offs = malloc(sizeof(uint64_t) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) {
    offs[i] = pos;
    pos = al64(pos + (uint64_t)numel_of(&specs[i]) * (uint64_t)esz);
  }
  uint64_t size = n ? offs[n - 1] + (uint64_t)numel_of(&specs[n - 1]) * (uint64_t)esz : pos;
  uint8_t *b = calloc(1, size);
  memcpy(b, "VDPW", 4);
  uint32_t h[3] = {1, (uint32_t)cfglen, (uint32_t)n};
  memcpy(b + 4, h, 12);
  memcpy(b + 16, cfgtext, cfglen);
  for (int i = 0; i < n; i++) {
    uint8_t *e = b + table + 256 * (uint64_t)i;
    memcpy(e, specs[i].name, strlen(specs[i].name));
    uint32_t dt = (uint32_t)dtype, nd = (uint32_t)specs[i].ndim;
    memcpy(e + 160, &dt, 4);
    memcpy(e + 164, &nd, 4);
    for (int d = 0; d < specs[i].ndim; d++) memcpy(e + 168 + 8 * d, &specs[i].shape[d], 8);
    uint64_t nb = (uint64_t)numel_of(&specs[i]) * (uint64_t)esz;
    memcpy(e + 216, &offs[i], 8);
    memcpy(e + 224, &nb, 8);
    for (int64_t j = 0; j < numel_of(&specs[i]); j++) {
      float v = value_at(i, j);
      if (dtype == VDP_F32) memcpy(b + offs[i] + 4 * (uint64_t)j, &v, 4);
      else {
        uint16_t hv = float_to_half(v);
        memcpy(b + offs[i] + 2 * (uint64_t)j, &hv, 2);
      }
    }
  }
  free(offs);
  *len = size;
  return b;
}

// Table entry i of a file built by build_vdpw.
static uint8_t *entry(uint8_t *b, int i) {
  uint32_t cl;
  memcpy(&cl, b + 8, 4);
  return b + al64(16 + cl) + 256 * (uint64_t)i;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static int write_file(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = fwrite(buf, 1, len, f) == len;
  return fclose(f) == 0 && ok ? 0 : -1;
}

// Expects vdpw_parse to refuse buf with a message containing `want`.
static void expect_vdpw_fail(const char *name, const uint8_t *buf, size_t len, const char *want) {
  VdpFile f;
  char err[1024] = "";
  int rc = vdpw_parse(buf, len, &f, err, sizeof err);
  if (rc == 0) vdpw_close(&f);
  check(rc == -1 && err[0] && strstr(err, want), name, "(expects \"%s\") -> %d: %s", want, rc, err);
}

static void test_vdpw(const char *seed_dir) {
  VdpConfig cfg = small_cfg();
  char err[1024] = "";
  int rc = config_validate(&cfg, err, sizeof err);
  check(rc == 0, "vdpw_small_config_valid", "%s", err);
  VdpSpecList list = {0};
  rc = model_expected_tensors(&cfg, &list, err, sizeof err);
  check(rc == 0 && list.n > 10, "vdpw_expected_tensors", "%d tensors %s", list.n, err);
  if (rc) return;
  qsort(list.specs, (size_t)list.n, sizeof *list.specs, cmp_spec);
  int n = list.n;
  size_t cl, len;
  char *ct = cfg_text(&cfg, &cl);
  uint8_t *good = build_vdpw(ct, cl, list.specs, n, VDP_F16, &len);

  // --- the valid file
  VdpFile f;
  rc = vdpw_parse(good, len, &f, err, sizeof err);
  check(rc == 0, "vdpw_valid_parse", "%zu bytes, %d tensors %s", len, n, rc ? err : "");
  if (rc) return;
  check(f.n_tensors == n && !memcmp(&f.cfg, &cfg, sizeof cfg), "vdpw_valid_config_roundtrip", "n=%d", f.n_tensors);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    const VdpTensor *t = vdpw_find(&f, list.specs[i].name);
    if (!t || t->ndim != list.specs[i].ndim || memcmp(t->shape, list.specs[i].shape, sizeof(int64_t) * (size_t)t->ndim) ||
        t->dtype != VDP_F16 || ((uintptr_t)t->data - (uintptr_t)good) % 64 || t->data != good + t->offset)
      bad++;
    else {
      uint16_t h;
      int64_t last = numel_of(&list.specs[i]) - 1;
      memcpy(&h, (const uint8_t *)t->data + 2 * last, 2);
      if (fabsf(half_to_float(h) - value_at(i, last)) > 1e-3f) bad++;
    }
  }
  check(bad == 0, "vdpw_valid_find_all", "%d tensors found with shape, alignment and data, %d bad", n - bad, bad);
  check(vdpw_find(&f, "unet.no_such_tensor") == NULL && vdpw_find(&f, "") == NULL, "vdpw_find_missing", "NULL");
  vdpw_close(&f);

  // fp32 storage too
  size_t len32;
  uint8_t *good32 = build_vdpw(ct, cl, list.specs, n, VDP_F32, &len32);
  rc = vdpw_parse(good32, len32, &f, err, sizeof err);
  check(rc == 0 && f.tensors[0].dtype == VDP_F32, "vdpw_valid_fp32", "%zu bytes %s", len32, rc ? err : "");
  if (!rc) vdpw_close(&f);
  free(good32);

  // through a file and mmap
  char path[] = "/tmp/test_weights_XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  write_file(path, good, len);
  rc = vdpw_open(path, &f, err, sizeof err);
  check(rc == 0 && f.n_tensors == n && ((uintptr_t)f.tensors[0].data % 64) == 0, "vdpw_open_mmap", "%s", rc ? err : path);
  if (!rc) vdpw_close(&f);
  write_file(path, good, len - 1);
  rc = vdpw_open(path, &f, err, sizeof err);
  check(rc == -1 && strstr(err, path) && strstr(err, "outside"), "vdpw_open_truncated_names_path", "%s", err);
  unlink(path);
  rc = vdpw_open("/nonexistent/x.vdpw", &f, err, sizeof err);
  check(rc == -1 && strstr(err, "/nonexistent/x.vdpw"), "vdpw_open_missing_file", "%s", err);
  if (seed_dir) {
    VdpConfig sc = seed_cfg();
    VdpSpecList sl = {0};
    size_t scl, sl_len;
    rc = config_validate(&sc, err, sizeof err) || model_expected_tensors(&sc, &sl, err, sizeof err);
    if (!rc) {
      qsort(sl.specs, (size_t)sl.n, sizeof *sl.specs, cmp_spec);
      char *st = cfg_text(&sc, &scl);
      uint8_t *sb = build_vdpw(st, scl, sl.specs, sl.n, VDP_F16, &sl_len);
      rc = vdpw_parse(sb, sl_len, &f, err, sizeof err);
      if (!rc) vdpw_close(&f);
      char p[600];
      snprintf(p, sizeof p, "%s/small.vdpw", seed_dir);
      if (!rc) rc = write_file(p, sb, sl_len);
      free(sb);
      check(rc == 0, "seed_vdpw_written", "%s (%zu bytes, %d tensors) %s", p, sl_len, sl.n, rc ? err : "");
    } else
      check(0, "seed_vdpw_written", "%s", err);
    speclist_free(&sl);
    ct = cfg_text(&cfg, &cl);  // cfg_text's buffer is static: restore the small configuration's text
  }

  // --- malformations. Each works on a fresh copy of the valid file.
  uint8_t *b = malloc(len);
#define FRESH() memcpy(b, good, len)
  uint64_t table = al64(16 + cl), data0 = get_u64(entry(good, 0) + 216);
  // truncation at several points
  size_t cuts[] = {0, 3, 15, 16 + cl / 2, (size_t)table + 100, (size_t)data0 + 10, len - 1};
  const char *cut_want[] = {"too short", "too short", "too short", "truncated", "truncated", "outside", "outside"};
  for (int i = 0; i < 7; i++) {
    char nm[64];
    snprintf(nm, sizeof nm, "vdpw_truncated_at_%zu", cuts[i]);
    expect_vdpw_fail(nm, good, cuts[i], cut_want[i]);
  }
  FRESH(), b[0] = 'X';
  expect_vdpw_fail("vdpw_bad_magic", b, len, "magic");
  FRESH(), put_u32(b + 4, 2);
  expect_vdpw_fail("vdpw_unknown_version", b, len, "version 2");
  FRESH(), put_u32(b + 8, 0xffffffffu);
  expect_vdpw_fail("vdpw_huge_config_length", b, len, "configuration length");
  FRESH(), put_u32(b + 12, 0xffffffffu);
  expect_vdpw_fail("vdpw_huge_tensor_count", b, len, "tensor count");
  FRESH(), put_u32(b + 12, (uint32_t)(len / 256));
  expect_vdpw_fail("vdpw_tensor_count_past_end", b, len, "truncated");
  FRESH(), put_u64(entry(b, 3) + 216, al64(len));
  expect_vdpw_fail("vdpw_offset_past_end", b, len, "outside");
  FRESH(), put_u64(entry(b, 3) + 216, UINT64_MAX - 63);
  expect_vdpw_fail("vdpw_offset_overflow", b, len, "outside");
  FRESH(), put_u64(entry(b, 3) + 216, 0);
  expect_vdpw_fail("vdpw_offset_inside_header", b, len, "outside");
  FRESH(), put_u64(entry(b, 3) + 216, get_u64(entry(b, 3) + 216) + 2);
  expect_vdpw_fail("vdpw_misaligned_data", b, len, "multiple of 64");
  FRESH(), put_u64(entry(b, 3) + 224, get_u64(entry(b, 3) + 224) + 2);
  expect_vdpw_fail("vdpw_nbytes_mismatch", b, len, "bytes recorded");
  FRESH(), put_u64(entry(b, 0) + 168, (uint64_t)1 << 40), put_u64(entry(b, 0) + 176, (uint64_t)1 << 40);
  put_u32(entry(b, 0) + 164, 2);
  expect_vdpw_fail("vdpw_size_overflow", b, len, "too large");
  FRESH(), put_u64(entry(b, 0) + 168, (uint64_t)-5);
  expect_vdpw_fail("vdpw_negative_dim", b, len, "negative");
  FRESH(), put_u32(entry(b, 0) + 164, 7);
  expect_vdpw_fail("vdpw_too_many_dims", b, len, "dimensions");
  FRESH(), put_u32(entry(b, 0) + 160, 7);
  expect_vdpw_fail("vdpw_unknown_dtype", b, len, "dtype code 7");
  FRESH(), memset(entry(b, 2), 'a', 160);
  expect_vdpw_fail("vdpw_name_not_terminated", b, len, "NUL");
  FRESH(), entry(b, 2)[1] = '\n';
  expect_vdpw_fail("vdpw_name_control_char", b, len, "printable");
  FRESH(), entry(b, 5)[250] = 1;
  expect_vdpw_fail("vdpw_reserved_nonzero", b, len, "reserved");
  // duplicate name: entry 5 takes entry 4's name
  FRESH(), memcpy(entry(b, 5), entry(b, 4), 160);
  expect_vdpw_fail("vdpw_duplicate_name", b, len, "duplicate");
  // unsorted table: swap entries 4 and 5
  {
    uint8_t tmp[256];
    FRESH(), memcpy(tmp, entry(b, 4), 256), memcpy(entry(b, 4), entry(b, 5), 256), memcpy(entry(b, 5), tmp, 256);
    expect_vdpw_fail("vdpw_unsorted_table", b, len, "sorted");
  }
  // overlapping: a tensor's data placed on its neighbour's (same size class: pick two 1-D tensors)
  {
    int a = -1, c = -1;
    for (int i = 0; i < n && c < 0; i++)
      if (list.specs[i].ndim == 1 && list.specs[i].shape[0] >= 32) {
        if (a < 0) a = i;
        else c = i;
      }
    FRESH(), put_u64(entry(b, c) + 216, get_u64(entry(b, a) + 216));
    expect_vdpw_fail("vdpw_overlapping_tensors", b, len, "overlap");
  }
  // shape that disagrees with the configuration (same byte count, dims swapped)
  {
    int k = -1;
    for (int i = 0; i < n && k < 0; i++)
      if (list.specs[i].ndim == 2 && list.specs[i].shape[0] != list.specs[i].shape[1]) k = i;
    FRESH(), put_u64(entry(b, k) + 168, (uint64_t)list.specs[k].shape[1]), put_u64(entry(b, k) + 176, (uint64_t)list.specs[k].shape[0]);
    expect_vdpw_fail("vdpw_misshapen_tensor", b, len, "wrong shape");
  }
  // a renamed tensor: one missing, one unexpected (last entry keeps the order when renamed upwards)
  FRESH(), memset(entry(b, n - 1), 0, 160), memcpy(entry(b, n - 1), "vae.zzz", 7);
  expect_vdpw_fail("vdpw_missing_and_extra_tensor", b, len, "missing");
  // a file without one tensor
  {
    size_t l2;
    VdpTensorSpec *s2 = malloc(sizeof *s2 * (size_t)n);
    memcpy(s2, list.specs, sizeof *s2 * (size_t)n);
    memmove(&s2[7], &s2[8], sizeof *s2 * (size_t)(n - 8));
    uint8_t *b2 = build_vdpw(ct, cl, s2, n - 1, VDP_F16, &l2);
    char want[200];
    snprintf(want, sizeof want, "1 missing (%s)", list.specs[7].name);
    expect_vdpw_fail("vdpw_missing_tensor", b2, l2, want);
    free(b2);
    free(s2);
  }
  // configuration text variants
  {
    struct {
      const char *name, *from, *to, *want;
    } cv[] = {
        {"vdpw_config_nan", "clip_eps=", "clip_eps=nan\nx", "clip_eps is nan"},
        {"vdpw_config_unknown_key", "unet_in_channels=", "unet_bogus=1\nunet_in_channels=", "unknown key"},
        {"vdpw_config_duplicate_key", "unet_in_channels=", "unet_in_channels=8\nunet_in_channels=", "twice"},
        {"vdpw_config_missing_key", "clip_act=", "xclip_act=", "unknown key"},
        {"vdpw_config_bad_integer", "unet_layers_per_block=", "unet_layers_per_block=1x\nq", "unexpected 'x'"},
        {"vdpw_config_empty_integer", "unet_layers_per_block=", "unet_layers_per_block=,\nq", "invalid integer"},
        {"vdpw_config_array_too_short", "unet_heads=", "unet_heads=2\nq", "expected 2"},
        {"vdpw_config_heads_not_dividing", "unet_heads=", "unet_heads=3,4\nq", "does not divide"},
        {"vdpw_config_huge_levels", "unet_levels=", "unet_levels=100000\nq", "unet_levels"},
        {"vdpw_config_negative_channels", "vae_latent_channels=", "vae_latent_channels=-4\nq", "vae_latent_channels"},
    };
    for (size_t i = 0; i < sizeof cv / sizeof cv[0]; i++) {
      // Replace the line starting with cv.from by cv.to + the rest of that line after its first char
      // ("q"/"x" markers swallow the old value up to the newline).
      char t2[8192];
      const char *at = strstr(ct, cv[i].from);
      size_t pre = (size_t)(at - ct);
      const char *rest = at + strlen(cv[i].from);
      int swallow = cv[i].to[strlen(cv[i].to) - 1] == 'x' || cv[i].to[strlen(cv[i].to) - 1] == 'q';
      if (swallow) rest = strchr(rest, '\n') + 1;
      size_t tl = (size_t)snprintf(t2, sizeof t2, "%.*s%.*s%s", (int)pre, ct, (int)(strlen(cv[i].to) - (size_t)swallow),
                                   cv[i].to, rest);
      size_t l2;
      uint8_t *b2 = build_vdpw(t2, tl, list.specs, n, VDP_F16, &l2);
      expect_vdpw_fail(cv[i].name, b2, l2, cv[i].want);
      free(b2);
    }
  }
  // configuration text without its final newline
  {
    size_t l2;
    uint8_t *b2 = build_vdpw(ct, cl - 1, list.specs, n, VDP_F16, &l2);
    expect_vdpw_fail("vdpw_config_no_final_newline", b2, l2, "newline");
    free(b2);
  }
  // non-zero padding between configuration and table
  if (al64(16 + cl) > 16 + cl) {
    FRESH(), b[16 + cl] = 1;
    expect_vdpw_fail("vdpw_padding_nonzero", b, len, "padding");
  }
  free(b);
  free(good);
  speclist_free(&list);
}

// ---------------------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------------------
// A file from a header JSON (padded with spaces to a multiple of 8, as the reference writer does) and
// `data_len` bytes of data.
static uint8_t *st_raw(const char *json, size_t data_len, size_t *len) {
  size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
  *len = 8 + padded + data_len;
  uint8_t *b = malloc(*len + 1);
  uint64_t n = padded;
  memcpy(b, &n, 8);
  memcpy(b + 8, json, jl);
  memset(b + 8 + jl, ' ', padded - jl);
  for (size_t i = 0; i < data_len; i++) b[8 + padded + i] = (uint8_t)(i * 7);
  return b;
}

static void expect_st(const char *name, const uint8_t *buf, size_t len, int want_rc, const char *want) {
  char err[1024] = "";
  int rc = st_parse_buffer(buf, len, err, sizeof err);
  if (want_rc == 0) check(rc == 0, name, "%s", rc ? err : "parsed");
  else check(rc == -1 && err[0] && strstr(err, want), name, "(expects \"%s\") -> %d: %s", want, rc, err);
}

static void expect_st_json(const char *name, const char *json, size_t data_len, int want_rc, const char *want) {
  size_t len;
  uint8_t *b = st_raw(json, data_len, &len);
  expect_st(name, b, len, want_rc, want);
  free(b);
}

static void test_safetensors(const char *seed_dir) {
  // A valid file: F32 [2,3] (24 bytes), F16 [4] (8), BF16 [] scalar (2), I64 [2] (16), an empty F32 [0].
  const char *good =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
      "\"a.bias\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
      "\"s\" : { \"shape\" : [ ] , \"data_offsets\" : [ 32 , 34 ] , \"dtype\" : \"BF16\" } ,"
      "\"pos\\u00e9\\ud83d\\ude00\\n\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[34,50]},"
      "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[50,50]}}";
  size_t len;
  uint8_t *b = st_raw(good, 50, &len);
  expect_st("st_valid", b, len, 0, NULL);
  expect_st_json("st_valid_gap_and_trailing_bytes", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 20, 0, NULL);
  expect_st_json("st_valid_no_tensors", "{}", 0, 0, NULL);
  if (seed_dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/small.safetensors", seed_dir);
    check(write_file(p, b, len) == 0, "seed_safetensors_written", "%s (%zu bytes)", p, len);
  }
  // header-level malformations
  expect_st("st_truncated_at_0", b, 0, -1, "too short");
  expect_st("st_truncated_at_5", b, 5, -1, "too short");
  expect_st("st_truncated_in_header", b, 60, -1, "exceeds the file");
  expect_st("st_truncated_in_data", b, len - 1, -1, "past the end");
  {
    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    put_u64(c, len);  // header length beyond the file
    expect_st("st_header_length_past_end", c, len, -1, "exceeds the file");
    put_u64(c, UINT64_MAX);
    expect_st("st_header_length_huge", c, len, -1, "exceeds the file");
    put_u64(c, 4);  // the JSON is cut short
    expect_st("st_header_length_short", c, len, -1, "JSON error");
    free(c);
  }
  {  // over the 100 MB limit although the file is big enough
    size_t big = 100000000 + 64;
    uint8_t *c = calloc(1, big + 8);
    put_u64(c, 100000001);
    expect_st("st_header_over_100MB", c, big + 8, -1, "100 MB");
    free(c);
  }
  free(b);
  // JSON syntax
  expect_st_json("st_json_missing_colon", "{\"x\" {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, "expected ':'");
  expect_st_json("st_json_trailing_comma", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4, -1, "unexpected character ']'");
  expect_st_json("st_json_trailing_garbage", "{} x", 0, -1, "after the JSON value");
  expect_st_json("st_json_not_object", "[1,2]", 0, -1, "not a JSON object");
  expect_st_json("st_json_bad_escape", "{\"a\\q\":1}", 0, -1, "invalid escape");
  expect_st_json("st_json_lone_surrogate", "{\"a\\ud800x\":1}", 0, -1, "surrogate");
  expect_st_json("st_json_nul_escape", "{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, "\\u0000");
  expect_st_json("st_json_control_char", "{\"a\tb\":1}", 0, -1, "control character");
  expect_st_json("st_json_invalid_utf8", "{\"a\xc0\xaf\":1}", 0, -1, "UTF-8");
  expect_st_json("st_json_huge_number", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1e999],\"data_offsets\":[0,4]}}", 4, -1, "out of range");
  expect_st_json("st_json_leading_zero", "{\"x\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, -1, "expected ','");
  expect_st_json("st_json_unterminated_string", "{\"x", 0, -1, "unterminated");
  {
    char deep[400];
    size_t k = (size_t)snprintf(deep, sizeof deep, "{\"__metadata__\":");
    for (int i = 0; i < 100; i++) deep[k++] = '[';
    for (int i = 0; i < 100; i++) deep[k++] = ']';
    deep[k++] = '}', deep[k] = 0;
    expect_st_json("st_json_nesting_too_deep", deep, 0, -1, "nesting");
  }
  // tensor-level malformations
  expect_st_json("st_unknown_dtype", "{\"x\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, "unknown dtype");
  expect_st_json("st_dtype_not_string", "{\"x\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, "dtype is not a string");
  expect_st_json("st_missing_shape", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, -1, "missing \"shape\"");
  expect_st_json("st_end_before_begin", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 8, -1, "end before");
  expect_st_json("st_offset_past_end", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 10, -1, "past the end");
  expect_st_json("st_offset_huge", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", 4, -1, "data_offsets");
  expect_st_json("st_size_mismatch", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, -1, "needs 8");
  expect_st_json("st_overlap", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, -1, "overlap");
  expect_st_json("st_duplicate_name", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, -1, "duplicate key");
  expect_st_json("st_negative_dim", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, -1, "non-negative");
  expect_st_json("st_fractional_dim", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, -1, "non-negative integers");
  // past 2^53 the value is not exact any more: "too large", not "must be non-negative integers"
  expect_st_json("st_dim_above_2_53", "{\"x\":{\"dtype\":\"F32\",\"shape\":[9007199254740993],\"data_offsets\":[0,4]}}", 4, -1, "too large");
  expect_st_json("st_offset_above_2_53", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18014398509481984]}}", 4, -1, "too large");
  expect_st_json("st_numel_overflow", "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, -1, "overflows");
  expect_st_json("st_too_many_dims", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, -1, "dimensions");
  expect_st_json("st_offsets_three_values", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, -1, "two integers");
  expect_st_json("st_entry_not_object", "{\"x\":[1]}", 0, -1, "not an object");
  {
    char j[400];
    snprintf(j, sizeof j, "{\"%0200d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0);
    expect_st_json("st_name_too_long", j, 4, -1, "limit 159");
  }
}

// ---------------------------------------------------------------------------------------------------
// config_from_diffusers + vdp convert, on a pipeline folder written here
// ---------------------------------------------------------------------------------------------------
static char g_dir[256];

static void put_text(const char *rel, const char *text) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", g_dir, rel);
  write_file(p, text, strlen(text));
}

static const char *UNET_JSON =
    "{\"_class_name\": \"UNetSpatioTemporalConditionModel\", \"addition_time_embed_dim\": 8,"
    " \"block_out_channels\": [32, 64], \"cross_attention_dim\": 16,"
    " \"down_block_types\": [\"CrossAttnDownBlockSpatioTemporal\", \"DownBlockSpatioTemporal\"],"
    " \"in_channels\": 8, \"layers_per_block\": 1, \"num_attention_heads\": [2, 4], \"num_frames\": 3,"
    " \"out_channels\": 4, \"projection_class_embeddings_input_dim\": 24, \"sample_size\": 8,"
    " \"transformer_layers_per_block\": 1,"
    " \"up_block_types\": [\"UpBlockSpatioTemporal\", \"CrossAttnUpBlockSpatioTemporal\"]}";
static const char *VAE_JSON =
    "{\"_class_name\": \"AutoencoderKLTemporalDecoder\", \"block_out_channels\": [32],"
    " \"down_block_types\": [\"DownEncoderBlock2D\"], \"force_upcast\": true, \"in_channels\": 3,"
    " \"latent_channels\": 4, \"layers_per_block\": 1, \"out_channels\": 3, \"sample_size\": 16, \"scaling_factor\": 0.18215}";
// hidden_act absent: the CLIPVisionConfig default quick_gelu applies; layer_norm_eps absent: 1e-5.
static const char *CLIP_JSON =
    "{\"architectures\": [\"CLIPVisionModelWithProjection\"], \"hidden_size\": 16, \"image_size\": 8,"
    " \"intermediate_size\": 20, \"model_type\": \"clip_vision_model\", \"num_attention_heads\": 2,"
    " \"num_channels\": 3, \"num_hidden_layers\": 1, \"patch_size\": 4, \"projection_dim\": 16}";
static const char *SCHED_JSON =
    "{\"_class_name\": \"EulerDiscreteScheduler\", \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\","
    " \"beta_start\": 0.00085, \"interpolation_type\": \"linear\", \"num_train_timesteps\": 1000,"
    " \"prediction_type\": \"v_prediction\", \"sigma_max\": 700.0, \"sigma_min\": 0.002, \"steps_offset\": 1,"
    " \"timestep_spacing\": \"leading\", \"timestep_type\": \"continuous\", \"trained_betas\": null,"
    " \"use_karras_sigmas\": true}";
// image_mean/image_std absent: the OpenAI CLIP defaults apply.
static const char *FE_JSON = "{\"crop_size\": {\"height\": 8, \"width\": 8}, \"do_normalize\": true, \"image_processor_type\": \"CLIPImageProcessor\"}";
static const char *INDEX_JSON =
    "{\"_class_name\": \"StableVideoDiffusionPipeline\", \"feature_extractor\": [\"transformers\", \"CLIPImageProcessor\"],"
    " \"image_encoder\": [\"transformers\", \"CLIPVisionModelWithProjection\"],"
    " \"scheduler\": [\"diffusers\", \"EulerDiscreteScheduler\"],"
    " \"unet\": [\"diffusers\", \"UNetSpatioTemporalConditionModel\"],"
    " \"vae\": [\"diffusers\", \"AutoencoderKLTemporalDecoder\"]}";

static void write_configs(void) {
  put_text("model_index.json", INDEX_JSON);
  put_text("unet/config.json", UNET_JSON);
  put_text("vae/config.json", VAE_JSON);
  put_text("image_encoder/config.json", CLIP_JSON);
  put_text("scheduler/scheduler_config.json", SCHED_JSON);
  put_text("feature_extractor/preprocessor_config.json", FE_JSON);
}

// Writes one component's safetensors file (names without the component prefix) in dtype F32 or BF16.
// Tweaks for negative tests: skip one tensor, add an extra one, change a shape, use F64, put a big value.
enum { TW_NONE, TW_SKIP, TW_EXTRA, TW_SHAPE, TW_F64, TW_BIG, TW_POSIDS };
static void write_component(const VdpSpecList *l, const char *prefix, const char *file, int bf16, int tweak) {
  size_t pl = strlen(prefix);
  char *json = malloc(1 << 20);
  size_t jk = 0, cap = 1 << 20;
  uint8_t *data = NULL;
  size_t dlen = 0;
  jk += (size_t)snprintf(json + jk, cap - jk, "{\"__metadata__\":{\"format\":\"pt\"}");
  int first = 1;
  for (int i = 0; i < l->n; i++) {
    const VdpTensorSpec *s = &l->specs[i];
    if (strncmp(s->name, prefix, pl) || s->name[pl] != '.') continue;
    if (first && tweak == TW_SKIP) {
      first = 0;
      continue;
    }
    int64_t shp[VDP_MAX_DIMS];
    memcpy(shp, s->shape, sizeof shp);
    if (first && tweak == TW_SHAPE) shp[0] += 1;
    int64_t ne = 1;
    for (int d = 0; d < s->ndim; d++) ne *= shp[d];
    const char *dt = bf16 ? "BF16" : "F32";
    int esz = bf16 ? 2 : 4;
    if (first && tweak == TW_F64) dt = "F64", esz = 8;
    data = realloc(data, dlen + (size_t)ne * (size_t)esz + 16);
    for (int64_t j = 0; j < ne; j++) {
      float v = value_at(i, j);
      if (first && tweak == TW_BIG && j == ne - 1) v = 1e6f;
      uint32_t u;
      memcpy(&u, &v, 4);
      if (esz == 2) {
        uint16_t h = (uint16_t)(u >> 16);  // a BF16 value: the top half of the float
        memcpy(data + dlen + 2 * (size_t)j, &h, 2);
      } else if (esz == 4) memcpy(data + dlen + 4 * (size_t)j, &v, 4);
      else {
        double dv = v;
        memcpy(data + dlen + 8 * (size_t)j, &dv, 8);
      }
    }
    jk += (size_t)snprintf(json + jk, cap - jk, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", s->name + pl + 1, dt);
    for (int d = 0; d < s->ndim; d++) jk += (size_t)snprintf(json + jk, cap - jk, "%s%lld", d ? "," : "", (long long)shp[d]);
    jk += (size_t)snprintf(json + jk, cap - jk, "],\"data_offsets\":[%zu,%zu]}", dlen, dlen + (size_t)ne * (size_t)esz);
    dlen += (size_t)ne * (size_t)esz;
    first = 0;
  }
  if (tweak == TW_EXTRA || tweak == TW_POSIDS) {
    data = realloc(data, dlen + 16);
    memset(data + dlen, 0, 16);
    jk += (size_t)snprintf(json + jk, cap - jk, ",\"%s\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}",
                           tweak == TW_EXTRA ? "extra.buffer" : "vision_model.embeddings.position_ids", dlen, dlen + 16);
    dlen += 16;
  }
  jk += (size_t)snprintf(json + jk, cap - jk, "}");
  size_t len;
  uint8_t *b = st_raw(json, 0, &len);
  char p[600];
  snprintf(p, sizeof p, "%s/%s", g_dir, file);
  FILE *f = fopen(p, "wb");
  fwrite(b, 1, len, f);
  fwrite(data, 1, dlen, f);
  fclose(f);
  free(b);
  free(data);
  free(json);
}

static void write_weights(const VdpSpecList *l, int bf16_variant) {
  const char *variant = bf16_variant ? ".fp16" : "";
  char p[3][100];
  snprintf(p[0], 100, "unet/diffusion_pytorch_model%s.safetensors", variant);
  snprintf(p[1], 100, "vae/diffusion_pytorch_model%s.safetensors", variant);
  snprintf(p[2], 100, "image_encoder/model%s.safetensors", variant);
  write_component(l, "unet", p[0], bf16_variant, TW_NONE);
  write_component(l, "vae", p[1], bf16_variant, TW_NONE);
  write_component(l, "image_encoder", p[2], bf16_variant, TW_POSIDS);
}

// Converts and compares every value of the output with the source values (value_at, index in l).
// bf16_prefix: tensors whose names start with it come from BF16 files (NULL: none).
static void convert_and_compare(const char *name, const VdpSpecList *sorted, int dtype, int variant, const char *bf16_prefix) {
  char out[600], err[2048] = "";
  snprintf(out, sizeof out, "%s/out.vdpw", g_dir);
  int rc = vdpw_convert(g_dir, out, dtype, variant, 0, err, sizeof err);
  if (rc) {
    check(0, name, "convert failed: %s", err);
    return;
  }
  VdpFile f;
  rc = vdpw_open(out, &f, err, sizeof err);
  if (rc) {
    check(0, name, "output does not open: %s", err);
    return;
  }
  int64_t bad = 0, total = 0;
  double maxrel = 0;
  for (int i = 0; i < sorted->n; i++) {
    const VdpTensor *t = vdpw_find(&f, sorted->specs[i].name);
    if (!t || t->dtype != dtype) {
      bad++;
      continue;
    }
    int64_t ne = numel_of(&sorted->specs[i]);
    int src_bf16 = bf16_prefix && !strncmp(t->name, bf16_prefix, strlen(bf16_prefix));
    for (int64_t j = 0; j < ne; j++, total++) {
      float src = value_at(i, j);
      if (src_bf16) {
        uint32_t u;
        memcpy(&u, &src, 4);
        u &= 0xffff0000u;
        memcpy(&src, &u, 4);
      }
      float got;
      if (dtype == VDP_F32) memcpy(&got, (const uint8_t *)t->data + 4 * j, 4);
      else {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * j, 2);
        got = half_to_float(h);
      }
      // fp32 output: exact. fp16 output: within half an fp16 ulp (2^-11 relative; absolute near zero).
      double tol = dtype == VDP_F32 ? 0 : fmax(fabs(src) * (1.0 / 2048), 3e-8);
      double d = fabs((double)got - src);
      if (d > tol) bad++;
      if (src != 0) maxrel = fmax(maxrel, d / fabs(src));
    }
  }
  check(bad == 0 && f.n_tensors == sorted->n, name, "%d tensors, %lld values, %lld bad, max rel err %.3g", f.n_tensors,
        (long long)total, (long long)bad, maxrel);
  vdpw_close(&f);
}

static void expect_convert_fail(const char *name, int variant, const char *want) {
  char out[600], err[2048] = "";
  snprintf(out, sizeof out, "%s/bad.vdpw", g_dir);
  int rc = vdpw_convert(g_dir, out, VDP_F16, variant, 0, err, sizeof err);
  struct stat st;
  char tmp[700];
  snprintf(tmp, sizeof tmp, "%s.tmp", out);
  int leftovers = stat(out, &st) == 0 || stat(tmp, &st) == 0;
  check(rc == -1 && strstr(err, want) && !leftovers, name, "(expects \"%s\") -> %d: %s", want, rc, err);
  unlink(out);
}

static void test_convert(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/test_weights_dir_XXXXXX");
  if (!mkdtemp(g_dir)) {
    check(0, "convert_tmpdir", "mkdtemp failed");
    return;
  }
  const char *subs[] = {"unet", "vae", "image_encoder", "scheduler", "feature_extractor"};
  for (int i = 0; i < 5; i++) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", g_dir, subs[i]);
    mkdir(p, 0755);
  }
  write_configs();
  VdpConfig want = small_cfg(), got;
  char err[2048] = "";
  int rc = config_from_diffusers(g_dir, &got, err, sizeof err);
  check(rc == 0 && !memcmp(&want, &got, sizeof want), "config_from_diffusers_small", "%s", rc ? err : "matches, incl. class defaults");

  VdpSpecList l = {0};
  model_expected_tensors(&want, &l, err, sizeof err);
  qsort(l.specs, (size_t)l.n, sizeof *l.specs, cmp_spec);
  write_weights(&l, 0);  // plain F32 files
  write_weights(&l, 1);  // .fp16 variant files, BF16 inside
  convert_and_compare("convert_plain_f32_to_fp32", &l, VDP_F32, VARIANT_AUTO, NULL);
  convert_and_compare("convert_plain_f32_to_fp16", &l, VDP_F16, VARIANT_FP32, NULL);
  convert_and_compare("convert_variant_bf16_to_fp32", &l, VDP_F32, VARIANT_FP16, "");
  convert_and_compare("convert_variant_bf16_to_fp16", &l, VDP_F16, VARIANT_FP16, "");

  // negative cases on the plain files; each rewrites one file and restores it afterwards
  struct {
    const char *name, *comp, *file;
    int tweak;
    const char *want;
  } neg[] = {
      {"convert_missing_tensor", "unet", "unet/diffusion_pytorch_model.safetensors", TW_SKIP, "1 missing (unet."},
      {"convert_extra_tensor", "vae", "vae/diffusion_pytorch_model.safetensors", TW_EXTRA, "1 unexpected (vae.extra.buffer)"},
      {"convert_misshapen_tensor", "image_encoder", "image_encoder/model.safetensors", TW_SHAPE, "wrong shape (image_encoder."},
      {"convert_unsupported_dtype", "unet", "unet/diffusion_pytorch_model.safetensors", TW_F64, "unsupported dtype (unet."},
      {"convert_fp16_overflow", "vae", "vae/diffusion_pytorch_model.safetensors", TW_BIG, "overflows fp16"},
  };
  for (size_t i = 0; i < sizeof neg / sizeof neg[0]; i++) {
    write_component(&l, neg[i].comp, neg[i].file, 0, neg[i].tweak);
    expect_convert_fail(neg[i].name, VARIANT_FP32, neg[i].want);
    write_component(&l, neg[i].comp, neg[i].file, 0, !strcmp(neg[i].comp, "image_encoder") ? TW_POSIDS : TW_NONE);
  }
  // a file that is not safetensors at all
  put_text("vae/diffusion_pytorch_model.safetensors", "hello");
  expect_convert_fail("convert_corrupt_safetensors", VARIANT_FP32, "vae/diffusion_pytorch_model.safetensors: file too short");
  write_component(&l, "vae", "vae/diffusion_pytorch_model.safetensors", 0, TW_NONE);

  // configuration errors
  struct {
    const char *name, *file, *text, *want;
  } cfgneg[] = {
      {"config_wrong_pipeline", "model_index.json", "{\"_class_name\": \"StableDiffusionPipeline\"}", "expected \"StableVideoDiffusionPipeline\""},
      {"config_bad_json", "unet/config.json", "{\"in_channels\": 8,}", "unet/config.json: JSON error"},
      {"config_unknown_block", "unet/config.json",
       "{\"block_out_channels\": [32, 64], \"down_block_types\": [\"CrossAttnDownBlockSpatioTemporal\", \"DownBlock2D\"],"
       " \"up_block_types\": [\"UpBlockSpatioTemporal\", \"CrossAttnUpBlockSpatioTemporal\"]}",
       "down_block_types[1] \"DownBlock2D\" is not supported"},
      {"config_heads_list_length", "unet/config.json", "{\"block_out_channels\": [32, 64], \"num_attention_heads\": [2, 4, 8],"
       " \"down_block_types\": [\"CrossAttnDownBlockSpatioTemporal\", \"DownBlockSpatioTemporal\"],"
       " \"up_block_types\": [\"UpBlockSpatioTemporal\", \"CrossAttnUpBlockSpatioTemporal\"]}",
       "has 3 entries, expected 2"},
      {"config_default_heads_length", "unet/config.json",
       "{\"block_out_channels\": [32, 64], \"down_block_types\": [\"CrossAttnDownBlockSpatioTemporal\", \"DownBlockSpatioTemporal\"],"
       " \"up_block_types\": [\"UpBlockSpatioTemporal\", \"CrossAttnUpBlockSpatioTemporal\"]}",
       "default has 4 entries"},
      {"config_epsilon", "scheduler/scheduler_config.json",
       "{\"sigma_min\": 0.002, \"sigma_max\": 700, \"use_karras_sigmas\": true, \"timestep_type\": \"continuous\"}",
       "prediction_type epsilon is not supported"},
      {"config_no_karras", "scheduler/scheduler_config.json",
       "{\"sigma_min\": 0.002, \"sigma_max\": 700, \"prediction_type\": \"v_prediction\", \"timestep_type\": \"continuous\"}",
       "use_karras_sigmas false is not supported"},
      {"config_sigma_missing", "scheduler/scheduler_config.json", "{\"use_karras_sigmas\": true}", "\"sigma_min\" is missing"},
      {"config_bad_act", "image_encoder/config.json", "{\"hidden_size\": 16, \"hidden_act\": \"relu\"}", "hidden_act \"relu\""},
      {"config_cross_dim_mismatch", "image_encoder/config.json",
       "{\"hidden_size\": 16, \"image_size\": 8, \"intermediate_size\": 20, \"num_attention_heads\": 2, \"num_hidden_layers\": 1,"
       " \"patch_size\": 4, \"projection_dim\": 24}",
       "projection_dim 24"},
      {"config_mean_length", "feature_extractor/preprocessor_config.json", "{\"image_mean\": [0.5, 0.5]}", "list of 3 numbers"},
  };
  const char *orig[] = {INDEX_JSON, UNET_JSON, VAE_JSON, CLIP_JSON, SCHED_JSON, FE_JSON};
  for (size_t i = 0; i < sizeof cfgneg / sizeof cfgneg[0]; i++) {
    put_text(cfgneg[i].file, cfgneg[i].text);
    expect_convert_fail(cfgneg[i].name, VARIANT_AUTO, cfgneg[i].want);
    write_configs();
  }
  (void)orig;
  // defaults: a CLIPVisionConfig-style full CLIPConfig with vision_config, an int num_attention_heads,
  // a single-number image_mean, spacing "trailing" (init sigma = sigma_max -> sched_leading 0)
  put_text("image_encoder/config.json",
           "{\"model_type\": \"clip\", \"projection_dim\": 99, \"vision_config\": {\"hidden_size\": 16, \"image_size\": 8,"
           " \"intermediate_size\": 20, \"num_attention_heads\": 2, \"num_hidden_layers\": 1, \"patch_size\": 4,"
           " \"projection_dim\": 16, \"hidden_act\": \"gelu\"}}");
  put_text("feature_extractor/preprocessor_config.json", "{\"image_mean\": 0.5, \"image_std\": [1, 2, 3]}");
  put_text("scheduler/scheduler_config.json",
           "{\"sigma_min\": 0.002, \"sigma_max\": 700, \"prediction_type\": \"v_prediction\", \"timestep_type\": \"continuous\","
           " \"use_karras_sigmas\": true, \"timestep_spacing\": \"trailing\"}");
  rc = config_from_diffusers(g_dir, &got, err, sizeof err);
  check(rc == 0 && got.clip_act == 0 && got.clip_projection_dim == 16 && got.clip_mean[2] == 0.5f && got.clip_std[2] == 3.0f &&
            got.sched_leading == 0 && got.sched_num_train_timesteps == 1000,
        "config_variants_and_defaults", "%s act=%d proj=%d mean2=%g std2=%g leading=%d", rc ? err : "", got.clip_act,
        got.clip_projection_dim, (double)got.clip_mean[2], (double)got.clip_std[2], got.sched_leading);
  write_configs();

  // variant selection: only the fp16 variant present -> auto takes it; --variant fp32 fails clearly
  char p[600];
  snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.safetensors", g_dir);
  unlink(p);
  convert_and_compare("convert_auto_falls_back_to_variant", &l, VDP_F32, VARIANT_AUTO, "unet.");
  expect_convert_fail("convert_variant_fp32_missing", VARIANT_FP32, "diffusion_pytorch_model.safetensors: not found");
  // a sharded checkpoint is named as such
  snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.safetensors.index.json", g_dir);
  write_file(p, "{}", 2);
  expect_convert_fail("convert_sharded_refused", VARIANT_FP32, "sharded checkpoints are not supported");

  speclist_free(&l);
  // clean up the folder
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

int main(int argc, char **argv) {
  const char *seeds = argc == 3 && !strcmp(argv[1], "--seeds") ? argv[2] : NULL;
  test_vdpw(seeds);
  test_safetensors(seeds);
  test_convert();
  printf("# %d ok, %d failed\n", n_ok, n_fail);
  return n_fail ? 1 : 0;
}
