// safetensors.c — the readers of foreign formats. Reading order: this file, then weights.c.
//   (helpers)  small helpers shared with weights.c: error messages, little-endian reads, checked sizes
//   1. a small strict JSON parser (config.json files, safetensors headers)
//   2. the safetensors reader (header validation, streamed reads with pread)
// weights.c continues with 3. the diffusers config import, 4. the .vdpw format, 5. `vdp convert` /
// `vdp info`. What the two files share (the helpers, the JSON DOM, the safetensors header) is declared in
// vdp.h section 2b.
//
// Every parser here reads untrusted bytes: lengths and offsets from a file are checked against the real
// size before they are used, arithmetic on them is overflow-checked, and errors come back as -1 with one
// message in the caller's buffer (never exit, never crash). The fuzz target test/fuzz/fuzz_safetensors.c
// drives st_parse_buffer (st_parse_mem and the JSON parser).
#include "vdp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The safetensors header length and tensor data are read as little-endian numbers.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads little-endian files: a little-endian host is required"
#endif

// ---------------------------------------------------------------------------------------------------
// Small helpers (declared in vdp.h section 2b: weights.c uses them too)
// ---------------------------------------------------------------------------------------------------
// errf lives in util.c (the output/input rules there use it, and util.o links alone into the GPU tests).
// Prepends "PREFIX: " to the message already in err (for adding a file name to a parser's error).
void err_prefix(char *err, size_t errlen, const char *prefix) {
  if (!err || !errlen) return;
  char tmp[2048];
  snprintf(tmp, sizeof tmp, "%s: %.1900s", prefix, err);
  snprintf(err, errlen, "%s", tmp);
}

uint64_t rd_u64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

// a*b into *out unless the product exceeds `limit`; returns -1 on overflow.
int mul_checked(uint64_t a, uint64_t b, uint64_t limit, uint64_t *out) {
  if (a != 0 && b > limit / a) return -1;
  *out = a * b;
  return 0;
}

void fmt_dims(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? "," : "", shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

// pread that loops over short reads.
int pread_full(int fd, void *dst, size_t n, uint64_t off) {
  uint8_t *p = dst;
  while (n) {
    ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r, n -= (size_t)r, off += (uint64_t)r;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// 1. JSON
// ---------------------------------------------------------------------------------------------------
// A DOM in two arrays: nodes (values) and a pool of decoded, NUL-terminated strings. Children of an
// array/object form a linked list through `next`; object members carry their key. Limits: nesting depth,
// node count, number length; strings must be valid UTF-8 without control characters; \u0000 is refused
// (names are C strings); duplicate keys in one object are an error; nothing but whitespace may follow
// the value.
#define JSON_MAX_DEPTH 64
#define JSON_MAX_NODES (1 << 21)
#define JSON_MAX_TEXT ((size_t)512 << 20)
#define JSON_MAX_NUMBER 64
#define JSON_NONE UINT32_MAX

// The DOM types (J_NULL..J_OBJ, JNode, Json) are declared in vdp.h section 2b.

const char *jtype_name(int t) {
  static const char *names[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
  return t >= 0 && t <= J_OBJ ? names[t] : "?";
}

static int j_fail(Json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int j_fail(Json *j, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return errf(j->err, j->errlen, "JSON error at byte %zu: %s", j->pos, msg);
}

static int j_new(Json *j, int type) {
  if (j->n >= JSON_MAX_NODES) return j_fail(j, "more than %d values", JSON_MAX_NODES);
  if (j->n == j->cap) {
    int cap = j->cap ? 2 * j->cap : 64;
    JNode *p = realloc(j->nodes, (size_t)cap * sizeof *p);
    if (!p) return j_fail(j, "out of memory");
    j->nodes = p;
    j->cap = cap;
  }
  JNode *nd = &j->nodes[j->n];
  memset(nd, 0, sizeof *nd);
  nd->type = (uint8_t)type;
  nd->next = nd->child = -1;
  nd->key = nd->str = JSON_NONE;
  return j->n++;
}

static void j_ws(Json *j) {
  while (j->pos < j->len) {
    unsigned char c = j->s[j->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    j->pos++;
  }
}

static void j_put_utf8(Json *j, uint32_t cp) {
  char *o = j->pool + j->pool_len;
  if (cp < 0x80) {
    o[0] = (char)cp;
    j->pool_len += 1;
  } else if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3f));
    j->pool_len += 2;
  } else if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[2] = (char)(0x80 | (cp & 0x3f));
    j->pool_len += 3;
  } else {
    o[0] = (char)(0xf0 | (cp >> 18)), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f));
    j->pool_len += 4;
  }
}

