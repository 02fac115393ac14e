// image.c — image and array files, and the two image resizes of the SVD pipeline.
//
//   image_load / image_save_png   PNG (libpng) and JPEG (libjpeg) -> RGB8, like PIL's convert("RGB")
//   image_resize_lanczos          Pillow's Image.resize((w, h), LANCZOS) on RGB8, bit for bit
//                                 (the VAE input, svd-spec.md §1.4)
//   resize_antialias              diffusers' _resize_with_antialiasing (the CLIP input, §1.3)
//   npy_save_f32 / npy_load_f32   NumPy .npy files (reference tensors, CLI outputs)
//   video_save_ffmpeg             frames -> .gif / .mp4 through an ffmpeg child process (§1.12)
//
// Every loader validates what it reads: a broken or hostile file gives -1 and a message naming the
// file and the problem, never a crash and never an allocation sized by an unchecked header field.
#include "vdp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

// Largest accepted image side (IMG_MAX_SIDE in vdp.h): 16384^2 * 3 bytes = 768 MiB, far above any SVD input.
#define IMG_MAX_DIM IMG_MAX_SIDE

// Decoded images above this many pixels are refused before any pixel is decoded (a 1 MB PNG can
// announce 16384 x 16384). The default is Pillow's DecompressionBombError threshold; the CLI's
// --max-pixels changes it.
static uint64_t img_max_pixels = IMG_DEFAULT_MAX_PIXELS;
void image_set_max_pixels(uint64_t n) { img_max_pixels = n; }

static int size_refused(uint64_t w, uint64_t h, char *msg, size_t n) {
  if (w == 0 || h == 0 || w > IMG_MAX_DIM || h > IMG_MAX_DIM) {
    snprintf(msg, n, "image size %llux%llu out of range (each side 1..%d)", (unsigned long long)w,
             (unsigned long long)h, IMG_MAX_DIM);
    return 1;
  }
  if (w * h > img_max_pixels) {
    snprintf(msg, n, "image size %llux%llu = %llu pixels exceeds the limit of %llu pixels (a decompression bomb guard; "
             "raise it with --max-pixels N, up to %llu)", (unsigned long long)w, (unsigned long long)h,
             (unsigned long long)(w * h), (unsigned long long)img_max_pixels, (unsigned long long)IMG_MAX_DIM * IMG_MAX_DIM);
    return 1;
  }
  return 0;
}


// ---------------------------------------------------------------------------------------------------
// PNG loading
// ---------------------------------------------------------------------------------------------------
// libpng reports errors by calling our error callback, which must not return: it longjmps back into
// png_load. Everything that needs freeing after such a jump lives in this heap-allocated context (not
// in automatic variables, whose values are indeterminate after longjmp unless volatile).
typedef struct {
  jmp_buf jb;
  char msg[256];
  png_structp png;
  png_infop info;
  uint8_t *pix;     // decoded rows [h, rowbytes]
  png_bytep *rows;  // h pointers into pix
  uint8_t *out;     // the RGB8 result [h, w, 3]
} PngLoad;

static void png_error_cb(png_structp png, png_const_charp msg) {
  PngLoad *c = (PngLoad *)png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg);
  longjmp(c->jb, 1);
}

// Reads through stdio so that a short file gives a clear message (libpng's own says "Read Error").
static void png_read_cb(png_structp png, png_bytep data, size_t n) {
  FILE *fp = (FILE *)png_get_io_ptr(png);
  if (fread(data, 1, n, fp) != n) png_error(png, ferror(fp) ? "read error" : "unexpected end of file");
}

// Warnings (bad ancillary chunks, odd iCCP profiles, ...) do not affect the pixels: stay quiet.
static void png_warning_cb(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static int png_load(FILE *fp, const char *path, VdpImage *img, char *err, size_t errlen) {
  PngLoad *c = calloc(1, sizeof *c);
  if (!c) return errf(err, errlen, "%s: out of memory", path);
  c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_error_cb, png_warning_cb);
  if (c->png) c->info = png_create_info_struct(c->png);
  if (!c->png || !c->info) {
    png_destroy_read_struct(c->png ? &c->png : NULL, NULL, NULL);
    free(c);
    return errf(err, errlen, "%s: cannot initialise libpng", path);
  }
  if (setjmp(c->jb)) {
    // Reached from png_error_cb: release whatever was allocated so far.
    errf(err, errlen, "%s: invalid or truncated PNG: %s", path, c->msg);
    png_destroy_read_struct(&c->png, &c->info, NULL);
    free(c->rows);
    free(c->pix);
    free(c->out);
    free(c);
    return -1;
  }
  png_set_read_fn(c->png, fp, png_read_cb);
  // libpng's own size limit would only say "Invalid IHDR data": the limits are checked below instead,
  // after the header and before any pixel is decoded.
  png_set_user_limits(c->png, 0x7fffffff, 0x7fffffff);
  png_read_info(c->png, c->info);

  png_uint_32 w = 0, h = 0;
  int depth = 0, ctype = 0, interlace = 0;
  png_get_IHDR(c->png, c->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
  char why[300];
  if (size_refused(w, h, why, sizeof why)) {
    errf(err, errlen, "%s: %s", path, why);
    png_destroy_read_struct(&c->png, &c->info, NULL);
    free(c);
    return -1;
  }

  // Transformations that turn every PNG flavour into 8-bit RGB(A), the way PIL's convert("RGB")
  // sees it: palette -> its RGB entries; grey 1/2/4 bit -> scaled to 0..255 (bit replication, as
  // PIL's "L;2"/"L;4"/"1" unpackers); 16 bit -> high byte (as PIL's "RGB;16B" unpacker); grey ->
  // replicated into R, G, B. Gamma/ICC/sBIT chunks are ignored, as PIL does. Alpha (an alpha channel
  // or tRNS expanded by libpng) is kept here and simply dropped below, as convert("RGB") does.
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
  if (depth == 16) png_set_strip_16(c->png);
  if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(c->png);
  png_set_interlace_handling(c->png);
  png_read_update_info(c->png, c->info);

  int channels = png_get_channels(c->png, c->info);
  size_t rowbytes = png_get_rowbytes(c->png, c->info);
  if (png_get_bit_depth(c->png, c->info) != 8 || (channels != 3 && channels != 4) ||
      rowbytes != (size_t)w * channels)
    png_error(c->png, "unexpected pixel layout after conversion");
  c->pix = malloc(rowbytes * h);
  c->rows = malloc(sizeof(png_bytep) * h);
  c->out = malloc((size_t)w * h * 3);
  if (!c->pix || !c->rows || !c->out) png_error(c->png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++) c->rows[y] = c->pix + y * rowbytes;
  png_read_image(c->png, c->rows);
  png_read_end(c->png, NULL);  // also checks the chunks after the image data: a cut tail is an error

  for (png_uint_32 y = 0; y < h; y++) {
    const uint8_t *src = c->rows[y];
    uint8_t *dst = c->out + (size_t)y * w * 3;
    for (png_uint_32 x = 0; x < w; x++) {
      dst[3 * x + 0] = src[channels * x + 0];
      dst[3 * x + 1] = src[channels * x + 1];
      dst[3 * x + 2] = src[channels * x + 2];
    }
  }
  img->w = (int)w;
  img->h = (int)h;
  img->rgb = c->out;
  png_destroy_read_struct(&c->png, &c->info, NULL);
  free(c->rows);
  free(c->pix);
  free(c);
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// JPEG loading
// ---------------------------------------------------------------------------------------------------
// Same pattern as PNG: libjpeg's error_exit must not return, so it longjmps here, and everything to free
// is reachable from a heap context. Decoder settings are libjpeg's defaults, which are also Pillow's
// (JDCT_ISLOW integer IDCT, fancy upsampling on, no block smoothing for baseline files), so with the
// same libjpeg-turbo IDCT the pixels match Pillow's decode exactly.
typedef struct {
  struct jpeg_error_mgr jerr;  // first member: libjpeg passes &jerr back to the callbacks
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX + 64];
  struct jpeg_decompress_struct cinfo;
  int created;       // jpeg_create_decompress done
  uint8_t *row;      // one decoded scanline [w, components]
  uint8_t *out;      // RGB8 result [h, w, 3]
} JpegLoad;

static void jpeg_error_exit_cb(j_common_ptr ci) {
  JpegLoad *c = (JpegLoad *)ci->err;
  ci->err->format_message(ci, c->msg);
  longjmp(c->jb, 1);
}

// libjpeg recovers from corrupt entropy data with a warning and so does Pillow, so warnings are
// ignored, except one: a file that ends early. libjpeg would pad it with grey; Pillow raises
// "image file is truncated". We make it an error too.
static void jpeg_emit_message_cb(j_common_ptr ci, int level) {
  JpegLoad *c = (JpegLoad *)ci->err;
  if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) {
    snprintf(c->msg, sizeof c->msg, "unexpected end of file (truncated JPEG data)");
    longjmp(c->jb, 1);
  }
}

