// test_image.c — image.c against Pillow / diffusers references (test/data/image/, written by
// test/golden/make_image_golden.py), plus error handling of every loader. Run from the repo root.
#include "vdp.h"
#include "test/check.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <unistd.h>

#define DATA "test/data/image/"


// ---- temporary files (removed at exit)
static char tmpdir[64];
static char tmpfiles[64][128];
static int ntmp = 0;

static const char *tmp_path(const char *name) {
  snprintf(tmpfiles[ntmp], sizeof tmpfiles[0], "%s/%s", tmpdir, name);
  return tmpfiles[ntmp++];
}

static void cleanup(void) {
  for (int i = 0; i < ntmp; i++) unlink(tmpfiles[i]);
  if (tmpdir[0]) rmdir(tmpdir);
}

static uint8_t *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
  *n = fread(b, 1, (size_t)len, f);
  fclose(f);
  return b;
}

static void write_file(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fwrite(b, 1, n, f);
  fclose(f);
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xffffffffu;
}

// Loads a file that must load (reference data); exits on failure since nothing else can be checked.
static VdpImage must_load(const char *path) {
  VdpImage im;
  char err[512];
  if (image_load(path, &im, err, sizeof err) != 0) {
    printf("FAIL - load %s: %s\n", path, err);
    exit(1);
  }
  return im;
}

