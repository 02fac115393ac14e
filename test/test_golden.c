// test_golden.c — vdp against diffusers (fp32, CPU) on the tiny fixtures.
//
// For every case under test/data/golden/ (made by test/golden/make_golden.py):
//   1. convert the case's model to a temporary fp32 .vdpw with ./vdp convert;
//   2. components in isolation: CLIP (clip_pixel_values -> image_embeds), UNet (first step's
//      unet_in/t/ehs/ids -> unet_out), VAE decode (vae_decode_in -> vae_decode_out, the case's chunks);
//   3. the whole pipeline: ./vdp generate ... --dump DIR, then every named tensor of the case
//      against its dump.
//
// ONE tolerance rule for every comparison, printed with the measured error:
//     err = max|vdp - ref| / max(1, max|ref|)   must be <= TOL
// i.e. absolute for values of order one (frames in [0,1]: the 1e-3 max-abs bar) and relative
// for large ones (latents scaled by sigma up to 700). The random draws are held to bit equality.
#include "../model.h"
#include "golden.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL 1e-3

static int n_fail = 0;
static char tmpdir[256];

static float *load(const char *dir, const char *name, int64_t *shape, int *ndim, int quiet) {
  char path[1024], err[512];
  float *x = NULL;
  snprintf(path, sizeof path, "%s/%s.npy", dir, name);
  if (npy_load_f32(path, &x, shape, ndim, err, sizeof err)) {
    if (!quiet) printf("FAIL - load %s: %s\n", path, err), n_fail++;
    return NULL;
  }
  return x;
}


// The tolerance rule (golden.h). exact = bitwise equality required.
static void compare(const char *what, const float *got, const float *ref, int64_t n, int exact) {
  GoldenDiff d = golden_diff(got, ref, n);
  int ok = golden_ok(&d, exact, TOL);
  if (!ok) n_fail++;
  golden_print(ok ? "ok -" : "FAIL -", what, &d, exact, TOL);
}

static int run(const char *cmd) {
  int rc = system(cmd);
  if (rc != 0) printf("# command failed (status %d): %s\n", rc, cmd);
  return rc;
}

static void check_components(const char *casedir, const char *name, const Models *m) {
  char what[256];
  int64_t s1[8], s2[8], s3[8], s4[8], s5[8];
  int n1, n2, n3, n4, n5;
  // CLIP
  float *pix = load(casedir, "clip_pixel_values", s1, &n1, 1), *emb = load(casedir, "image_embeds", s2, &n2, 1);
  if (pix && emb) {
    float *got = vdp_malloc((size_t)numel(s2, n2) * sizeof(float), "embeds");
    clip_forward(m, pix, got);
    snprintf(what, sizeof what, "%s/clip image_embeds", name);
    compare(what, got, emb, numel(s2, n2), 0);
    free(got);
  }
  free(pix), free(emb);
  // UNet, first step
  float *in = load(casedir, "unet_in", s1, &n1, 0), *t = load(casedir, "unet_t", s2, &n2, 0);
  float *ehs = load(casedir, "unet_ehs", s3, &n3, 0), *ids = load(casedir, "unet_ids", s4, &n4, 0);
  float *ref = load(casedir, "unet_out", s5, &n5, 0);
  if (in && t && ehs && ids && ref) {
    float *got = vdp_malloc((size_t)numel(s5, n5) * sizeof(float), "unet out");
    unet_forward(m, in, (int)s1[0], (int)s1[1], (int)s1[3], (int)s1[4], t[0], ehs, ids, got);  // ehs [B,1,D] = [B,D]
    snprintf(what, sizeof what, "%s/unet forward", name);
    compare(what, got, ref, numel(s5, n5), 0);
    free(got);
  }
  free(in), free(t), free(ehs), free(ids), free(ref);
  // VAE decode with the case's chunking
  float *z = load(casedir, "vae_decode_in", s1, &n1, 1), *dec = load(casedir, "vae_decode_out", s2, &n2, 1);
  if (z && dec) {
    char path[2048], buf[8192];
    int chunk = (int)s1[0];
    snprintf(path, sizeof path, "%s/case.json", casedir);
    FILE *f = fopen(path, "rb");
    size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[len] = 0;
    char *p = strstr(buf, "\"decode_chunk_size\":");
    if (p) chunk = atoi(p + 20);
    if (chunk < 1) chunk = (int)s1[0];
    float *got = vdp_malloc((size_t)numel(s2, n2) * sizeof(float), "decoded");
    int64_t zin = s1[1] * s1[2] * s1[3], zout = s2[1] * s2[2] * s2[3];
    for (int f0 = 0; f0 < s1[0]; f0 += chunk) {
      int n = (int)(s1[0] - f0 < chunk ? s1[0] - f0 : chunk);
      vae_decode_chunk(m, z + f0 * zin, n, (int)s1[2], (int)s1[3], got + f0 * zout);
    }
    snprintf(what, sizeof what, "%s/vae decode (chunk %d)", name, chunk);
    compare(what, got, dec, numel(s2, n2), 0);
    free(got);
  }
  free(z), free(dec);
}