// EXIF orientation (tag 0x0112 in IFD0 of the APP1 "Exif" segment), 1 when absent or unreadable.
// Every offset is checked against the segment length.
static int exif_orientation(const uint8_t *d, size_t n) {
  if (n < 6 + 8 || memcmp(d, "Exif\0\0", 6) != 0) return 1;
  d += 6;
  n -= 6;
  int le;
  if (d[0] == 'I' && d[1] == 'I') le = 1;
  else if (d[0] == 'M' && d[1] == 'M') le = 0;
  else return 1;
#define RD16(p) (le ? (uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 : (uint32_t)(p)[1] | (uint32_t)(p)[0] << 8)
#define RD32(p) (le ? RD16(p) | RD16((p) + 2) << 16 : RD16((p) + 2) | RD16(p) << 16)
  if (RD16(d + 2) != 42) return 1;
  uint32_t ifd = RD32(d + 4);
  if (ifd > n || n - ifd < 2) return 1;
  uint32_t count = RD16(d + ifd);
  for (uint32_t i = 0; i < count; i++) {
    size_t e = (size_t)ifd + 2 + (size_t)i * 12;
    if (e + 12 > n) return 1;
    if (RD16(d + e) != 0x0112) continue;
    uint32_t type = RD16(d + e + 2), cnt = RD32(d + e + 4);
    uint32_t v = type == 3 ? RD16(d + e + 8) : type == 4 ? RD32(d + e + 8) : 1;
    return cnt == 1 && v >= 1 && v <= 8 ? (int)v : 1;
  }
  return 1;
#undef RD16
#undef RD32
}

// Applies EXIF orientation o (2..8) like PIL.ImageOps.exif_transpose, which diffusers' load_image()
// calls before convert("RGB"). Returns the new buffer (the caller frees the old one) or NULL on OOM.
static uint8_t *apply_orientation(const uint8_t *src, int w, int h, int o, int *wo, int *ho) {
  int swap = o >= 5;  // transpose-like orientations exchange width and height
  int W = swap ? h : w, H = swap ? w : h;
  uint8_t *dst = malloc((size_t)W * H * 3);
  if (!dst) return NULL;
  for (int oy = 0; oy < H; oy++)
    for (int ox = 0; ox < W; ox++) {
      int sx, sy;  // source pixel of output pixel (ox, oy)
      switch (o) {
        case 2: sx = w - 1 - ox; sy = oy; break;                  // FLIP_LEFT_RIGHT
        case 3: sx = w - 1 - ox; sy = h - 1 - oy; break;          // ROTATE_180
        case 4: sx = ox; sy = h - 1 - oy; break;                  // FLIP_TOP_BOTTOM
        case 5: sx = oy; sy = ox; break;                          // TRANSPOSE
        case 6: sx = oy; sy = h - 1 - ox; break;                  // ROTATE_270 (90 deg clockwise)
        case 7: sx = w - 1 - oy; sy = h - 1 - ox; break;          // TRANSVERSE
        default: sx = w - 1 - oy; sy = ox; break;                 // 8: ROTATE_90 (counter-clockwise)
      }
      memcpy(dst + ((size_t)oy * W + ox) * 3, src + ((size_t)sy * w + sx) * 3, 3);
    }
  *wo = W;
  *ho = H;
  return dst;
}

static int jpeg_load(FILE *fp, const char *path, VdpImage *img, char *err, size_t errlen) {
  JpegLoad *c = calloc(1, sizeof *c);
  if (!c) return errf(err, errlen, "%s: out of memory", path);
  struct jpeg_decompress_struct *ci = &c->cinfo;
  ci->err = jpeg_std_error(&c->jerr);
  c->jerr.error_exit = jpeg_error_exit_cb;
  c->jerr.emit_message = jpeg_emit_message_cb;
  if (setjmp(c->jb)) {
    errf(err, errlen, "%s: invalid or truncated JPEG: %s", path, c->msg);
    if (c->created) jpeg_destroy_decompress(ci);
    free(c->row);
    free(c->out);
    free(c);
    return -1;
  }
  jpeg_create_decompress(ci);
  c->created = 1;
  jpeg_stdio_src(ci, fp);
  jpeg_save_markers(ci, JPEG_APP0 + 1, 0xffff);  // APP1: EXIF orientation
  jpeg_read_header(ci, TRUE);

  {
    char why[300];
    if (size_refused(ci->image_width, ci->image_height, why, sizeof why)) {
      jpeg_destroy_decompress(ci);
      free(c);
      return errf(err, errlen, "%s: %s", path, why);
    }
  }
  // Pillow picks the mode from the component count: 1 -> L, 3 -> RGB, 4 -> CMYK; then convert("RGB").
  // libjpeg converts grey/YCbCr/RGB to RGB itself; YCCK is converted to CMYK by libjpeg and CMYK to
  // RGB below with Pillow's formula.
  int cmyk = 0;
  switch (ci->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB: ci->out_color_space = JCS_RGB; break;
    case JCS_CMYK:
    case JCS_YCCK: ci->out_color_space = JCS_CMYK; cmyk = 1; break;
    default:
      snprintf(c->msg, sizeof c->msg, "unsupported colour space (%d components, libjpeg space %d)",
               ci->num_components, (int)ci->jpeg_color_space);
      longjmp(c->jb, 1);
  }
  jpeg_start_decompress(ci);
  int nc = ci->output_components, w = (int)ci->output_width, h = (int)ci->output_height;
  if (nc != (cmyk ? 4 : 3) || w != (int)ci->image_width || h != (int)ci->image_height) {
    snprintf(c->msg, sizeof c->msg, "unexpected decoder output (%d components, %dx%d)", nc, w, h);
    longjmp(c->jb, 1);
  }
  c->row = malloc((size_t)w * nc);
  c->out = malloc((size_t)w * h * 3);
  if (!c->row || !c->out) {
    snprintf(c->msg, sizeof c->msg, "out of memory for %dx%d pixels", w, h);
    longjmp(c->jb, 1);
  }
  while (ci->output_scanline < ci->output_height) {
    uint8_t *dst = c->out + (size_t)ci->output_scanline * w * 3;
    JSAMPROW rp = cmyk ? c->row : dst;  // RGB decodes straight into the result
    if (jpeg_read_scanlines(ci, &rp, 1) != 1) {
      snprintf(c->msg, sizeof c->msg, "decoder returned no scanline");
      longjmp(c->jb, 1);
    }
    if (cmyk) {
      // Pillow reads CMYK JPEGs as "CMYK;I" (Adobe's inverted storage: v -> 255 - v) and converts with
      // cmyk2rgb: R = clip(nk - nk*C/255) with nk = 255 - K and the product divided by 255 with
      // rounding as (t + (t >> 8)) >> 8, t = a*b + 128.
      for (int x = 0; x < w; x++) {
        const uint8_t *p = c->row + 4 * x;
        int nk = 255 - (255 - p[3]);
        for (int k = 0; k < 3; k++) {
          int t = (255 - p[k]) * nk + 128;
          int v = nk - (((t >> 8) + t) >> 8);
          dst[3 * x + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
      }
    }
  }
  int orient = 1;
  for (jpeg_saved_marker_ptr m = ci->marker_list; m; m = m->next)
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
      orient = exif_orientation(m->data, m->data_length);  // first Exif segment only, like Pillow
      break;
    }
  jpeg_finish_decompress(ci);
  jpeg_destroy_decompress(ci);
  c->created = 0;
  free(c->row);
  c->row = NULL;

  if (orient != 1) {
    int w2, h2;
    uint8_t *r = apply_orientation(c->out, w, h, orient, &w2, &h2);
    if (!r) {
      free(c->out);
      free(c);
      return errf(err, errlen, "%s: out of memory applying EXIF orientation", path);
    }
    free(c->out);
    c->out = r;
    w = w2;
    h = h2;
  }
  img->w = w;
  img->h = h;
  img->rgb = c->out;
  free(c);
  return 0;
}

int image_load(const char *path, VdpImage *img, char *err, size_t errlen) {
  img->w = img->h = 0;
  img->rgb = NULL;
  uint64_t size;
  int fd = open_regular(path, &size, err, errlen);  // a directory, FIFO or device gets a named error
  if (fd < 0) return -1;
  FILE *fp = fdopen(fd, "rb");
  if (!fp) {
    close(fd);
    return errf(err, errlen, "%s: out of memory", path);
  }
  // The format comes from the first bytes, never from the file name.
  uint8_t magic[8] = {0};
  size_t n = fread(magic, 1, sizeof magic, fp);
  int rc;
  if (n == 0) {
    rc = errf(err, errlen, "%s: empty file, expected a PNG or JPEG image", path);
  } else if (fseek(fp, 0, SEEK_SET) != 0) {
    rc = errf(err, errlen, "%s: cannot seek: %s", path, strerror(errno));
  } else if (n == 8 && memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0) {
    rc = png_load(fp, path, img, err, errlen);
  } else if (n >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) {
    rc = jpeg_load(fp, path, img, err, errlen);
  } else {
    rc = errf(err, errlen,
              "%s: not a PNG or JPEG image (first bytes %02x %02x %02x %02x); convert it to PNG first",
              path, magic[0], magic[1], magic[2], magic[3]);
  }
  fclose(fp);
  return rc;
}

void image_free(VdpImage *img) {
  if (!img) return;
  free(img->rgb);
  img->rgb = NULL;
  img->w = img->h = 0;
}

// ---------------------------------------------------------------------------------------------------
// PNG saving
// ---------------------------------------------------------------------------------------------------
typedef struct {
  jmp_buf jb;
  char msg[256];
  png_structp png;
  png_infop info;
} PngSave;

static void png_save_error_cb(png_structp png, png_const_charp msg) {
  PngSave *c = (PngSave *)png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg);
  longjmp(c->jb, 1);
}

