// fuzz_vdpw.c — libFuzzer target for the .vdpw reader (vdpw_parse on an in-memory buffer).
// Build and run: test/fuzz.sh (clang -fsanitize=fuzzer,address,undefined).
// Every input must either parse (then every tensor lies inside the buffer) or fail with a message.
#include "vdp.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // A private copy sized exactly to the input, so ASan catches any read past its end.
  uint8_t *buf = malloc(size ? size : 1);
  if (size) memcpy(buf, data, size);
  VdpFile f;
  char err[512];
  err[0] = 0;
  if (vdpw_parse(buf, size, &f, err, sizeof err) == 0) {
    volatile uint8_t sink = 0;
    for (int i = 0; i < f.n_tensors; i++) {
      const VdpTensor *t = &f.tensors[i];
      if (t->nbytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
      if (vdpw_find(&f, t->name) != t) abort();  // the table is sorted and unique
    }
    (void)sink;
    vdpw_close(&f);
  } else if (!err[0]) {
    abort();  // a failure must come with a message
  }
  free(buf);
  return 0;
}