static int j_hex4(const unsigned char *p, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + (uint32_t)d;
  }
  *out = v;
  return 0;
}

// Length of a valid UTF-8 sequence starting at p (at most `avail` bytes), 0 if invalid. Refuses overlong
// forms, surrogates and code points above U+10FFFF.
static int utf8_seq_len(const unsigned char *p, size_t avail) {
  unsigned char c = p[0];
  int n;
  uint32_t lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else
    return 0;
  if ((size_t)n > avail) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (int i = 2; i < n; i++)
    if ((p[i] & 0xc0) != 0x80) return 0;
  return n;
}

// Parses the string starting at the opening quote into the pool; *off = its pool offset.
static int j_string(Json *j, uint32_t *off) {
  size_t start = j->pos + 1, end = start;
  // Find the closing quote first (skipping escaped characters) so the pool grows once, by the raw length,
  // which bounds the decoded length.
  while (end < j->len && j->s[end] != '"') end += j->s[end] == '\\' ? 2 : 1;
  if (end >= j->len) return j_fail(j, "unterminated string");
  size_t need = j->pool_len + (end - start) + 1;
  if (need > j->pool_cap) {
    size_t cap = j->pool_cap ? j->pool_cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(j->pool, cap);
    if (!p) return j_fail(j, "out of memory");
    j->pool = p;
    j->pool_cap = cap;
  }
  *off = (uint32_t)j->pool_len;
  size_t i = start;
  while (i < end) {
    unsigned char c = j->s[i];
    j->pos = i;
    if (c < 0x20) return j_fail(j, "control character 0x%02x in a string", c);
    if (c == '\\') {
      unsigned char e = j->s[i + 1];  // exists: the scan above skipped it as part of the string
      static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
      const char *q = e ? strchr(from, e) : NULL;
      if (q) {
        j->pool[j->pool_len++] = to[q - from];
        i += 2;
        continue;
      }
      if (e != 'u') return j_fail(j, "invalid escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
      uint32_t cp, lo;
      if (i + 6 > end || j_hex4(j->s + i + 2, &cp)) return j_fail(j, "invalid \\u escape");
      i += 6;
      if (cp >= 0xdc00 && cp <= 0xdfff) return j_fail(j, "unpaired low surrogate \\u%04x", cp);
      if (cp >= 0xd800 && cp <= 0xdbff) {
        if (i + 6 > end || j->s[i] != '\\' || j->s[i + 1] != 'u' || j_hex4(j->s + i + 2, &lo) || lo < 0xdc00 ||
            lo > 0xdfff)
          return j_fail(j, "unpaired high surrogate \\u%04x", cp);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i += 6;
      }
      if (cp == 0) return j_fail(j, "\\u0000 in a string is not supported");
      j_put_utf8(j, cp);  // at most 4 bytes for >= 6 raw bytes consumed
      continue;
    }
    if (c < 0x80) {
      j->pool[j->pool_len++] = (char)c;
      i++;
      continue;
    }
    int n = utf8_seq_len(j->s + i, end - i);
    if (!n) return j_fail(j, "invalid UTF-8 in a string");
    memcpy(j->pool + j->pool_len, j->s + i, (size_t)n);
    j->pool_len += (size_t)n;
    i += (size_t)n;
  }
  j->pool[j->pool_len++] = 0;
  j->pos = end + 1;
  return 0;
}

static int j_digits(Json *j) {
  size_t p0 = j->pos;
  while (j->pos < j->len && j->s[j->pos] >= '0' && j->s[j->pos] <= '9') j->pos++;
  return j->pos > p0 ? 0 : -1;
}

static int j_number(Json *j, int node) {
  size_t st = j->pos;
  int is_int = 1;
  if (j->s[j->pos] == '-') j->pos++;
  if (j->pos < j->len && j->s[j->pos] == '0') j->pos++;
  else if (j_digits(j)) return j_fail(j, "invalid number");
  if (j->pos < j->len && j->s[j->pos] == '.') {
    j->pos++;
    is_int = 0;
    if (j_digits(j)) return j_fail(j, "invalid number: digits expected after '.'");
  }
  if (j->pos < j->len && (j->s[j->pos] == 'e' || j->s[j->pos] == 'E')) {
    j->pos++;
    is_int = 0;
    if (j->pos < j->len && (j->s[j->pos] == '+' || j->s[j->pos] == '-')) j->pos++;
    if (j_digits(j)) return j_fail(j, "invalid number: digits expected in the exponent");
  }
  size_t n = j->pos - st;
  if (n > JSON_MAX_NUMBER) return j_fail(j, "number longer than %d characters", JSON_MAX_NUMBER);
  char buf[JSON_MAX_NUMBER + 1];
  memcpy(buf, j->s + st, n);
  buf[n] = 0;
  double v = strtod(buf, NULL);
  if (!isfinite(v)) return j_fail(j, "number out of range: %s", buf);
  j->nodes[node].num = v;
  j->nodes[node].is_int = (uint8_t)(is_int && fabs(v) <= 9007199254740992.0);
  return 0;
}

static int cmp_cstr_ptr(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

// Duplicate keys in one object: sort the keys, compare neighbours (O(k log k)).
static int j_check_dup_keys(Json *j, int obj) {
  int k = j->nodes[obj].count;
  if (k < 2) return 0;
  const char **keys = malloc((size_t)k * sizeof *keys);
  if (!keys) return j_fail(j, "out of memory");
  int i = 0;
  for (int c = j->nodes[obj].child; c >= 0; c = j->nodes[c].next) keys[i++] = j->pool + j->nodes[c].key;
  qsort(keys, (size_t)k, sizeof *keys, cmp_cstr_ptr);
  for (i = 1; i < k; i++)
    if (!strcmp(keys[i - 1], keys[i])) {
      char name[200];
      snprintf(name, sizeof name, "%.180s", keys[i]);
      free(keys);
      return j_fail(j, "duplicate key \"%s\"", name);
    }
  free(keys);
  return 0;
}

static int j_value(Json *j, int depth) {
  j_ws(j);
  if (j->pos >= j->len) return j_fail(j, "unexpected end of input");
  unsigned char c = j->s[j->pos];
  if (c == '{' || c == '[') {
    if (depth >= JSON_MAX_DEPTH) return j_fail(j, "nesting deeper than %d", JSON_MAX_DEPTH);
    int is_obj = c == '{', node = j_new(j, is_obj ? J_OBJ : J_ARR), last = -1;
    if (node < 0) return -1;
    char close = is_obj ? '}' : ']';
    j->pos++;
    j_ws(j);
    if (j->pos < j->len && j->s[j->pos] == close) {
      j->pos++;
      return node;
    }
    for (;;) {
      uint32_t key = JSON_NONE;
      if (is_obj) {
        j_ws(j);
        if (j->pos >= j->len || j->s[j->pos] != '"') return j_fail(j, "expected a string key");
        if (j_string(j, &key)) return -1;
        j_ws(j);
        if (j->pos >= j->len || j->s[j->pos] != ':') return j_fail(j, "expected ':' after a key");
        j->pos++;
      }
      int child = j_value(j, depth + 1);
      if (child < 0) return -1;
      j->nodes[child].key = key;
      if (last < 0) j->nodes[node].child = child;
      else j->nodes[last].next = child;
      last = child;
      j->nodes[node].count++;
      j_ws(j);
      if (j->pos < j->len && j->s[j->pos] == ',') {
        j->pos++;
        continue;
      }
      if (j->pos < j->len && j->s[j->pos] == close) {
        j->pos++;
        break;
      }
      return j_fail(j, "expected ',' or '%c'", close);
    }
    if (is_obj && j_check_dup_keys(j, node)) return -1;
    return node;
  }
  if (c == '"') {
    int node = j_new(j, J_STR);
    if (node < 0) return -1;
    uint32_t off;
    if (j_string(j, &off)) return -1;
    j->nodes[node].str = off;
    return node;
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    int node = j_new(j, J_NUM);
    if (node < 0 || j_number(j, node)) return -1;
    return node;
  }
  static const struct {
    const char *word;
    int type;
  } lits[] = {{"true", J_TRUE}, {"false", J_FALSE}, {"null", J_NULL}};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(lits[i].word);
    if (j->len - j->pos >= n && !memcmp(j->s + j->pos, lits[i].word, n)) {
      j->pos += n;
      return j_new(j, lits[i].type);
    }
  }
  if (c >= 0x20 && c < 0x7f) return j_fail(j, "unexpected character '%c'", c);
  return j_fail(j, "unexpected byte 0x%02x", c);
}

void json_free(Json *j) {
  free(j->nodes);
  free(j->pool);
  memset(j, 0, sizeof *j);
}

// Parses text[0..len) into j; returns the root node index (0) or -1 with a message.
int json_parse(Json *j, const char *text, size_t len, char *err, size_t errlen) {
  memset(j, 0, sizeof *j);
  j->s = (const unsigned char *)text;
  j->len = len;
  j->err = err;
  j->errlen = errlen;
  if (len > JSON_MAX_TEXT) return j_fail(j, "text longer than %zu bytes", JSON_MAX_TEXT);
  int root = j_value(j, 0);
  if (root < 0) return -1;
  j_ws(j);
  if (j->pos != j->len) return j_fail(j, "unexpected characters after the JSON value");
  return root;
}

// Member `key` of object `obj`, or -1.
int jget(const Json *j, int obj, const char *key) {
  if (obj < 0 || j->nodes[obj].type != J_OBJ) return -1;
  for (int c = j->nodes[obj].child; c >= 0; c = j->nodes[c].next)
    if (!strcmp(j->pool + j->nodes[c].key, key)) return c;
  return -1;
}
const char *jstr(const Json *j, int node) { return j->pool + j->nodes[node].str; }
static const char *jkey(const Json *j, int node) { return j->pool + j->nodes[node].key; }

// ---------------------------------------------------------------------------------------------------
// 2. safetensors
// ---------------------------------------------------------------------------------------------------
// Layout (svd-spec §7.3): u64 LE header length N, N bytes of JSON, then the data buffer. The JSON maps each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end)} relative to the data buffer;
// "__metadata__" is ignored.
#define ST_MAX_HEADER 100000000ull  // the reference reader's limit
// ST_MAX_NAME and the types StTensor, StHeader, StFile are declared in vdp.h section 2b.

// Every dtype of the safetensors format (bits per element); only the first three are converted.
static const struct {
  const char *name;
  int vdp;
  int bits;
} ST_DTYPES[] = {
    {"F32", VDP_F32, 32}, {"F16", VDP_F16, 16}, {"BF16", VDP_BF16, 16}, {"F64", -1, 64},     {"I64", -1, 64},
    {"U64", -1, 64},      {"I32", -1, 32},      {"U32", -1, 32},        {"I16", -1, 16},     {"U16", -1, 16},
    {"I8", -1, 8},        {"U8", -1, 8},        {"BOOL", -1, 8},        {"F8_E4M3", -1, 8},  {"F8_E5M2", -1, 8},
    {"F8_E8M0", -1, 8},   {"C64", -1, 64},      {"F4", -1, 4},          {"F6_E2M3", -1, 6},  {"F6_E3M2", -1, 6},
};

void st_header_free(StHeader *h) {
  free(h->t);
  memset(h, 0, sizeof *h);
}

static int cmp_st_name(const void *a, const void *b) { return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name); }
static int cmp_st_begin(const void *a, const void *b) {
  const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// bsearch comparator for tables sorted by name whose elements start with their name (StTensor, VdpTensor).
int name_key_cmp(const void *key, const void *elem) { return strcmp(key, (const char *)elem); }
_Static_assert(offsetof(StTensor, name) == 0, "name_key_cmp needs the name first");
_Static_assert(offsetof(VdpTensor, name) == 0, "name_key_cmp needs the name first");

const StTensor *st_find(const StHeader *h, const char *name) {
  return h->n ? bsearch(name, h->t, (size_t)h->n, sizeof *h->t, name_key_cmp) : NULL;
}

// Reads one tensor entry {"dtype", "shape", "data_offsets"} of the header into t.
static int st_entry(const Json *j, int node, StTensor *t, const StHeader *h, char *err, size_t errlen) {
  const char *nm = t->name;
  if (j->nodes[node].type != J_OBJ) return errf(err, errlen, "tensor '%s': entry is %s, not an object", nm, jtype_name(j->nodes[node].type));
  int jd = jget(j, node, "dtype"), js = jget(j, node, "shape"), jo = jget(j, node, "data_offsets");
  if (jd < 0 || js < 0 || jo < 0)
    return errf(err, errlen, "tensor '%s': missing \"%s\"", nm, jd < 0 ? "dtype" : js < 0 ? "shape" : "data_offsets");
  if (j->nodes[jd].type != J_STR) return errf(err, errlen, "tensor '%s': dtype is not a string", nm);
  const char *ds = jstr(j, jd);
  int bits = 0;
  t->dtype = -2;
  for (size_t i = 0; i < sizeof ST_DTYPES / sizeof ST_DTYPES[0]; i++)
    if (!strcmp(ds, ST_DTYPES[i].name)) t->dtype = ST_DTYPES[i].vdp, bits = ST_DTYPES[i].bits;
  if (t->dtype == -2) return errf(err, errlen, "tensor '%s': unknown dtype \"%.40s\"", nm, ds);
  snprintf(t->dtype_str, sizeof t->dtype_str, "%s", ds);

  if (j->nodes[js].type != J_ARR) return errf(err, errlen, "tensor '%s': shape is not an array", nm);
  if (j->nodes[js].count > VDP_MAX_DIMS)
    return errf(err, errlen, "tensor '%s': %d dimensions (vdp supports at most %d)", nm, j->nodes[js].count, VDP_MAX_DIMS);
  t->ndim = 0;
  uint64_t numel = 1;
  for (int c = j->nodes[js].child; c >= 0; c = j->nodes[c].next) {
    const JNode *d = &j->nodes[c];
    if (d->type == J_NUM && d->num >= 9007199254740992.0)  // from 2^53: no longer exact in the parser's double
      return errf(err, errlen, "tensor '%s': shape entry %.4g is too large (2^53 or more)", nm, d->num);
    if (d->type != J_NUM || !d->is_int || d->num < 0)
      return errf(err, errlen, "tensor '%s': shape entries must be non-negative integers", nm);
    uint64_t dim = (uint64_t)d->num;
    if (mul_checked(numel, dim, (uint64_t)1 << 60, &numel))
      return errf(err, errlen, "tensor '%s': element count overflows", nm);
    t->shape[t->ndim++] = (int64_t)dim;
  }
  t->numel = numel;

  if (j->nodes[jo].type != J_ARR || j->nodes[jo].count != 2)
    return errf(err, errlen, "tensor '%s': data_offsets must be an array of two integers", nm);
  const JNode *b = &j->nodes[j->nodes[jo].child], *e = &j->nodes[b->next];
  if ((b->type == J_NUM && b->num >= 9007199254740992.0) || (e->type == J_NUM && e->num >= 9007199254740992.0))
    return errf(err, errlen, "tensor '%s': data_offsets [%.4g, %.4g] are too large (2^53 or more; no file is that big)", nm,
                b->type == J_NUM ? b->num : 0.0, e->type == J_NUM ? e->num : 0.0);
  if (b->type != J_NUM || e->type != J_NUM || !b->is_int || !e->is_int || b->num < 0 || e->num < 0)
    return errf(err, errlen, "tensor '%s': data_offsets must be non-negative integers", nm);
  uint64_t ob = (uint64_t)b->num, oe = (uint64_t)e->num, avail = h->file_size - h->data_start;
  if (oe < ob) return errf(err, errlen, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") end before they begin", nm, ob, oe);
  if (oe > avail)
    return errf(err, errlen, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") extend past the end of the file (data buffer: %" PRIu64 " bytes)",
                nm, ob, oe, avail);
  uint64_t nbits;
  if (mul_checked(numel, (uint64_t)bits, UINT64_MAX, &nbits) || nbits % 8)
    return errf(err, errlen, "tensor '%s': size of %" PRIu64 " elements of %s is not a whole number of bytes", nm, numel, ds);
  if (oe - ob != nbits / 8) {
    char dims[128];
    fmt_dims(dims, sizeof dims, t->ndim, t->shape);
    return errf(err, errlen, "tensor '%s': data_offsets span %" PRIu64 " bytes but shape %s of %s needs %" PRIu64, nm,
                oe - ob, dims, ds, nbits / 8);
  }
  t->begin = h->data_start + ob;
  t->end = h->data_start + oe;
  return 0;
}

// Parses a safetensors header. buf holds at least the first 8 + N bytes of a file of file_size bytes
// (the whole file for in-memory use). On success h->t lists the tensors sorted by name.
int st_parse_mem(const uint8_t *buf, size_t len, uint64_t file_size, StHeader *h, char *err, size_t errlen) {
  memset(h, 0, sizeof *h);
  if (len < 8 || file_size < 8) return errf(err, errlen, "file too short for a safetensors header (%" PRIu64 " bytes)", file_size);
  uint64_t n = rd_u64(buf);
  if (n > file_size - 8)
    return errf(err, errlen, "header length %" PRIu64 " exceeds the file (%" PRIu64 " bytes)", n, file_size);
  if (n > ST_MAX_HEADER) return errf(err, errlen, "header length %" PRIu64 " exceeds the 100 MB limit", n);
  if (n > len - 8) return errf(err, errlen, "header truncated (%zu of %" PRIu64 " bytes)", len - 8, n);
  h->data_start = 8 + n;
  h->file_size = file_size;

  Json j;
  if (json_parse(&j, (const char *)buf + 8, (size_t)n, err, errlen) < 0) {
    json_free(&j);
    err_prefix(err, errlen, "header");
    return -1;
  }
  int rc = -1;
  if (j.nodes[0].type != J_OBJ) {
    errf(err, errlen, "header is %s, not a JSON object", jtype_name(j.nodes[0].type));
    goto done;
  }
  h->t = calloc((size_t)j.nodes[0].count + 1, sizeof *h->t);
  if (!h->t) {
    errf(err, errlen, "out of memory for %d tensor entries", j.nodes[0].count);
    goto done;
  }
  for (int c = j.nodes[0].child; c >= 0; c = j.nodes[c].next) {
    const char *name = jkey(&j, c);
    if (!strcmp(name, "__metadata__")) continue;
    size_t nl = strlen(name);
    if (nl == 0) {
      errf(err, errlen, "empty tensor name");
      goto done;
    }
    if (nl > ST_MAX_NAME) {
      errf(err, errlen, "tensor name of %zu bytes (limit %d): '%.60s...'", nl, ST_MAX_NAME, name);
      goto done;
    }
    StTensor *t = &h->t[h->n];
    memcpy(t->name, name, nl + 1);
    if (st_entry(&j, c, t, h, err, errlen)) goto done;
    h->n++;
  }
  // Regions must not overlap (zero-size tensors occupy nothing).
  StTensor **byoff = malloc((size_t)(h->n + 1) * sizeof *byoff);
  if (!byoff) {
    errf(err, errlen, "out of memory");
    goto done;
  }
  int m = 0;
  for (int i = 0; i < h->n; i++)
    if (h->t[i].end > h->t[i].begin) byoff[m++] = &h->t[i];
  qsort(byoff, (size_t)m, sizeof *byoff, cmp_st_begin);
  for (int i = 1; i < m; i++)
    if (byoff[i]->begin < byoff[i - 1]->end) {
      errf(err, errlen, "tensors '%s' and '%s' overlap in the data buffer", byoff[i - 1]->name, byoff[i]->name);
      free(byoff);
      goto done;
    }
  free(byoff);
  qsort(h->t, (size_t)h->n, sizeof *h->t, cmp_st_name);  // names are unique: the JSON parser refuses duplicate keys
  rc = 0;
done:
  json_free(&j);
  if (rc) st_header_free(h);
  return rc;
}

// Fuzzing/test entry point: parses a whole safetensors file held in memory.
int st_parse_buffer(const uint8_t *buf, size_t len, char *err, size_t errlen) {
  StHeader h;
  int rc = st_parse_mem(buf, len, len, &h, err, errlen);
  if (!rc) {
    // Touch every tensor's bytes the way a reader would, so the sanitizers see out-of-range offsets.
    volatile uint8_t sink = 0;
    for (int i = 0; i < h.n; i++)
      if (h.t[i].end > h.t[i].begin) sink ^= buf[h.t[i].begin] ^ buf[h.t[i].end - 1];
    (void)sink;
    st_header_free(&h);
  }
  return rc;
}

// Opens a safetensors file: reads and validates the header; the data stays on disk (read with pread).
int st_open(const char *path, StFile *f, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  f->fd = -1;
  snprintf(f->path, sizeof f->path, "%s", path);
  uint64_t size;
  int fd = open_regular(path, &size, err, errlen);
  if (fd < 0) return -1;
  uint8_t head[8];
  if (size < 8 || pread_full(fd, head, 8, 0)) {
    close(fd);
    return errf(err, errlen, "%s: file too short for a safetensors header (%" PRIu64 " bytes)", path, size);
  }
  uint64_t n = rd_u64(head);
  // The same checks st_parse_mem makes, before allocating n bytes.
  if (n > size - 8 || n > ST_MAX_HEADER) {
    close(fd);
    return errf(err, errlen, "%s: header length %" PRIu64 " exceeds %s", path, n,
                n > size - 8 ? "the file" : "the 100 MB limit");
  }
  uint8_t *buf = malloc((size_t)n + 8);
  if (!buf) {
    close(fd);
    return errf(err, errlen, "%s: out of memory reading a %" PRIu64 "-byte header", path, n);
  }
  if (pread_full(fd, buf, (size_t)n + 8, 0)) {
    free(buf);
    close(fd);
    return errf(err, errlen, "%s: read error", path);
  }
  int rc = st_parse_mem(buf, (size_t)n + 8, size, &f->h, err, errlen);
  free(buf);
  if (rc) {
    close(fd);
    err_prefix(err, errlen, path);
    return -1;
  }
  f->fd = fd;
  return 0;
}

void st_close(StFile *f) {
  if (f->fd >= 0) close(f->fd);
  st_header_free(&f->h);
  f->fd = -1;
}