// Encodes one RGB8 image into fp (an output temporary); the caller closes and renames it.
static int png_write_fp(FILE *fp, const char *path, const uint8_t *rgb, int w, int h, char *err, size_t errlen) {
  if (w <= 0 || h <= 0 || w > IMG_MAX_DIM || h > IMG_MAX_DIM)
    return errf(err, errlen, "%s: cannot save a %dx%d image (sides must be 1..%d)", path, w, h, IMG_MAX_DIM);
  PngSave *c = calloc(1, sizeof *c);
  if (!c) return errf(err, errlen, "%s: out of memory", path);
  c->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, png_save_error_cb, png_warning_cb);
  if (c->png) c->info = png_create_info_struct(c->png);
  if (!c->png || !c->info) {
    png_destroy_write_struct(c->png ? &c->png : NULL, NULL);
    free(c);
    return errf(err, errlen, "%s: cannot initialise libpng", path);
  }
  if (setjmp(c->jb)) {
    errf(err, errlen, "cannot write PNG %s: %s", path, c->msg);
    png_destroy_write_struct(&c->png, &c->info);
    free(c);
    return -1;
  }
  png_init_io(c->png, fp);
  png_set_IHDR(c->png, c->info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(c->png, c->info);
  for (int y = 0; y < h; y++) png_write_row(c->png, rgb + (size_t)y * w * 3);
  png_write_end(c->png, NULL);
  png_destroy_write_struct(&c->png, &c->info);
  free(c);
  // A full disk shows up here or in out_close's flush/fsync.
  if (ferror(fp)) return errf(err, errlen, "cannot write PNG %s: %s", path, strerror(errno));
  return 0;
}

int image_save_png(const char *path, const uint8_t *rgb, int w, int h, char *err, size_t errlen) {
  VdpOut o;
  if (out_begin(&o, path, out_replace(), err, errlen)) return -1;
  if (png_write_fp(o.fp, path, rgb, w, h, err, errlen)) {
    out_abort(&o);
    return -1;
  }
  return out_commit(&o, err, errlen);
}

void png_sequence_name(char *dst, size_t n, const char *stem, int frame) {
  snprintf(dst, n, "%s_%03d.png", stem, frame);
}

// All or nothing: every frame is encoded into its own temporary first; only when all are written and
// fsynced do they take their names. A failure leaves no frame of this run behind.
int png_sequence_save(const char *stem, const uint8_t *frames, int F, int w, int h, char *err, size_t errlen) {
  VdpOut *o = calloc((size_t)(F > 0 ? F : 1), sizeof *o);
  if (!o) return errf(err, errlen, "%s: out of memory", stem);
  int done = 0, rc = 0, replace = out_replace();
  for (; done < F && !rc; done++) {
    char path[4096];
    png_sequence_name(path, sizeof path, stem, done);
    if (out_begin(&o[done], path, replace, err, errlen)) {
      rc = -1;
      break;
    }
    rc = png_write_fp(o[done].fp, path, frames + (size_t)done * w * h * 3, w, h, err, errlen);
    if (!rc) rc = out_close(&o[done], err, errlen);
  }
  int renamed = 0;  // frames that took their names
  while (!rc && renamed < F) {
    if (out_rename(&o[renamed], err, errlen)) rc = -1;
    else renamed++;
  }
  if (rc) {
    // rename is the last step and rarely fails; if it did, take back the frames already renamed too,
    // so that no partial sequence remains
    for (int f = 0; f < renamed; f++) unlink(o[f].path);
    for (int f = 0; f < done && f < F; f++) out_abort(&o[f]);
  }
  free(o);
  return rc;
}

// ---------------------------------------------------------------------------------------------------
// Pillow's LANCZOS resize, bit for bit (Pillow's libImaging/Resample.c, re-derived)
// ---------------------------------------------------------------------------------------------------
// A separable two-pass convolution. For each output index the filter is centred at
// center = (i + 0.5) * scale in input coordinates (scale = in/out); when downscaling the filter is
// stretched by scale (antialiasing), so its support is 3 * max(scale, 1) input pixels. The weights of
// the input pixels in [xmin, xmin + n) are normalised to sum 1 in double precision, then rounded to
// fixed point with 22 fraction bits; each output is the integer dot product plus 0.5 (in fixed point),
// shifted down and clipped to 0..255. The first pass's result is stored as uint8, which the second
// pass then filters, so the pass order matters (see image_resize_lanczos). A pass whose size does not
// change is skipped; Image.resize to the same size returns a copy.
#define LZ_PRECISION_BITS (32 - 8 - 2)  // 8 bits of result, 2 bits of headroom for negative lobes

static double lz_sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return sin(x) / x;
}

static double lz_lanczos(double x) {
  if (-3.0 <= x && x < 3.0) return lz_sinc(x) * lz_sinc(x / 3);
  return 0.0;
}