// Compares two RGB8 images; returns number of differing bytes (or -1 on size mismatch) and max |diff|.
static long img_diff(const VdpImage *a, const VdpImage *b, int *maxd) {
  *maxd = 0;
  if (a->w != b->w || a->h != b->h) return -1;
  long n = 0;
  for (size_t i = 0; i < (size_t)a->w * a->h * 3; i++) {
    int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
    if (d) n++;
    if (d > *maxd) *maxd = d;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------
static void test_decode(void) {
  // PNG: exact match with Pillow's convert("RGB")
  const char *pngs[] = {"rgb", "rgba", "grey", "la", "pal", "rgb16", "grey16", "grey4", "interlaced"};
  for (size_t i = 0; i < sizeof pngs / sizeof *pngs; i++) {
    char p[256], r[256], name[64];
    snprintf(p, sizeof p, DATA "%s.png", pngs[i]);
    snprintf(r, sizeof r, DATA "%s.ref.png", pngs[i]);
    snprintf(name, sizeof name, "png_%s", pngs[i]);
    VdpImage a = must_load(p), b = must_load(r);
    int maxd;
    long n = img_diff(&a, &b, &maxd);
    check(n == 0, name, "%dx%d vs Pillow %dx%d: %ld differing bytes (max %d)", a.w, a.h, b.w, b.h, n, maxd);
    image_free(&a);
    image_free(&b);
  }
  // JPEG: Pillow decodes with libjpeg-turbo and the same (default) settings: islow IDCT, fancy
  // upsampling. Allow at most 1 level of difference for other libjpeg-turbo builds; report exact counts.
  const char *jpgs[] = {"j420", "j422", "j444", "jprog", "jgrey", "jcmyk", "jexif2", "jexif3",
                        "jexif4", "jexif5", "jexif6", "jexif7", "jexif8"};
  for (size_t i = 0; i < sizeof jpgs / sizeof *jpgs; i++) {
    char p[256], r[256], name[64];
    snprintf(p, sizeof p, DATA "%s.jpg", jpgs[i]);
    snprintf(r, sizeof r, DATA "%s.ref.png", jpgs[i]);
    snprintf(name, sizeof name, "jpeg_%s", jpgs[i]);
    VdpImage a = must_load(p), b = must_load(r);
    int maxd;
    long n = img_diff(&a, &b, &maxd);
    check(n >= 0 && maxd <= 1, name, "%dx%d vs Pillow %dx%d: %ld differing bytes, max |diff| %d", a.w, a.h, b.w,
          b.h, n, maxd);
    image_free(&a);
    image_free(&b);
  }
}

// FNV-1a 64 of the RGB bytes (same as the generator's).
static uint64_t fnv1a64(const uint8_t *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static void test_lanczos(void) {
  struct {
    const char *src;
    int w, h;
  } full[] = {{"rgb", 32, 24}, {"rgb", 150, 100}, {"rgb", 67, 90}, {"rgb", 20, 45}, {"rgb", 90, 20}, {"big", 128, 72}};
  for (size_t i = 0; i < sizeof full / sizeof *full; i++) {
    char p[256], r[256], name[64];
    snprintf(p, sizeof p, DATA "%s.png", full[i].src);
    snprintf(r, sizeof r, DATA "lz_%s_%dx%d.png", full[i].src, full[i].w, full[i].h);
    snprintf(name, sizeof name, "lanczos_%s_%dx%d", full[i].src, full[i].w, full[i].h);
    VdpImage s = must_load(p), ref = must_load(r), d;
    image_resize_lanczos(&s, &d, full[i].w, full[i].h);
    int maxd;
    long n = img_diff(&d, &ref, &maxd);
    check(n == 0, name, "%dx%d -> %dx%d vs Pillow: %ld differing bytes (max %d)", s.w, s.h, d.w, d.h, n, maxd);
    image_free(&s);
    image_free(&ref);
    image_free(&d);
  }

  // Many more sizes, compared by hash of Pillow's output.
  FILE *f = fopen(DATA "lanczos_hashes.txt", "r");
  if (!f) {
    check(0, "lanczos_hashes", "cannot open " DATA "lanczos_hashes.txt");
    return;
  }
  VdpImage rgb = must_load(DATA "rgb.png"), big = must_load(DATA "big.png");
  char src[64], bad[512] = "";
  int w, h, total = 0, mism = 0;
  unsigned long long want;
  while (fscanf(f, "%63s %d %d %llx", src, &w, &h, &want) == 4) {
    const VdpImage *s = strcmp(src, "big.png") == 0 ? &big : &rgb;
    VdpImage d;
    image_resize_lanczos(s, &d, w, h);
    uint64_t got = fnv1a64(d.rgb, (size_t)w * h * 3);
    total++;
    if (got != want) {
      mism++;
      size_t l = strlen(bad);
      snprintf(bad + l, sizeof bad - l, " %s->%dx%d", src, w, h);
    }
    image_free(&d);
  }
  fclose(f);
  check(total >= 40 && mism == 0, "lanczos_hashes", "%d sizes (up, down, one-axis, identity, 1-pixel): %d differ%s",
        total, mism, bad);

  // In-place use (dst == src) gives the same pixels as a separate destination.
  VdpImage a, b = must_load(DATA "rgb.png");
  image_resize_lanczos(&rgb, &a, 40, 50);
  image_resize_lanczos(&b, &b, 40, 50);
  int maxd;
  long n = img_diff(&a, &b, &maxd);
  check(n == 0, "lanczos_in_place", "%ld differing bytes", n);
  image_free(&a);
  image_free(&b);
  image_free(&rgb);
  image_free(&big);
}

static void test_antialias(void) {
  struct {
    int iw, ih, ho, wo;
  } cases[] = {{256, 144, 56, 56}, {48, 40, 32, 32}, {30, 20, 64, 50}, {280, 150, 35, 70}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char p[256], r[256], name[64], err[512];
    snprintf(p, sizeof p, DATA "aa_in_%dx%d.png", cases[i].iw, cases[i].ih);
    snprintf(r, sizeof r, DATA "aa_%dx%d_%dx%d.npy", cases[i].iw, cases[i].ih, cases[i].ho, cases[i].wo);
    snprintf(name, sizeof name, "antialias_%dx%d_to_%dx%d", cases[i].iw, cases[i].ih, cases[i].wo, cases[i].ho);
    VdpImage im = must_load(p);
    int h = im.h, w = im.w, ho = cases[i].ho, wo = cases[i].wo;
    // [h, w, 3] uint8 -> [3, h, w] in [-1, 1], float32 as the pipeline computes it (/255, *2, -1)
    float *x = malloc(sizeof(float) * 3 * h * w), *y = malloc(sizeof(float) * 3 * ho * wo);
    for (int c = 0; c < 3; c++)
      for (int k = 0; k < h * w; k++) x[c * h * w + k] = (float)im.rgb[k * 3 + c] / 255.0f * 2.0f - 1.0f;
    resize_antialias(y, x, 3, h, w, ho, wo);
    float *ref;
    int64_t shape[8];
    int nd;
    if (npy_load_f32(r, &ref, shape, &nd, err, sizeof err) != 0) {
      check(0, name, "%s", err);
    } else if (nd != 3 || shape[0] != 3 || shape[1] != ho || shape[2] != wo) {
      check(0, name, "reference shape mismatch");
      free(ref);
    } else {
      double maxe = 0, sum = 0, maxv = 0;
      for (int k = 0; k < 3 * ho * wo; k++) {
        double e = fabs((double)y[k] - ref[k]);
        if (e > maxe || e != e) maxe = e;
        sum += e;
        if (fabs(ref[k]) > maxv) maxv = fabs(ref[k]);
      }
      check(maxe <= 1e-6, name, "vs diffusers (torch fp32): max abs err %.3g, mean %.3g (|ref| <= %.3f)", maxe,
            sum / (3.0 * ho * wo), maxv);
      free(ref);
    }
    free(x);
    free(y);
    image_free(&im);
  }
}

// The fast antialias resize (blur only where the bicubic reads) against the direct form (blur every
// pixel): bit-identical, on large downscales, upscales, mixed axes, odd and degenerate sizes.
static void test_antialias_fast(void) {
  struct { int c, h, w, ho, wo; } cases[] = {
      {3, 2000, 3000, 224, 224}, {3, 1999, 1501, 224, 224}, {3, 576, 1024, 224, 224}, {2, 37, 5000, 224, 224},
      {1, 5000, 7, 3, 50}, {3, 5, 7, 224, 224}, {1, 1, 4001, 1, 224}, {1, 300, 1, 224, 1}, {3, 224, 224, 224, 224}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int c = cases[i].c, h = cases[i].h, w = cases[i].w, ho = cases[i].ho, wo = cases[i].wo;
    size_t nin = (size_t)c * h * w, nout = (size_t)c * ho * wo;
    float *x = malloc(sizeof(float) * nin), *a = malloc(sizeof(float) * nout), *b = malloc(sizeof(float) * nout);
    uint32_t r = 12345u + (uint32_t)i;
    for (size_t k = 0; k < nin; k++) {  // smooth gradients plus noise, in [-1, 1]
      r = r * 1664525u + 1013904223u;
      x[k] = (float)((k % (size_t)w) * 3 % 255) / 255.0f - 0.5f + (float)(r >> 8) / 16777216.0f * 0.5f;
    }
    double t0 = vdp_now();
    resize_antialias_full(a, x, c, h, w, ho, wo);
    double t1 = vdp_now();
    resize_antialias(b, x, c, h, w, ho, wo);
    double t2 = vdp_now();
    size_t diff = 0;
    for (size_t k = 0; k < nout; k++) diff += memcmp(&a[k], &b[k], 4) != 0;
    char name[96];
    snprintf(name, sizeof name, "antialias_fast_%dx%dx%d_to_%dx%d", c, h, w, ho, wo);
    check(diff == 0, name, "bit-identical to the full blur: %zu of %zu values differ (full %.3f s, fast %.3f s)", diff,
          nout, t1 - t0, t2 - t1);
    free(x), free(a), free(b);
  }
}

// The RGB8 form (the pipeline's CLIP input, converted row by row inside the resize) against the float copy
// it replaces (2·(v/255) - 1 for the whole image, then resize_antialias): bit-identical, odd sizes too.
static void test_antialias_rgb8(void) {
  struct { int h, w, ho, wo; } cases[] = {{1999, 1501, 224, 224}, {576, 1024, 224, 224}, {5, 7, 224, 224}, {1, 301, 1, 224}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int h = cases[i].h, w = cases[i].w, ho = cases[i].ho, wo = cases[i].wo;
    size_t npix = (size_t)h * w, nout = (size_t)3 * ho * wo;
    uint8_t *rgb = malloc(npix * 3);
    float *x = malloc(sizeof(float) * npix * 3), *a = malloc(sizeof(float) * nout), *b = malloc(sizeof(float) * nout);
    uint32_t r = 777u + (uint32_t)i;
    for (size_t k = 0; k < npix * 3; k++) r = r * 1664525u + 1013904223u, rgb[k] = (uint8_t)(((k / 3) % (size_t)w) + (r >> 27));
    for (int ch = 0; ch < 3; ch++)
      for (size_t k = 0; k < npix; k++) x[ch * npix + k] = (float)rgb[k * 3 + ch] / 255.0f * 2.0f - 1.0f;
    resize_antialias(a, x, 3, h, w, ho, wo);
    resize_antialias_rgb8(b, rgb, h, w, ho, wo);
    size_t diff = 0;
    for (size_t k = 0; k < nout; k++) diff += memcmp(&a[k], &b[k], 4) != 0;
    char name[96];
    snprintf(name, sizeof name, "antialias_rgb8_%dx%d_to_%dx%d", h, w, ho, wo);
    check(diff == 0, name, "bit-identical to resizing the float copy: %zu of %zu values differ", diff, nout);
    free(rgb), free(x), free(a), free(b);
  }
}

// ---------------------------------------------------------------------------------------------------
// Error handling: every broken input returns -1 with a message that names the file.
static void expect_load_error(const char *name, const char *path, const char *want) {
  VdpImage im = {123, 456, (uint8_t *)1};
  char err[512] = "";
  int rc = image_load(path, &im, err, sizeof err);
  int ok = rc == -1 && strstr(err, path) != NULL && im.rgb == NULL && (!want || strstr(err, want) != NULL);
  check(ok, name, "rc %d, message: %s", rc, err);
  if (rc == 0) image_free(&im);
}

static void test_load_errors(void) {
  expect_load_error("err_missing_file", "test/data/image/does_not_exist.png", "No such file");
  write_file(tmp_path("empty.png"), "", 0);
  expect_load_error("err_empty_file", tmpfiles[ntmp - 1], "empty");
  const char garbage[] = "this is not an image at all, just some text\n";
  write_file(tmp_path("garbage.jpg"), garbage, sizeof garbage);
  expect_load_error("err_garbage_file", tmpfiles[ntmp - 1], "not a PNG or JPEG");

  size_t n;
  uint8_t *png = read_file(DATA "rgb.png", &n);
  write_file(tmp_path("trunc_sig.png"), png, 5);  // shorter than the PNG signature
  expect_load_error("err_png_truncated_signature", tmpfiles[ntmp - 1], NULL);
  write_file(tmp_path("trunc_hdr.png"), png, 20);  // inside IHDR
  expect_load_error("err_png_truncated_header", tmpfiles[ntmp - 1], "end of file");
  write_file(tmp_path("trunc_half.png"), png, n / 2);  // inside the image data
  expect_load_error("err_png_truncated_data", tmpfiles[ntmp - 1], "end of file");
  write_file(tmp_path("trunc_tail.png"), png, n - 6);  // IEND cut
  expect_load_error("err_png_truncated_iend", tmpfiles[ntmp - 1], NULL);
  {
    uint8_t *c = malloc(n);
    memcpy(c, png, n);
    c[n / 2] ^= 0x55;  // corrupt a byte inside IDAT: CRC mismatch
    write_file(tmp_path("crc.png"), c, n);
    expect_load_error("err_png_bad_crc", tmpfiles[ntmp - 1], NULL);
    // IHDR with width 0, then with width 100000 (CRC recomputed so libpng reaches the size checks)
    memcpy(c, png, n);
    memset(c + 16, 0, 4);
    uint32_t crc = crc32_png(c + 12, 17);
    c[29] = crc >> 24; c[30] = crc >> 16; c[31] = crc >> 8; c[32] = crc;
    write_file(tmp_path("zero.png"), c, n);
    expect_load_error("err_png_zero_width", tmpfiles[ntmp - 1], NULL);
    c[16] = 0; c[17] = 1; c[18] = 0x86; c[19] = 0xa0;  // 100000
    crc = crc32_png(c + 12, 17);
    c[29] = crc >> 24; c[30] = crc >> 16; c[31] = crc >> 8; c[32] = crc;
    write_file(tmp_path("huge.png"), c, n);
    expect_load_error("err_png_huge_width", tmpfiles[ntmp - 1], "out of range (each side 1..16384)");
    // 16384 x 16384 (268 megapixels, what a 783 KB all-zero PNG can announce): refused from the header,
    // naming the limit and the flag; with the limit raised the decoder runs (and finds the data short)
    c[16] = 0; c[17] = 0; c[18] = 0x40; c[19] = 0; c[20] = 0; c[21] = 0; c[22] = 0x40; c[23] = 0;
    crc = crc32_png(c + 12, 17);
    c[29] = crc >> 24; c[30] = crc >> 16; c[31] = crc >> 8; c[32] = crc;
    write_file(tmp_path("bomb.png"), c, n);
    double t0 = vdp_now();
    expect_load_error("err_png_pixel_bomb", tmpfiles[ntmp - 1], "exceeds the limit of 178956970 pixels");
    expect_load_error("err_png_pixel_bomb_names_flag", tmpfiles[ntmp - 1], "--max-pixels");
    check(vdp_now() - t0 < 1.0, "err_png_pixel_bomb_fast", "refused in %.3f s", vdp_now() - t0);
    image_set_max_pixels((uint64_t)16384 * 16384);
    VdpImage im;
    char e2[512] = "";
    int rc = image_load(tmpfiles[ntmp - 1], &im, e2, sizeof e2);
    check(rc == -1 && !strstr(e2, "exceeds the limit"), "png_max_pixels_raised", "rc %d: %s", rc, e2);
    image_set_max_pixels(IMG_DEFAULT_MAX_PIXELS);
    free(c);
  }
  free(png);

  uint8_t *jpg = read_file(DATA "j420.jpg", &n);
  write_file(tmp_path("trunc_half.jpg"), jpg, n / 2);
  expect_load_error("err_jpeg_truncated_data", tmpfiles[ntmp - 1], "truncated");
  write_file(tmp_path("trunc_hdr.jpg"), jpg, 40);
  expect_load_error("err_jpeg_truncated_header", tmpfiles[ntmp - 1], NULL);
  {
    // Find SOF0 (ff c0): length(2) precision(1) height(2) width(2)
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n; i++)
      if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
        sof = i;
        break;
      }
    uint8_t *c = malloc(n);
    memcpy(c, jpg, n);
    c[sof + 5] = 0; c[sof + 6] = 0;  // height 0
    write_file(tmp_path("zero.jpg"), c, n);
    expect_load_error("err_jpeg_zero_height", tmpfiles[ntmp - 1], NULL);
    memcpy(c, jpg, n);
    c[sof + 5] = 0x4e; c[sof + 6] = 0x20; c[sof + 7] = 0x4e; c[sof + 8] = 0x20;  // 20000 x 20000
    write_file(tmp_path("huge.jpg"), c, n);
    expect_load_error("err_jpeg_huge_size", tmpfiles[ntmp - 1], "out of range");
    c[sof + 5] = 0x3e; c[sof + 6] = 0x80; c[sof + 7] = 0x3e; c[sof + 8] = 0x80;  // 16000 x 16000
    write_file(tmp_path("bomb.jpg"), c, n);
    expect_load_error("err_jpeg_pixel_bomb", tmpfiles[ntmp - 1], "exceeds the limit");
    // Garbage after the headers: corrupt entropy data is recovered by libjpeg (as in Pillow); the
    // call must not crash, whatever it returns.
    memcpy(c, jpg, n);
    for (size_t i = n / 2; i < n - 2; i += 7) c[i] = (uint8_t)(i * 31);
    write_file(tmp_path("corrupt.jpg"), c, n);
    VdpImage im;
    char err[512] = "";
    int rc = image_load(tmpfiles[ntmp - 1], &im, err, sizeof err);
    check(rc == 0 || (rc == -1 && err[0]), "err_jpeg_corrupt_entropy", "rc %d (%s)", rc, rc ? err : "decoded");
    if (rc == 0) image_free(&im);
    free(c);
  }
  free(jpg);
  // Extension does not matter, magic does: a JPEG named .png loads.
  {
    size_t m;
    uint8_t *b = read_file(DATA "j444.jpg", &m);
    write_file(tmp_path("really_a_jpeg.png"), b, m);
    free(b);
    VdpImage im;
    char err[512] = "";
    int rc = image_load(tmpfiles[ntmp - 1], &im, err, sizeof err);
    check(rc == 0 && im.w == 64 && im.h == 48, "load_by_magic", "rc %d %dx%d %s", rc, im.w, im.h, err);
    if (rc == 0) image_free(&im);
  }
}

// Inputs that are not regular files get a named error at once (a FIFO used to block forever in open).
static void test_special_inputs(void) {
  const char *fifo = tmp_path("fifo.png");
  if (mkfifo(fifo, 0600) != 0) {
    check(0, "mkfifo", "%s", strerror(errno));
    return;
  }
  double t0 = vdp_now();
  expect_load_error("err_image_fifo", fifo, "FIFO");
  float *d = NULL;
  int64_t sh[8];
  int nd;
  char err[512] = "";
  int rc = npy_load_f32(fifo, &d, sh, &nd, err, sizeof err);
  check(rc == -1 && strstr(err, "FIFO") && vdp_now() - t0 < 5, "err_npy_fifo", "rc %d in %.2f s: %s", rc, vdp_now() - t0, err);
  expect_load_error("err_image_directory", tmpdir, "is a directory");
  expect_load_error("err_image_device", "/dev/zero", "character device");
  const char *link = tmp_path("zero_link.png");
  if (symlink("/dev/zero", link) == 0) expect_load_error("err_image_device_link", link, "character device");
}

// The output rule: exclusive temporary + rename; no symlink, device, directory or read-only target.
static int temps_left(void) {  // files named .NAME.XXXXXXXX.tmp in the test folder
  DIR *d = opendir(tmpdir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] == '.' && strlen(e->d_name) > 4 && !strcmp(e->d_name + strlen(e->d_name) - 4, ".tmp")) n++;
  if (d) closedir(d);
  return n;
}

