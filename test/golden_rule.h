// golden_rule.h — the one tolerance rule of the golden comparisons (test_golden.c, gpu_pipeline.c):
//     err = max|got - ref| / max(1, max|ref|)
// absolute for values of order one (frames in [0,1]), relative for large ones (latents scaled by sigma up
// to 700); random draws are held to bit equality instead. Non-finite values always fail.
#ifndef VDP_GOLDEN_RULE_H
#define VDP_GOLDEN_RULE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

#endif
