// golden.h — what the golden tests (test_golden.c, gpu_pipeline.c) share: the one tolerance rule, reading a
// case's case.json, and converting its model. The rule:
//     err = max|got - ref| / max(1, max|ref|)
// absolute for values of order one (frames in [0,1]), relative for large ones (latents scaled by sigma up
// to 700); random draws are held to bit equality instead. Non-finite values always fail.
#ifndef VDP_GOLDEN_H
#define VDP_GOLDEN_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int64_t numel(const int64_t *shape, int ndim) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

typedef struct {
  double err, maxdiff, maxref;
  long long n, differ, nonfinite;  // values, values not bit-identical, non-finite values in got
} GoldenDiff;

static inline GoldenDiff golden_diff(const float *got, const float *ref, int64_t n) {
  GoldenDiff d = {.n = n};
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(got[i])) d.nonfinite++;
    double x = fabs((double)got[i] - (double)ref[i]);
    if (x > d.maxdiff || x != x) d.maxdiff = x;
    if (fabs(ref[i]) > d.maxref) d.maxref = fabs(ref[i]);
    if (memcmp(&got[i], &ref[i], 4)) d.differ++;
  }
  d.err = d.maxdiff / (d.maxref > 1 ? d.maxref : 1);
  return d;
}

static inline int golden_ok(const GoldenDiff *d, int exact, double tol) {
  return d->nonfinite == 0 && (exact ? d->differ == 0 : d->err <= tol);
}

// One line in the test protocol; tag is "ok -", "FAIL -" or an informational prefix.
static inline void golden_print(const char *tag, const char *what, const GoldenDiff *d, int exact, double tol) {
  if (exact)
    printf("%s %s bit-exact: %lld of %lld values differ (max abs diff %.3g)\n", tag, what, d->differ, d->n, d->maxdiff);
  else
    printf("%s %s err=%.3g (tol %.0e; max|diff| %.3g, max|ref| %.3g, n=%lld%s)\n", tag, what, d->err, tol, d->maxdiff,
           d->maxref, d->n, d->nonfinite ? ", NON-FINITE" : "");
}

// "key": "string" of the case's case.json (the generator writes flat, simple JSON) into out.
static inline int case_str(const char *casedir, const char *key, char *out, size_t n) {
  char path[1200], buf[16384], pat[96];
  snprintf(path, sizeof path, "%s/case.json", casedir);
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = 0;
  snprintf(pat, sizeof pat, "\"%s\"", key);
  char *p = strstr(buf, pat);
  if (!p || !(p = strchr(p + strlen(pat), '"'))) return -1;
  char *e = strchr(p + 1, '"');
  if (!e || (size_t)(e - p) >= n) return -1;
  snprintf(out, n, "%.*s", (int)(e - p - 1), p + 1);
  return 0;
}

// What `vdp convert` makes the case's model from: case.json's "model" (a folder or a single file), followed
// by its "convert_args" when present (e.g. "--unet test/data/models/X.safetensors --sampler animatelcm").
static inline int case_model(const char *casedir, char *out, size_t n) {
  char model[512], args[1024];
  if (case_str(casedir, "model", model, sizeof model)) return -1;
  if (case_str(casedir, "convert_args", args, sizeof args)) args[0] = 0;
  return snprintf(out, n, "%s%s%s", model, args[0] ? " " : "", args) >= (int)n ? -1 : 0;
}

// The model folder (e.g. test/data/models/tiny3) converted to an fp32 .vdpw in tmpdir with ./vdp convert,
// once per model; NULL when the conversion failed.
static inline const char *convert_model(const char *tmpdir, const char *model) {
  static char done[8][1600], out[8][512];
  static int n = 0;
  for (int i = 0; i < n; i++)
    if (!strcmp(done[i], model)) return out[i];
  if (n == 8) return NULL;
  snprintf(out[n], sizeof out[n], "%s/model%d.vdpw", tmpdir, n);
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "./vdp convert %s %s --dtype fp32 >/dev/null 2>&1", model, out[n]);
  if (system(cmd)) {
    printf("# command failed: %s\n", cmd);
    return NULL;
  }
  snprintf(done[n], sizeof done[n], "%s", model);
  return out[n++];
}

#endif