static void test_output_rule(void) {
  char err[600];
  float v[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[1] = {6};
  out_set_replace(1);
  // a symlink target is neither followed nor replaced
  const char *victim = tmp_path("victim.txt"), *link = tmp_path("link.npy");
  write_file(victim, "precious", 8);
  int rc = symlink("victim.txt", link);
  rc = rc ? rc : npy_save_f32(link, v, shape, 1, err, sizeof err);
  size_t n = 0;
  uint8_t *b = read_file(victim, &n);
  struct stat st;
  check(rc == -1 && strstr(err, "symbolic link") && n == 8 && !memcmp(b, "precious", 8) && lstat(link, &st) == 0 &&
        S_ISLNK(st.st_mode), "out_symlink_target_refused", "rc %d: %s", rc, err);
  free(b);
  // devices, FIFOs and directories are never replaced. The device is a twin of /dev/null made here
  // (root only; CI runs as root), never /dev/null itself, which a regression would destroy.
  const char *dev = tmp_path("null.npy");
  if (mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0) {
    rc = npy_save_f32(dev, v, shape, 1, err, sizeof err);
    check(rc == -1 && strstr(err, "character device") && lstat(dev, &st) == 0 && S_ISCHR(st.st_mode),
          "out_device_refused", "rc %d: %s", rc, err);
  } else {
    printf("ok - out_device_refused skipped: mknod needs root (%s); the FIFO case below covers non-regular targets\n",
           strerror(errno));
  }
  unlink(dev);
  mkfifo(dev, 0600);
  rc = npy_save_f32(dev, v, shape, 1, err, sizeof err);
  check(rc == -1 && strstr(err, "FIFO") && lstat(dev, &st) == 0 && S_ISFIFO(st.st_mode), "out_fifo_refused", "rc %d: %s", rc, err);
  const char *dir = tmp_path("adir.npy");
  mkdir(dir, 0700);
  rc = npy_save_f32(dir, v, shape, 1, err, sizeof err);
  check(rc == -1 && strstr(err, "a directory"), "out_directory_refused", "rc %d: %s", rc, err);
  rmdir(dir);
  // an existing file: replaced with replace = 1, refused (untouched) with 0
  const char *ex = tmp_path("exists.npy");
  write_file(ex, "old", 3);
  out_set_replace(0);
  rc = npy_save_f32(ex, v, shape, 1, err, sizeof err);
  b = read_file(ex, &n);
  check(rc == -1 && strstr(err, "--overwrite") && n == 3, "out_existing_refused", "rc %d, %zu bytes: %s", rc, n, err);
  free(b);
  out_set_replace(1);
  rc = npy_save_f32(ex, v, shape, 1, err, sizeof err);
  b = read_file(ex, &n);
  check(rc == 0 && n == 128 + 24, "out_existing_replaced", "rc %d, %zu bytes %s", rc, n, rc ? err : "");
  free(b);
  // a read-only file is not replaced, even by root (the mode bits are checked, not only access())
  chmod(ex, 0444);
  rc = npy_save_f32(ex, v, shape, 1, err, sizeof err);
  check(rc == -1 && strstr(err, "read-only"), "out_readonly_refused", "rc %d: %s", rc, err);
  chmod(ex, 0644);
  // full disk (a file-size limit; SIGXFSZ ignored as vdp does): no file, no temporary left
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 4096;
  setrlimit(RLIMIT_FSIZE, &lim);
  float *big = calloc(4096, sizeof(float));
  int64_t bs[1] = {4096};
  const char *full = tmp_path("full.npy");
  rc = npy_save_f32(full, big, bs, 1, err, sizeof err);
  check(rc == -1 && access(full, F_OK) != 0 && temps_left() == 0, "out_full_disk_npy", "rc %d, file %s, %d temporaries: %s",
        rc, access(full, F_OK) ? "absent" : "PRESENT", temps_left(), err);
  // a PNG sequence whose third frame does not fit: no frame at all remains
  const int w = 64, h = 64;
  uint8_t *fr = calloc((size_t)3 * w * h * 3, 1);
  uint32_t r = 1;
  for (int i = 0; i < w * h * 3; i++) {  // frame 2: noise (xorshift), which does not compress below 4 KB
    r ^= r << 13, r ^= r >> 17, r ^= r << 5;
    fr[2 * w * h * 3 + i] = (uint8_t)(r >> 24);
  }
  const char *stem = tmp_path("seq");
  rc = png_sequence_save(stem, fr, 3, w, h, err, sizeof err);
  char f0[256];
  png_sequence_name(f0, sizeof f0, stem, 0);
  check(rc == -1 && access(f0, F_OK) != 0 && temps_left() == 0, "out_png_sequence_all_or_nothing",
        "rc %d, frame 0 %s, %d temporaries: %s", rc, access(f0, F_OK) ? "absent" : "PRESENT", temps_left(), err);
  setrlimit(RLIMIT_FSIZE, &old);
  rc = png_sequence_save(stem, fr, 3, w, h, err, sizeof err);
  int all = rc == 0;
  for (int f = 0; f < 3; f++) {
    png_sequence_name(f0, sizeof f0, stem, f);
    all = all && access(f0, F_OK) == 0;
    unlink(f0);
  }
  check(all && temps_left() == 0, "out_png_sequence_written", "rc %d %s", rc, rc ? err : "");
  free(fr), free(big);
  unlink(ex);
  unlink(victim);
  unlink(link);
}

static void test_save_png(void) {
  VdpImage a = must_load(DATA "big.png"), b;
  char err[512] = "";
  const char *p = tmp_path("saved.png");
  int rc = image_save_png(p, a.rgb, a.w, a.h, err, sizeof err);
  int rc2 = rc == 0 ? image_load(p, &b, err, sizeof err) : -1;
  int maxd = 0;
  long n = rc2 == 0 ? img_diff(&a, &b, &maxd) : -1;
  check(rc == 0 && rc2 == 0 && n == 0, "png_save_roundtrip", "%dx%d: %ld differing bytes %s", a.w, a.h, n, err);
  if (rc2 == 0) image_free(&b);
  rc = image_save_png("/nonexistent_dir_vdp/x.png", a.rgb, a.w, a.h, err, sizeof err);
  check(rc == -1 && strstr(err, "/nonexistent_dir_vdp/x.png"), "png_save_error", "rc %d: %s", rc, err);
  image_free(&a);
}

// ---------------------------------------------------------------------------------------------------
static void test_npy(void) {
  char err[512];
  // round trip of several ranks, including 0-d and an empty array
  float v[60];
  for (int i = 0; i < 60; i++) v[i] = (float)(i * 0.37 - 5.5);
  int64_t shapes[4][8] = {{3, 4, 5}, {60}, {0}, {2, 0, 7}};
  int nds[4] = {3, 1, 0, 3};
  for (int t = 0; t < 4; t++) {
    const char *p = tmp_path(t == 0 ? "a.npy" : t == 1 ? "b.npy" : t == 2 ? "c.npy" : "d.npy");
    float *d = NULL;
    int64_t sh[8];
    int nd = -1;
    int rc = npy_save_f32(p, v, shapes[t], nds[t], err, sizeof err);
    int rc2 = rc == 0 ? npy_load_f32(p, &d, sh, &nd, err, sizeof err) : -1;
    int64_t cnt = 1;
    int ok = rc == 0 && rc2 == 0 && nd == nds[t];
    for (int i = 0; ok && i < nd; i++) {
      ok = sh[i] == shapes[t][i];
      cnt *= sh[i];
    }
    if (ok) ok = memcmp(d, v, sizeof(float) * cnt) == 0;
    struct stat st;
    int aligned = stat(p, &st) == 0 && (st.st_size - 4 * cnt) % 64 == 0;  // header padded to 64
    char name[32];
    snprintf(name, sizeof name, "npy_roundtrip_%dd_%lld", nds[t], (long long)cnt);
    check(ok && aligned, name, "rc %d/%d ndim %d, header aligned %d %s", rc, rc2, nd, aligned, rc2 ? err : "");
    free(d);
  }
  // float16 file written by numpy == its float32 conversion written by numpy
  {
    float *a = NULL, *b = NULL;
    int64_t sa[8], sb[8];
    int na, nb;
    int ra = npy_load_f32(DATA "f16.npy", &a, sa, &na, err, sizeof err);
    int rb = npy_load_f32(DATA "f16_as_f32.npy", &b, sb, &nb, err, sizeof err);
    int ok = ra == 0 && rb == 0 && na == 3 && nb == 3 && sa[0] == 2 && sa[1] == 3 && sa[2] == 5 &&
             memcmp(sa, sb, 3 * sizeof(int64_t)) == 0 && memcmp(a, b, 30 * sizeof(float)) == 0;
    check(ok, "npy_float16", "rc %d/%d %s", ra, rb, ok ? "30 values equal to numpy's float32 conversion" : err);
    free(a);
    free(b);
  }
  // malformed files: each must fail with a message naming the file
  struct {
    const char *name, *header, *want;
    long data_bytes;
  } bad[] = {
      {"npy_err_fortran", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", "Fortran", 24},
      {"npy_err_dtype_f8", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", "dtype", 48},
      {"npy_err_dtype_be", "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", "dtype", 24},
      {"npy_err_short_data", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", "size mismatch", 20},
      {"npy_err_extra_data", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", "size mismatch", 28},
      {"npy_err_shape_overflow",
       "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", "too large", 0},
      {"npy_err_huge_dim", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "too large", 0},
      {"npy_err_negative_dim", "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", "shape", 0},
      {"npy_err_missing_key", "{'descr': '<f4', 'shape': (2, 3), }", "fortran_order", 24},
      {"npy_err_unknown_key", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", "unexpected key", 8},
      {"npy_err_not_dict", "[1, 2, 3]", "not a dict", 0},
      {"npy_err_unterminated", "{'descr': '<f4", "malformed", 0},
      {"npy_err_bad_shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", "shape", 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    uint8_t buf[512] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    size_t hl = strlen(bad[i].header);
    buf[8] = (uint8_t)hl;
    buf[9] = 0;
    memcpy(buf + 10, bad[i].header, hl);
    memset(buf + 10 + hl, 0, bad[i].data_bytes);
    char fname[64];
    snprintf(fname, sizeof fname, "%s.npy", bad[i].name);
    const char *p = tmp_path(fname);
    write_file(p, buf, 10 + hl + bad[i].data_bytes);
    float *d = NULL;
    int64_t sh[8];
    int nd;
    err[0] = 0;
    int rc = npy_load_f32(p, &d, sh, &nd, err, sizeof err);
    check(rc == -1 && d == NULL && strstr(err, p) && strstr(err, bad[i].want), bad[i].name, "rc %d: %s", rc, err);
    free(d);
  }
  {
    const uint8_t hdr[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0xff, '{'};
    const char *p = tmp_path("npy_err_header_len.npy");
    write_file(p, hdr, sizeof hdr);  // announces 65535 header bytes, has 1
    float *d = NULL;
    int64_t sh[8];
    int nd;
    int rc = npy_load_f32(p, &d, sh, &nd, err, sizeof err);
    check(rc == -1 && strstr(err, "truncated"), "npy_err_truncated_header", "rc %d: %s", rc, err);
    rc = npy_load_f32(DATA "rgb.png", &d, sh, &nd, err, sizeof err);
    check(rc == -1 && strstr(err, "not a .npy"), "npy_err_magic", "rc %d: %s", rc, err);
    rc = npy_load_f32("test/data/image/missing.npy", &d, sh, &nd, err, sizeof err);
    check(rc == -1 && strstr(err, "missing.npy"), "npy_err_missing", "rc %d: %s", rc, err);
  }
}

// ---------------------------------------------------------------------------------------------------
static int have_ffmpeg(void) {
  const char *path = getenv("PATH");
  if (!path) return 0;
  char *dup = strdup(path), *save = NULL;
  int found = 0;
  for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
    char p[1024];
    snprintf(p, sizeof p, "%s/ffmpeg", d);
    found = access(p, X_OK) == 0;
  }
  free(dup);
  return found;
}

static void test_video(void) {
  const int F = 5, w = 33, h = 21;  // odd sides exercise the mp4 padding
  uint8_t *frames = malloc((size_t)F * w * h * 3);
  for (int f = 0; f < F; f++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        uint8_t *p = frames + (((size_t)f * h + y) * w + x) * 3;
        p[0] = (uint8_t)(x * 7 + f * 40);
        p[1] = (uint8_t)(y * 11);
        p[2] = (uint8_t)((x + y) * 5 + f * 20);
      }
  char err[512] = "";
  // Without ffmpeg on PATH: a clear error, no crash (checked by emptying PATH for one call).
  {
    char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
    setenv("PATH", "/nonexistent_vdp_dir", 1);
    int rc = video_save_ffmpeg(tmp_path("noffmpeg.gif"), frames, F, w, h, 7, err, sizeof err);
    if (old) setenv("PATH", old, 1);
    free(old);
    check(rc == -1 && strstr(err, "ffmpeg not found on PATH"), "video_no_ffmpeg_error", "rc %d: %s", rc, err);
  }
  int rc = video_save_ffmpeg(tmp_path("x.avi"), frames, F, w, h, 7, err, sizeof err);
  check(rc == -1 && strstr(err, "x.avi"), "video_bad_extension", "rc %d: %s", rc, err);
  if (!have_ffmpeg()) {
    printf("ok - video_ffmpeg skipped (no ffmpeg)\n");
    free(frames);
    return;
  }
  const char *names[2] = {"v.gif", "v.mp4"};
  for (int i = 0; i < 2; i++) {
    const char *p = tmp_path(names[i]);
    err[0] = 0;
    rc = video_save_ffmpeg(p, frames, F, w, h, 7, err, sizeof err);
    size_t n = 0;
    uint8_t *b = rc == 0 ? read_file(p, &n) : NULL;
    int ok = rc == 0 && b && n > 100 &&
             (i == 0 ? memcmp(b, "GIF89a", 6) == 0 : n > 12 && memcmp(b + 4, "ftyp", 4) == 0);
    char name[32];
    snprintf(name, sizeof name, "video_ffmpeg_%s", names[i] + 2);
    check(ok, name, "rc %d, %zu bytes %s", rc, n, err);
    free(b);
  }
  // ffmpeg failing (unwritable output) is reported through its exit status
  rc = video_save_ffmpeg("/nonexistent_dir_vdp/v.mp4", frames, F, w, h, 7, err, sizeof err);
  check(rc == -1 && strstr(err, "cannot create"), "video_ffmpeg_failure", "rc %d: %s", rc, err);
  free(frames);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/vdp_test_image_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 2;
  }
  atexit(cleanup);
  test_decode();
  test_lanczos();
  test_antialias();
  test_load_errors();
  test_special_inputs();
  test_output_rule();
  test_antialias_fast();
  test_antialias_rgb8();
  test_save_png();
  test_npy();
  test_video();
  return n_fail ? 1 : 0;
}
