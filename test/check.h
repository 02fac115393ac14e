// test/check.h — one line of run_tests.sh's protocol per check ("ok - NAME detail" or "FAIL - NAME
// detail"), for the test programs whose checks are a condition plus a printf-style detail. n_ok and
// n_fail count them; main returns n_fail != 0.
#ifndef VDP_TEST_CHECK_H
#define VDP_TEST_CHECK_H
#include <stdarg.h>
#include <stdio.h>

static int n_ok = 0, n_fail = 0;

static void check(int cond, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(int cond, const char *name, const char *fmt, ...) {
  char msg[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  printf("%s - %s %s\n", cond ? "ok" : "FAIL", name, msg);
  fflush(stdout);  // interleaves correctly with the stderr of a crash or a child process
  cond ? n_ok++ : n_fail++;
}
#endif