// For output size out_size from in_size: per output index, bounds[2i] = first input index,
// bounds[2i+1] = number of taps, and kk[i*ksize .. ] = fixed-point weights. Returns ksize.
// The arithmetic (double, in this order, no fused multiply-add: gcc's -std=c11 implies
// -ffp-contract=off) is what makes the result bit-identical to Pillow; the source box is
// (0, in_size) as float, as Pillow passes it.
static int lz_coeffs(int in_size, int out_size, int **bounds_out, int32_t **kk_out) {
  const float in0 = 0.0f, in1 = (float)in_size;
  double scale = (double)(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 3.0 * filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  double *w = vdp_malloc(sizeof(double) * ksize, "lanczos weights");
  int32_t *kk = vdp_malloc(sizeof(int32_t) * (size_t)out_size * ksize, "lanczos coefficients");
  int *bounds = vdp_malloc(sizeof(int) * 2 * (size_t)out_size, "lanczos bounds");
  for (int xx = 0; xx < out_size; xx++) {
    double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);  // truncation toward zero, as Pillow's (int) cast
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; x++) {
      w[x] = lz_lanczos((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    int32_t *k = kk + (size_t)xx * ksize;
    for (int x = 0; x < ksize; x++) {
      double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
      k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << LZ_PRECISION_BITS))
                   : (int32_t)(0.5 + v * (1 << LZ_PRECISION_BITS));
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  free(w);
  *bounds_out = bounds;
  *kk_out = kk;
  return ksize;
}

// Fixed-point accumulator -> uint8: arithmetic shift, then clip (Pillow's clip8 lookup table).
static inline uint8_t lz_clip8(int32_t v) {
  int32_t s = v >> LZ_PRECISION_BITS;  // v >= -2^31: floor division by 2^22 (gcc: arithmetic shift)
  return (uint8_t)(s < 0 ? 0 : s > 255 ? 255 : s);
}

// One horizontal pass: rows [y0, y0 + rows) of in [*, iw, 3] -> out [rows, ow, 3].
static void lz_pass_h(uint8_t *out, const uint8_t *in, int iw, int ow, int y0, int rows, const int *bounds,
                      const int32_t *kk, int ksize) {
#pragma omp parallel for schedule(static)
  for (int yy = 0; yy < rows; yy++) {
    const uint8_t *row = in + (size_t)(yy + y0) * iw * 3;
    for (int xx = 0; xx < ow; xx++) {
      int xmin = bounds[2 * xx], n = bounds[2 * xx + 1];
      const int32_t *k = kk + (size_t)xx * ksize;
      int32_t s0 = 1 << (LZ_PRECISION_BITS - 1), s1 = s0, s2 = s0;  // +0.5 for rounding
      for (int x = 0; x < n; x++) {
        const uint8_t *p = row + (size_t)(x + xmin) * 3;
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
      }
      uint8_t *q = out + ((size_t)yy * ow + xx) * 3;
      q[0] = lz_clip8(s0);
      q[1] = lz_clip8(s1);
      q[2] = lz_clip8(s2);
    }
  }
}

// One vertical pass: in [*, w, 3] whose row 0 is source row y0 -> out [oh, w, 3].
static void lz_pass_v(uint8_t *out, const uint8_t *in, int w, int oh, int y0, const int *bounds,
                      const int32_t *kk, int ksize) {
#pragma omp parallel for schedule(static)
  for (int yy = 0; yy < oh; yy++) {
    int ymin = bounds[2 * yy] - y0, n = bounds[2 * yy + 1];
    const int32_t *k = kk + (size_t)yy * ksize;
    for (int xx = 0; xx < w; xx++) {
      int32_t s0 = 1 << (LZ_PRECISION_BITS - 1), s1 = s0, s2 = s0;
      for (int y = 0; y < n; y++) {
        const uint8_t *p = in + ((size_t)(y + ymin) * w + xx) * 3;
        s0 += p[0] * k[y];
        s1 += p[1] * k[y];
        s2 += p[2] * k[y];
      }
      uint8_t *q = out + ((size_t)yy * w + xx) * 3;
      q[0] = lz_clip8(s0);
      q[1] = lz_clip8(s1);
      q[2] = lz_clip8(s2);
    }
  }
}

void image_resize_lanczos(const VdpImage *src, VdpImage *dst, int w, int h) {
  const int sw = src->w, sh = src->h;
  if (w <= 0 || h <= 0 || sw <= 0 || sh <= 0)
    vdp_die("image_resize_lanczos: invalid sizes %dx%d -> %dx%d", sw, sh, w, h);
  uint8_t *out = vdp_malloc((size_t)w * h * 3, "resized image");
  int need_h = w != sw, need_v = h != sh;
  if (!need_h && !need_v) {
    memcpy(out, src->rgb, (size_t)w * h * 3);  // Image.resize short-circuits to copy()
  } else {
    int *bv = NULL, *bh = NULL;
    int32_t *kv = NULL, *kh = NULL;
    int ksv = need_v ? lz_coeffs(sh, h, &bv, &kv) : 0;
    int ksh = need_h ? lz_coeffs(sw, w, &bh, &kh) : 0;
    // Pass order (Pillow >= 12 chooses; the uint8 rounding between passes makes it visible): vertical
    // first when the height shrinks by more than twice what the width shrinks, else horizontal first.
    // Measured against Pillow 13 on 1500+ size pairs, including the dy == 2 dx boundary.
    int dy = sh - h, dx = sw - w;
    int hfirst = !(dy > 0 && dy > 2 * dx);
    if (!need_v) {
      lz_pass_h(out, src->rgb, sw, w, 0, h, bh, kh, ksh);
    } else if (!need_h) {
      lz_pass_v(out, src->rgb, w, h, 0, bv, kv, ksv);
    } else if (hfirst) {
      // Horizontal pass only over the source rows [y0, y1) the vertical pass reads.
      int y0 = bv[0], y1 = bv[2 * (h - 1)] + bv[2 * (h - 1) + 1];
      uint8_t *tmp = vdp_malloc((size_t)(y1 - y0) * w * 3, "resize temporary");  // [y1 - y0, w, 3]
      lz_pass_h(tmp, src->rgb, sw, w, y0, y1 - y0, bh, kh, ksh);
      lz_pass_v(out, tmp, w, h, y0, bv, kv, ksv);
      free(tmp);
    } else {
      uint8_t *tmp = vdp_malloc((size_t)h * sw * 3, "resize temporary");  // [h, sw, 3]
      lz_pass_v(tmp, src->rgb, sw, h, 0, bv, kv, ksv);
      lz_pass_h(out, tmp, sw, w, 0, h, bh, kh, ksh);
      free(tmp);
    }
    free(bv);
    free(kv);
    free(bh);
    free(kh);
  }
  if (dst == src) free(dst->rgb);  // in-place use: release the old pixels
  dst->w = w;
  dst->h = h;
  dst->rgb = out;
}

// ---------------------------------------------------------------------------------------------------
// diffusers' _resize_with_antialiasing (pipeline_stable_video_diffusion.py), float32 like torch
// ---------------------------------------------------------------------------------------------------
// 1. sigma per axis = max((in/out - 1) / 2, 0.001) (Python double, then a float32 tensor);
//    kernel size = int(max(4 sigma, 3)) made odd.
// 2. Gaussian kernel in float32: exp(-(i - k/2)^2 / (2 sigma^2)), normalised by its sum.
// 3. Separable depthwise blur with reflect padding (the edge sample is not repeated): first along W,
//    then along H (kornia-style _filter2d twice).
// 4. F.interpolate(mode="bicubic", align_corners=True): source coordinate dst * (in-1)/(out-1) in
//    float32, cubic convolution weights with A = -0.75, the 4 taps' indices clamped into the image.

// Reflects index i into [0, n) like torch's reflect padding (generalised to pads >= n, which torch
// rejects, so that any size works; for pads < n it is exactly torch's rule).
static inline int reflect_index(int i, int n) {
  if (n == 1) return 0;
  int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// Normalised float32 Gaussian of odd length k (diffusers' _gaussian).
static void gaussian_kernel(float *g, int k, float sigma) {
  float s2 = 2.0f * (sigma * sigma);
  float sum = 0.0f;
  for (int i = 0; i < k; i++) {
    float x = (float)(i - k / 2);
    g[i] = expf(-(x * x) / s2);
    sum += g[i];
  }
  for (int i = 0; i < k; i++) g[i] /= sum;
}

// Cubic convolution weights for fractional offset t (torch's get_cubic_upsample_coefficients).
// cubic_convolution2 (|x| in [1, 2)): ((A x - 5A) x + 8A) x - 4A. The three terms nearly cancel, so
// the rounding of the middle step shows in the result (tens of ulps). torch's CPU kernel as shipped
// (x86-64 wheel, measured with impulse inputs) rounds it as one fused multiply-add; doing the same
// brings the end-to-end error against torch from ~1e-6 down to ~2e-7 (svd-spec §1.3).
static inline float cubic_conv2(float x, float A) {
  return fmaf(A * x - 5.0f * A, x, 8.0f * A) * x - 4.0f * A;
}

// cubic_convolution1 (|x| in [0, 1)): ((A + 2) x - (A + 3)) x x + 1, plain float (matches torch).
static inline float cubic_conv1(float x, float A) {
  return ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
}

static void cubic_weights(float w[4], float t) {
  const float A = -0.75f;
  float x1 = t + 1.0f, x2 = t, x3 = 1.0f - t, x4 = x3 + 1.0f;
  w[0] = cubic_conv2(x1, A);
  w[1] = cubic_conv1(x2, A);
  w[2] = cubic_conv1(x3, A);
  w[3] = cubic_conv2(x4, A);
}

// Per output index along one axis: 4 clamped source indices and weights (align_corners=True).
static void cubic_taps(int in, int out, int *idx, float *wt) {
  float scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
  for (int o = 0; o < out; o++) {
    float real = scale * (float)o;
    int i0 = (int)floorf(real);
    if (i0 > in - 1) i0 = in - 1;
    float t = real - (float)i0;
    t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
    cubic_weights(wt + 4 * o, t);
    for (int j = 0; j < 4; j++) {
      int s = i0 + j - 1;
      idx[4 * o + j] = s < 0 ? 0 : s > in - 1 ? in - 1 : s;
    }
  }
}

// Marks the indices in idx[0..n) (each in [0, size)), returns how many distinct ones in `list` (sorted)
// and, in pos[i], the position of index i in the list.
static int distinct_indices(const int *idx, int n, int size, int *list, int *pos) {
  for (int i = 0; i < size; i++) pos[i] = -1;
  for (int k = 0; k < n; k++) pos[idx[k]] = 0;
  int m = 0;
  for (int i = 0; i < size; i++)
    if (pos[i] == 0) pos[i] = m, list[m++] = i;
  return m;
}

// Step 1 of both forms (after checking the sizes): the Gaussian blur kernels for an h x w -> ho x wo reduction (sigmas and kernel
// sizes in double, as Python computes them; odd sizes, so the padding is symmetric).
static void antialias_kernels(const char *who, int c, int h, int w, int ho, int wo, float **gy, int *ky, float **gx,
                              int *kx) {
  if (c <= 0 || h <= 0 || w <= 0 || ho <= 0 || wo <= 0)
    vdp_die("%s: invalid sizes [%d, %d, %d] -> [%d, %d]", who, c, h, w, ho, wo);
  double sig_y = fmax(((double)h / ho - 1.0) / 2.0, 0.001);
  double sig_x = fmax(((double)w / wo - 1.0) / 2.0, 0.001);
  *ky = (int)fmax(4.0 * sig_y, 3.0), *kx = (int)fmax(4.0 * sig_x, 3.0);
  if (*ky % 2 == 0) (*ky)++;
  if (*kx % 2 == 0) (*kx)++;
  *gy = vdp_malloc(sizeof(float) * *ky, "gaussian"), *gx = vdp_malloc(sizeof(float) * *kx, "gaussian");
  gaussian_kernel(*gy, *ky, (float)sig_y);
  gaussian_kernel(*gx, *kx, (float)sig_x);
}

// Only the blurred samples that the 4x4 bicubic taps read are computed: at most 4 * wo columns and
// 4 * ho rows of the blurred image, instead of all h * w (a 16384^2 input to 224^2 computes 896
// columns, 0.5% of the W-blur, and 896 rows of those for the H-blur). Every computed sample is summed
// in the same order as a full blur would sum it, so the result is bit-identical to blurring everything
// (test_image checks this against the direct form on large inputs).
// The input is x [c, h, w] fp32, or (x NULL) an RGB8 image rgb [h, w, 3] read as 2·(v/255) - 1, one row
// at a time: the W-blur is the only step that reads the input, so no float copy of the whole image is
// made (12 bytes a pixel: 3 GiB for a 16384² input).
static void antialias_resize(float *y, const float *x, const uint8_t *rgb, int c, int h, int w, int ho, int wo) {
  // 1. sigmas and kernel sizes
  float *gy, *gx;
  int ky, kx;
  antialias_kernels("resize_antialias", c, h, w, ho, wo, &gy, &ky, &gx, &kx);
  int py = (ky - 1) / 2, px = (kx - 1) / 2;  // front padding (odd kernels: symmetric)

  // 4. (set up first) bicubic taps, align_corners=True
  int *iy = vdp_malloc(sizeof(int) * 4 * ho, "bicubic taps"), *ix = vdp_malloc(sizeof(int) * 4 * wo, "bicubic taps");
  float *wy = vdp_malloc(sizeof(float) * 4 * ho, "bicubic taps"), *wx = vdp_malloc(sizeof(float) * 4 * wo, "bicubic taps");
  cubic_taps(h, ho, iy, wy);
  cubic_taps(w, wo, ix, wx);
  // The blurred columns (cols, nc of them) and rows (rows, nr) the taps read; colpos/rowpos map an image
  // index to its place in those lists.
  int *cols = vdp_malloc(sizeof(int) * w, "columns"), *colpos = vdp_malloc(sizeof(int) * w, "columns");
  int *rows = vdp_malloc(sizeof(int) * h, "rows"), *rowpos = vdp_malloc(sizeof(int) * h, "rows");
  int nc = distinct_indices(ix, 4 * wo, w, cols, colpos), nr = distinct_indices(iy, 4 * ho, h, rows, rowpos);
  // the source rows the H-blur of those rows reads: all rows when downscaling by more than ~ky/4
  int *need = vdp_malloc(sizeof(int) * h, "rows");
  int nneed = 0;
  for (int r = 0; r < h; r++) need[r] = 0;
  for (int k = 0; k < nr; k++)
    for (int j = 0; j < ky; j++) need[reflect_index(rows[k] - py + j, h)] = 1;
  for (int r = 0; r < h; r++) nneed += need[r];

  float *t1 = vdp_malloc(sizeof(float) * (size_t)h * nc, "blur temporary");   // [h, nc]: W-blurred at cols
  float *t2 = vdp_malloc(sizeof(float) * (size_t)nr * nc, "blur temporary");  // [nr, nc]: then H-blurred at rows
  for (int ch = 0; ch < c; ch++) {
    const float *xc = x ? x + (size_t)ch * h * w : NULL;
    // 3a. blur along W at the needed columns: s = sum_j gx[j] * in[reflect(col - px + j)], j ascending
#pragma omp parallel
    {
    float *row = xc ? NULL : vdp_malloc(sizeof(float) * (size_t)w, "image row");  // this thread's converted row
#pragma omp for schedule(dynamic, 16)
    for (int r = 0; r < h; r++) {
      if (!need[r]) continue;
      const float *src;
      if (xc) {
        src = xc + (size_t)r * w;
      } else {  // the same value the float copy held: (float)v / 255 * 2 - 1
        const uint8_t *px8 = rgb + (size_t)r * w * 3 + ch;
        for (int i = 0; i < w; i++) row[i] = (float)px8[(size_t)i * 3] / 255.0f * 2.0f - 1.0f;
        src = row;
      }
      float *dst = t1 + (size_t)r * nc;
      for (int k = 0; k < nc;) {
        // a run of up to 8 consecutive columns whose windows lie inside the row: 8 independent sums
        int c0 = cols[k] - px, run = 1;
        while (run < 8 && k + run < nc && cols[k + run] == cols[k] + run) run++;
        if (run == 8 && c0 >= 0 && c0 + 7 + kx <= w) {
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          for (int j = 0; j < kx; j++) {
            const float g = gx[j], *sp = src + c0 + j;
            for (int m = 0; m < 8; m++) acc[m] += g * sp[m];
          }
          for (int m = 0; m < 8; m++) dst[k + m] = acc[m];
          k += 8;
        } else {
          float acc = 0.0f;
          if (c0 >= 0 && c0 + kx <= w)
            for (int j = 0; j < kx; j++) acc += gx[j] * src[c0 + j];
          else
            for (int j = 0; j < kx; j++) acc += gx[j] * src[reflect_index(c0 + j, w)];
          dst[k++] = acc;
        }
      }
    }
    free(row);
    }
    // 3b. blur along H at the needed rows (same order as the full blur: j ascending from 0.0f)
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nr; k++) {
      float *dst = t2 + (size_t)k * nc;
      for (int i = 0; i < nc; i++) dst[i] = 0.0f;
      for (int j = 0; j < ky; j++) {
        const float g = gy[j], *src = t1 + (size_t)reflect_index(rows[k] - py + j, h) * nc;
        for (int i = 0; i < nc; i++) dst[i] += g * src[i];
      }
    }
    // 4. bicubic: out = sum_j wy_j * (sum_i wx_i * in[y_j, x_i]), summed in the order torch's generic
    //    upsample kernel uses (inner loop along W)
#pragma omp parallel for schedule(static)
    for (int oy = 0; oy < ho; oy++) {
      float *dst = y + ((size_t)ch * ho + oy) * wo;
      for (int ox = 0; ox < wo; ox++) {
        const int *xi = ix + 4 * ox;
        const float *xw = wx + 4 * ox;
        float acc = 0.0f;
        for (int j = 0; j < 4; j++) {
          const float *row = t2 + (size_t)rowpos[iy[4 * oy + j]] * nc;
          float v = row[colpos[xi[0]]] * xw[0];
          v += row[colpos[xi[1]]] * xw[1];
          v += row[colpos[xi[2]]] * xw[2];
          v += row[colpos[xi[3]]] * xw[3];
          acc = j == 0 ? v * wy[4 * oy] : acc + v * wy[4 * oy + j];
        }
        dst[ox] = acc;
      }
    }
  }
  free(iy), free(ix), free(wy), free(wx);
  free(cols), free(colpos), free(rows), free(rowpos), free(need);
  free(t1), free(t2), free(gx), free(gy);
}

void resize_antialias(float *y, const float *x, int c, int h, int w, int ho, int wo) {
  antialias_resize(y, x, NULL, c, h, w, ho, wo);
}

void resize_antialias_rgb8(float *y, const uint8_t *rgb, int h, int w, int ho, int wo) {
  antialias_resize(y, NULL, rgb, 3, h, w, ho, wo);
}

// The direct form: blur the whole image, then sample it. resize_antialias must equal it bit for bit
// (test_image); it is kept as that reference, and costs O(c h w (kx + ky)) time and two full-size copies.
void resize_antialias_full(float *y, const float *x, int c, int h, int w, int ho, int wo) {
  // 1. sigmas and kernel sizes
  float *gy, *gx;
  int ky, kx;
  antialias_kernels("resize_antialias_full", c, h, w, ho, wo, &gy, &ky, &gx, &kx);
  int py = (ky - 1) / 2, px = (kx - 1) / 2;  // front padding (odd kernels: symmetric)

  size_t plane = (size_t)h * w;
  float *t1 = vdp_malloc(sizeof(float) * plane * c, "blur temporary");  // [c, h, w] after the W blur
  float *t2 = vdp_malloc(sizeof(float) * plane * c, "blur temporary");  // [c, h, w] after the H blur
  // 3a. blur along W
#pragma omp parallel for collapse(2) schedule(static)
  for (int ch = 0; ch < c; ch++)
    for (int r = 0; r < h; r++) {
      const float *src = x + ch * plane + (size_t)r * w;
      float *dst = t1 + ch * plane + (size_t)r * w;
      for (int i = 0; i < w; i++) {
        float s = 0.0f;
        for (int j = 0; j < kx; j++) s += gx[j] * src[reflect_index(i - px + j, w)];
        dst[i] = s;
      }
    }
  // 3b. blur along H
#pragma omp parallel for collapse(2) schedule(static)
  for (int ch = 0; ch < c; ch++)
    for (int r = 0; r < h; r++) {
      float *dst = t2 + ch * plane + (size_t)r * w;
      for (int i = 0; i < w; i++) dst[i] = 0.0f;
      for (int j = 0; j < ky; j++) {
        const float *src = t1 + ch * plane + (size_t)reflect_index(r - py + j, h) * w;
        for (int i = 0; i < w; i++) dst[i] += gy[j] * src[i];
      }
    }
  // 4. bicubic, align_corners=True: out = sum_j wy_j * (sum_i wx_i * in[y_j, x_i]), summed in the order
  //    torch's generic upsample kernel uses (inner loop along W).
  int *iy = vdp_malloc(sizeof(int) * 4 * ho, "bicubic taps"), *ix = vdp_malloc(sizeof(int) * 4 * wo, "bicubic taps");
  float *wy = vdp_malloc(sizeof(float) * 4 * ho, "bicubic taps"), *wx = vdp_malloc(sizeof(float) * 4 * wo, "bicubic taps");
  cubic_taps(h, ho, iy, wy);
  cubic_taps(w, wo, ix, wx);
#pragma omp parallel for collapse(2) schedule(static)
  for (int ch = 0; ch < c; ch++)
    for (int oy = 0; oy < ho; oy++) {
      const float *src = t2 + ch * plane;
      float *dst = y + ((size_t)ch * ho + oy) * wo;
      for (int ox = 0; ox < wo; ox++) {
        const int *xi = ix + 4 * ox;
        const float *xw = wx + 4 * ox;
        float acc = 0.0f;
        for (int j = 0; j < 4; j++) {
          const float *row = src + (size_t)iy[4 * oy + j] * w;
          float v = row[xi[0]] * xw[0];
          v += row[xi[1]] * xw[1];
          v += row[xi[2]] * xw[2];
          v += row[xi[3]] * xw[3];
          acc = j == 0 ? v * wy[4 * oy] : acc + v * wy[4 * oy + j];
        }
        dst[ox] = acc;
      }
    }
  free(iy); free(ix); free(wy); free(wx);
  free(t1); free(t2); free(gx); free(gy);
}

// ---------------------------------------------------------------------------------------------------
// .npy files
// ---------------------------------------------------------------------------------------------------
// Format: "\x93NUMPY", major, minor, header length (uint16 LE in v1.0, uint32 LE in v2.0/3.0), then a
// Python dict literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
// spaces and '\n' so that the data starts at a multiple of 64 bytes; then the raw C-order data.
#define NPY_MAX_DIMS 8         // callers pass shape arrays of at least this many entries
#define NPY_MAX_HEADER (1 << 20)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "image.c reads and writes little-endian .npy data directly; add byte swapping for this host"
#endif

int npy_save_f32(const char *path, const float *x, const int64_t *shape, int ndim, char *err, size_t errlen) {
  if (ndim < 0 || ndim > NPY_MAX_DIMS) return errf(err, errlen, "%s: cannot save %d dimensions (max %d)", path, ndim, NPY_MAX_DIMS);
  char dict[512];
  int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
  uint64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return errf(err, errlen, "%s: negative dimension %lld", path, (long long)shape[i]);
    len += snprintf(dict + len, sizeof dict - len, i ? ", %lld" : "%lld", (long long)shape[i]);
    n *= (uint64_t)shape[i];
  }
  len += snprintf(dict + len, sizeof dict - len, ndim == 1 ? ",), }" : "), }");
  // Pad with spaces so that 10 (magic + version + length) + header is a multiple of 64, '\n' last.
  int total = 10 + len + 1;
  int pad = (64 - total % 64) % 64;
  char header[640];
  memcpy(header, "\x93NUMPY\x01\x00", 8);
  int hlen = len + pad + 1;
  header[8] = (char)(hlen & 0xff);
  header[9] = (char)(hlen >> 8);
  memcpy(header + 10, dict, len);
  memset(header + 10 + len, ' ', pad);
  header[10 + len + pad] = '\n';

  VdpOut o;
  if (out_begin(&o, path, out_replace(), err, errlen)) return -1;
  int bad = fwrite(header, 1, 10 + hlen, o.fp) != (size_t)(10 + hlen);
  if (!bad && n) bad = fwrite(x, sizeof(float), n, o.fp) != n;
  if (bad) {
    int e = errno;
    out_abort(&o);
    return errf(err, errlen, "cannot write %s: %s", path, strerror(e));
  }
  return out_commit(&o, err, errlen);
}

// A tiny parser for the header dict: exactly the three keys numpy writes, in any order.
typedef struct {
  const char *p, *end;
} NpyLex;

static void npy_ws(NpyLex *l) {
  while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}

static int npy_char(NpyLex *l, char c) {
  npy_ws(l);
  if (l->p < l->end && *l->p == c) {
    l->p++;
    return 1;
  }
  return 0;
}

// A quoted string ('...' or "...") into out (size cap); 0 if malformed or too long.
static int npy_string(NpyLex *l, char *out, size_t cap) {
  npy_ws(l);
  if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return 0;
  char q = *l->p++;
  size_t n = 0;
  while (l->p < l->end && *l->p != q) {
    if (n + 1 >= cap) return 0;
    out[n++] = *l->p++;
  }
  if (l->p >= l->end) return 0;
  l->p++;
  out[n] = 0;
  return 1;
}

int npy_load_f32(const char *path, float **data, int64_t *shape, int *ndim, char *err, size_t errlen) {
  *data = NULL;
  *ndim = 0;
  uint64_t fsize0;
  int fd = open_regular(path, &fsize0, err, errlen);
  if (fd < 0) return -1;
  FILE *fp = fdopen(fd, "rb");
  if (!fp) {
    close(fd);
    return errf(err, errlen, "%s: out of memory", path);
  }
  int rc = -1;
  char *hdr = NULL;
  float *out = NULL;
  uint8_t pre[12];
  if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    errf(err, errlen, "%s: not a .npy file (bad magic or shorter than 10 bytes)", path);
    goto done;
  }
  int major = pre[6];
  uint32_t hlen;
  long data_off;
  if (major == 1) {
    hlen = pre[8] | (uint32_t)pre[9] << 8;
    data_off = 10 + (long)hlen;
  } else if (major == 2 || major == 3) {
    if (fread(pre + 10, 1, 2, fp) != 2) {
      errf(err, errlen, "%s: truncated .npy header", path);
      goto done;
    }
    hlen = pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
    data_off = 12 + (long)(hlen > NPY_MAX_HEADER ? 0 : hlen);
  } else {
    errf(err, errlen, "%s: unsupported .npy format version %d.%d", path, major, pre[7]);
    goto done;
  }
  if (hlen == 0 || hlen > NPY_MAX_HEADER) {
    errf(err, errlen, "%s: implausible .npy header length %u", path, hlen);
    goto done;
  }
  hdr = malloc(hlen);
  if (!hdr) {
    errf(err, errlen, "%s: out of memory", path);
    goto done;
  }
  if (fread(hdr, 1, hlen, fp) != hlen) {
    errf(err, errlen, "%s: truncated .npy header (%u bytes announced)", path, hlen);
    goto done;
  }

  // Parse {'descr': ..., 'fortran_order': ..., 'shape': (...), }
  NpyLex l = {hdr, hdr + hlen};
  char key[32], descr[32] = "";
  int have_descr = 0, have_order = 0, have_shape = 0, nd = 0;
  int64_t dims[NPY_MAX_DIMS];
  if (!npy_char(&l, '{')) {
    errf(err, errlen, "%s: .npy header is not a dict", path);
    goto done;
  }
  while (!npy_char(&l, '}')) {
    if (!npy_string(&l, key, sizeof key) || !npy_char(&l, ':')) {
      errf(err, errlen, "%s: malformed .npy header near offset %ld", path, (long)(l.p - hdr));
      goto done;
    }
    if (strcmp(key, "descr") == 0) {
      if (!npy_string(&l, descr, sizeof descr)) {
        errf(err, errlen, "%s: malformed 'descr' in .npy header", path);
        goto done;
      }
      have_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0) {
      npy_ws(&l);
      if ((size_t)(l.end - l.p) >= 5 && memcmp(l.p, "False", 5) == 0) {
        l.p += 5;
      } else if ((size_t)(l.end - l.p) >= 4 && memcmp(l.p, "True", 4) == 0) {
        errf(err, errlen, "%s: Fortran-order arrays are not supported (save with np.ascontiguousarray)", path);
        goto done;
      } else {
        errf(err, errlen, "%s: malformed 'fortran_order' in .npy header", path);
        goto done;
      }
      have_order = 1;
    } else if (strcmp(key, "shape") == 0) {
      if (!npy_char(&l, '(')) {
        errf(err, errlen, "%s: malformed 'shape' in .npy header", path);
        goto done;
      }
      nd = 0;
      while (!npy_char(&l, ')')) {
        npy_ws(&l);
        if (l.p >= l.end || *l.p < '0' || *l.p > '9') {
          errf(err, errlen, "%s: malformed 'shape' in .npy header", path);
          goto done;
        }
        int64_t v = 0;
        while (l.p < l.end && *l.p >= '0' && *l.p <= '9') {
          if (v > (INT64_MAX - 9) / 10) {
            errf(err, errlen, "%s: dimension too large in .npy header", path);
            goto done;
          }
          v = v * 10 + (*l.p++ - '0');
        }
        if (nd == NPY_MAX_DIMS) {
          errf(err, errlen, "%s: more than %d dimensions in .npy header", path, NPY_MAX_DIMS);
          goto done;
        }
        dims[nd++] = v;
        if (!npy_char(&l, ',')) {
          if (!npy_char(&l, ')')) {
            errf(err, errlen, "%s: malformed 'shape' in .npy header", path);
            goto done;
          }
          break;
        }
      }
      have_shape = 1;
    } else {
      errf(err, errlen, "%s: unexpected key '%s' in .npy header", path, key);
      goto done;
    }
    if (!npy_char(&l, ',')) {
      if (!npy_char(&l, '}')) {
        errf(err, errlen, "%s: malformed .npy header (expected ',' or '}')", path);
        goto done;
      }
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape) {
    errf(err, errlen, "%s: .npy header lacks %s", path, !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
    goto done;
  }
  int esize;
  if (strcmp(descr, "<f4") == 0) esize = 4;
  else if (strcmp(descr, "<f2") == 0) esize = 2;
  else {
    errf(err, errlen, "%s: dtype '%s' not supported (expected '<f4' float32 or '<f2' float16)", path, descr);
    goto done;
  }

  // Element count, checked for overflow and against the file size before anything is allocated.
  uint64_t n = 1;
  for (int i = 0; i < nd; i++) {
    if (dims[i] != 0 && n > (uint64_t)INT64_MAX / 8 / (uint64_t)dims[i]) {
      errf(err, errlen, "%s: shape too large in .npy header", path);
      goto done;
    }
    n *= (uint64_t)dims[i];
  }
  if (fseek(fp, 0, SEEK_END) != 0) {
    errf(err, errlen, "%s: cannot seek: %s", path, strerror(errno));
    goto done;
  }
  long fsize = ftell(fp);
  uint64_t need = n * esize;
  if (fsize < data_off || (uint64_t)(fsize - data_off) != need) {
    errf(err, errlen, "%s: data size mismatch: shape needs %llu bytes, file has %ld after the header", path,
         (unsigned long long)need, fsize < data_off ? 0L : fsize - data_off);
    goto done;
  }
  if (n > SIZE_MAX / sizeof(float) || fseek(fp, data_off, SEEK_SET) != 0) {
    errf(err, errlen, "%s: cannot read %llu elements", path, (unsigned long long)n);
    goto done;
  }
  out = malloc(n ? n * sizeof(float) : 1);
  if (!out) {
    errf(err, errlen, "%s: out of memory for %llu elements", path, (unsigned long long)n);
    goto done;
  }
  if (fread(out, esize, n, fp) != n) {
    errf(err, errlen, "%s: short read of the array data", path);
    goto done;
  }
  if (esize == 2) {
    // Widen in place from the end so that no half is overwritten before it is read.
    const uint16_t *hv = (const uint16_t *)out;
    for (uint64_t i = n; i-- > 0;) {
      uint16_t b;
      memcpy(&b, hv + i, 2);
      out[i] = half_to_float(b);
    }
  }
  for (int i = 0; i < nd; i++) shape[i] = dims[i];
  *ndim = nd;
  *data = out;
  out = NULL;
  rc = 0;
done:
  free(out);
  free(hdr);
  fclose(fp);
  return rc;
}

// ---------------------------------------------------------------------------------------------------
// Video through ffmpeg
// ---------------------------------------------------------------------------------------------------
// ffmpeg runs as a child (posix_spawnp: no shell, so the path needs no quoting) reading raw rgb24 frames
// from a pipe. Its stderr is inherited with -loglevel error, so its own messages appear above ours.
extern char **environ;

// Where posix_spawnp would find ffmpeg: the first executable regular file "ffmpeg" on PATH.
static int ffmpeg_on_path(void) {
  const char *path = getenv("PATH");
  if (!path) path = "/bin:/usr/bin";  // posix_spawnp's default
  while (1) {
    const char *colon = strchr(path, ':');
    size_t n = colon ? (size_t)(colon - path) : strlen(path);
    char file[4096];
    snprintf(file, sizeof file, "%.*s%sffmpeg", (int)n, n ? path : ".", "/");
    struct stat st;
    if (stat(file, &st) == 0 && S_ISREG(st.st_mode) && access(file, X_OK) == 0) return 1;
    if (!colon) return 0;
    path = colon + 1;
  }
}

static int video_kind(const char *path) {  // 1 = GIF, 2 = MP4, 0 = neither
  size_t plen = strlen(path);
  if (plen >= 4 && strcasecmp(path + plen - 4, ".gif") == 0) return 1;
  if (plen >= 4 && strcasecmp(path + plen - 4, ".mp4") == 0) return 2;
  return 0;
}

int video_check(const char *path, int fps, char *err, size_t errlen) {
  int kind = video_kind(path);
  if (!kind) return errf(err, errlen, "%s: unknown video type (use .gif or .mp4, or .npy/.png for frames)", path);
  if (kind == 1 && (fps < 1 || fps > 50))
    return errf(err, errlen, "--fps %d: GIF frame delays are whole hundredths of a second, so GIF plays at most 50 fps "
                "(players show faster GIFs at 10 fps); use .mp4 or --fps 50 or less", fps);
  if (!ffmpeg_on_path())
    return errf(err, errlen, "%s: writing .gif/.mp4 needs ffmpeg, which is not on PATH: install it, or write .npy or .png frames", path);
  return 0;
}

int video_save_ffmpeg(const char *path, const uint8_t *frames, int F, int w, int h, int fps, char *err,
                      size_t errlen) {
  if (F <= 0 || w <= 0 || h <= 0 || fps <= 0)
    return errf(err, errlen, "%s: invalid video (%d frames of %dx%d at %d fps)", path, F, w, h, fps);
  int kind = video_kind(path), mp4 = kind == 2;
  if (!kind) return errf(err, errlen, "%s: unknown video type (use .gif or .mp4, or .npy/.png for frames)", path);

  // ffmpeg writes the temporary (created here, exclusively); it takes the name only once ffmpeg has
  // succeeded and the bytes are on disk, so a failed or interrupted encode never leaves a file that
  // looks like a video. The "file:" protocol prefix keeps ffmpeg from reading the name as an option
  // ("-x.mp4") or as another protocol ("pipe:1.gif"); -f names the muxer, since the temporary's name
  // ends in .tmp.
  VdpOut o;
  if (out_begin(&o, path, out_replace(), err, errlen)) return -1;
  fclose(o.fp);
  o.fp = NULL;
  char target[4200];
  snprintf(target, sizeof target, "file:%s", o.tmp);

  char size[32], rate[16];
  snprintf(size, sizeof size, "%dx%d", w, h);
  snprintf(rate, sizeof rate, "%d", fps);
  const char *argv[40];
  int a = 0;
  argv[a++] = "ffmpeg";
  argv[a++] = "-nostdin";
  argv[a++] = "-hide_banner";
  argv[a++] = "-loglevel";
  argv[a++] = "error";
  argv[a++] = "-y";  // the temporary exists (ours, empty)
  argv[a++] = "-f"; argv[a++] = "rawvideo";
  argv[a++] = "-pix_fmt"; argv[a++] = "rgb24";
  argv[a++] = "-s"; argv[a++] = size;
  argv[a++] = "-r"; argv[a++] = rate;
  argv[a++] = "-i"; argv[a++] = "pipe:0";
  if (mp4) {
    // yuv420p (what players expect) needs even sides: pad by one edge pixel row/column if odd.
    argv[a++] = "-vf"; argv[a++] = "pad=ceil(iw/2)*2:ceil(ih/2)*2";
    argv[a++] = "-c:v"; argv[a++] = "libx264";
    argv[a++] = "-pix_fmt"; argv[a++] = "yuv420p";
    argv[a++] = "-crf"; argv[a++] = "17";
    argv[a++] = "-movflags"; argv[a++] = "+faststart";
    argv[a++] = "-f"; argv[a++] = "mp4";
  } else {
    // One palette computed from all frames (better than ffmpeg's default fixed palette); loop forever.
    argv[a++] = "-filter_complex"; argv[a++] = "split[a][b];[a]palettegen[p];[b][p]paletteuse";
    argv[a++] = "-loop"; argv[a++] = "0";
    argv[a++] = "-f"; argv[a++] = "gif";
  }
  argv[a++] = target;
  argv[a] = NULL;

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    int e = errno;
    out_abort(&o);
    return errf(err, errlen, "%s: cannot create a pipe: %s", path, strerror(e));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], STDIN_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  // The termination signals wait until the child is on record (out_watch_child), so that a Ctrl-C at
  // any moment kills and reaps it before its output is removed; the child gets the usual mask back.
  sigset_t term_set, prev_set;
  sigemptyset(&term_set);
  sigaddset(&term_set, SIGINT), sigaddset(&term_set, SIGTERM), sigaddset(&term_set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &term_set, &prev_set);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &prev_set);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid;
  int e = posix_spawnp(&pid, "ffmpeg", &fa, &attr, (char *const *)argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (e == 0) out_watch_child(pid);
  pthread_sigmask(SIG_SETMASK, &prev_set, NULL);
  close(fds[0]);
  if (e != 0) {
    close(fds[1]);
    out_abort(&o);
    if (e == ENOENT) return errf(err, errlen, "cannot write %s: ffmpeg not found on PATH: install it or write .npy/.png", path);
    return errf(err, errlen, "cannot write %s: cannot start ffmpeg: %s", path, strerror(e));
  }

  // If ffmpeg dies early, write() raises SIGPIPE, which would kill us. Block it in this thread for the
  // writes (write then fails with EPIPE) and consume a pending one before restoring the mask.
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  const uint8_t *p = frames;
  size_t left = (size_t)F * w * h * 3;
  int werr = 0;
  while (left > 0) {
    ssize_t n = write(fds[1], p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      werr = errno;
      break;
    }
    p += n;
    left -= (size_t)n;
  }
  close(fds[1]);
  if (werr == EPIPE && !sigismember(&old_set, SIGPIPE)) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_set, NULL);

  int status = 0, rc;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      e = errno;
      out_watch_child(0);
      out_abort(&o);
      return errf(err, errlen, "cannot write %s: waiting for ffmpeg: %s", path, strerror(e));
    }
  }
  out_watch_child(0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !werr) rc = 0;
  else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
    rc = errf(err, errlen, "cannot write %s: ffmpeg exited with status %d (its messages are above)", path, WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) rc = errf(err, errlen, "cannot write %s: ffmpeg killed by signal %d", path, WTERMSIG(status));
  else rc = errf(err, errlen, "cannot write %s: sending frames to ffmpeg failed: %s", path, strerror(werr));
  if (!rc) {  // ffmpeg closed its file; make it durable before it takes the name
    int fd = open(o.tmp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0 || fsync(fd) != 0)
      rc = errf(err, errlen, "cannot write %s: ffmpeg's output is missing or empty", path);
    if (fd >= 0) close(fd);
  }
  if (!rc) rc = out_rename(&o, err, errlen);
  if (rc) out_abort(&o);
  return rc;
}