static void check_pipeline(const char *casedir, const char *name, const char *vdpw) {
  char path[2048], line[4096], cmd[16384], dump[2048];
  snprintf(path, sizeof path, "%s/args.txt", casedir);
  FILE *f = fopen(path, "rb");
  if (!f || !fgets(line, sizeof line, f)) {
    printf("FAIL - %s: cannot read %s\n", name, path), n_fail++;
    if (f) fclose(f);
    return;
  }
  fclose(f);
  line[strcspn(line, "\r\n")] = 0;
  char *args = strchr(line, '\t');
  args = args ? args + 1 : line;
  snprintf(dump, sizeof dump, "%s/dump_%s", tmpdir, name);
  snprintf(cmd, sizeof cmd, "./vdp generate --model %s --out %s/%s.npy --dump %s %s >/dev/null 2>%s/%s.log", vdpw, tmpdir, name,
           dump, args, tmpdir, name);
  if (run(cmd)) {
    printf("FAIL - %s: vdp generate failed (log: %s/%s.log)\n", name, tmpdir, name), n_fail++;
    return;
  }
  // every reference tensor the pipeline dumps must be there and match
  DIR *d = opendir(casedir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    size_t L = strlen(e->d_name);
    if (L < 5 || strcmp(e->d_name + L - 4, ".npy") || !strncmp(e->d_name, "unet_", 5)) continue;
    char tname[256];
    snprintf(tname, sizeof tname, "%.*s", (int)(L - 4), e->d_name);
    int64_t sr[8], sg[8];
    int nr, ng;
    float *ref = load(casedir, tname, sr, &nr, 0), *got = load(dump, tname, sg, &ng, 0);
    char what[512];
    snprintf(what, sizeof what, "%s/%s", name, tname);
    if (ref && got) {
      if (nr != ng || numel(sr, nr) != numel(sg, ng)) {
        printf("FAIL - %s: shape differs (%d dims, %lld values vs %d dims, %lld values)\n", what, ng,
               (long long)numel(sg, ng), nr, (long long)numel(sr, nr));
        n_fail++;
      } else {
        int exact = !strcmp(tname, "noise_aug") || !strcmp(tname, "noise_latents") || !strncmp(tname, "step_noise_", 11);
        compare(what, got, ref, numel(sr, nr), exact);
      }
    }
    free(ref), free(got);
  }
  if (d) closedir(d);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/vdp_golden_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    printf("FAIL - mkdtemp\n");
    return 1;
  }
  const char *root = "test/data/golden";
  DIR *d = opendir(root);
  if (!d) {
    printf("FAIL - no %s (run from the repo root)\n", root);
    return 1;
  }
  char names[64][256];
  int nc = 0;
  struct dirent *e;
  while ((e = readdir(d)) && nc < 64)
    if (e->d_name[0] != '.') snprintf(names[nc++], sizeof names[0], "%s", e->d_name);
  closedir(d);
  qsort(names, (size_t)nc, sizeof names[0], (int (*)(const void *, const void *))strcmp);
  printf("# tolerance rule: err = max|vdp - ref| / max(1, max|ref|) <= %.0e; random draws bit-exact\n", TOL);
  int ncase = 0;
  for (int i = 0; i < nc; i++) {
    char casedir[1024], model[1600];
    snprintf(casedir, sizeof casedir, "%s/%.200s", root, names[i]);
    struct stat st;
    if (stat(casedir, &st) || !S_ISDIR(st.st_mode)) continue;
    if (case_model(casedir, model, sizeof model)) {
      printf("FAIL - %s: no model in case.json\n", names[i]), n_fail++;
      continue;
    }
    const char *vdpw = convert_model(tmpdir, model);
    if (!vdpw) {
      printf("FAIL - convert %s\n", model), n_fail++;
      continue;
    }
    char err[1024];
    VdpFile f;
    Models *m = vdp_calloc(1, sizeof *m, "models");
    if (vdpw_open(vdpw, &f, err, sizeof err) || models_load(&f, &backend_cpu, m, WANT_ALL, err, sizeof err)) {
      printf("FAIL - %s: %s\n", names[i], err), n_fail++;
      free(m);
      continue;
    }
    check_components(casedir, names[i], m);
    models_free(m), free(m), vdpw_close(&f);
    char args[1024];
    snprintf(args, sizeof args, "%s/args.txt", casedir);
    if (access(args, R_OK) == 0) check_pipeline(casedir, names[i], vdpw);
    ncase++;
  }
  if (ncase == 0) printf("FAIL - no golden cases found\n"), n_fail++;
  if (n_fail == 0) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    run(cmd);
  } else {
    printf("# outputs kept in %s\n", tmpdir);
  }
  return n_fail ? 1 : 0;
}
