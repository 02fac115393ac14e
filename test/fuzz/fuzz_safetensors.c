// fuzz_safetensors.c — libFuzzer target for the safetensors header parser (safetensors.c st_parse_buffer:
// the JSON parser, dtype/shape/offset validation, overlap and duplicate checks).
// Build and run: test/fuzz.sh (clang -fsanitize=fuzzer,address,undefined).
#include "vdp.h"  // st_parse_buffer (section 2b): parses a whole file in memory, touching every tensor's bytes

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);  // exact-size copy: ASan sees any overread
  if (size) memcpy(buf, data, size);
  char err[512];
  err[0] = 0;
  if (st_parse_buffer(buf, size, err, sizeof err) != 0 && !err[0]) abort();  // failures carry a message
  free(buf);
  return 0;
}
