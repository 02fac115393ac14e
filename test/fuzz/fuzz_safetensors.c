// fuzz_safetensors.c — libFuzzer target for the safetensors header parser (safetensors.c st_parse_buffer:
// the JSON parser, dtype/shape/offset validation, overlap and duplicate checks) and, for every header that
// parses, the single-file SGM checkpoint reader on it (sgm.c sgm_parse_buffer: what the file is, the
// configuration inferred from tensor shapes, the name/shape/dtype mapping and its views into the data).
// Build and run: test/fuzz.sh (clang -fsanitize=fuzzer,address,undefined); it seeds the corpus with
// test/data/sgm/svd_mini.safetensors so that the mutations start from a real SGM checkpoint.
#include "vdp.h"  // st_parse_buffer (section 2b), sgm_parse_buffer (2c)

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);  // exact-size copy: ASan sees any overread
  if (size) memcpy(buf, data, size);
  char err[4096];
  err[0] = 0;
  int rc = st_parse_buffer(buf, size, err, sizeof err);
  if (rc != 0 && !err[0]) abort();  // failures carry a message
  if (rc == 0) {
    err[0] = 0;
    if (sgm_parse_buffer(buf, size, err, sizeof err) != 0 && !err[0]) abort();
  }
  free(buf);
  return 0;
}
