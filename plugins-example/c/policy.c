// Herald's reference push policy, in C.
//
// Page -> assets from the policy's configuration, minus the assets the
// client's cookie says it already has, and nothing for requests that are not
// page navigations. The same behaviour as the Rust, Python and JavaScript
// versions; the conformance table in `plugins-example/conformance.toml` holds
// all four to it.
//
//     [policy.config]
//     cookie = "herald-have"                      # optional, this is the default
//     "/" = ["/css/site.css u=0", "/js/app.js u=1", "/img/hero.jpg u=5 i"]
//
// Memory, as wit-bindgen's C bindings define it: the request belongs to this
// function (freed before returning); the returned hints or error string are
// malloc'd here and freed by the generated post-return function; lists the
// `config` import returns belong to the caller.

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "push_policy_reads.h"

typedef push_policy_reads_string_t str_t;

static const char DEFAULT_COOKIE[] = "herald-have";

static bool str_eq(const str_t *s, const char *c) {
  size_t n = strlen(c);
  return s->len == n && memcmp(s->ptr, c, n) == 0;
}

static bool str_eq_n(const str_t *s, const uint8_t *p, size_t n) {
  return s->len == n && memcmp(s->ptr, p, n) == 0;
}

static bool contains(const str_t *s, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= s->len; i++) {
    if (memcmp(s->ptr + i, needle, n) == 0) return true;
  }
  return false;
}

static const str_t *header(const push_policy_reads_request_t *req, const char *name) {
  for (size_t i = 0; i < req->headers.len; i++) {
    if (str_eq(&req->headers.ptr[i].name, name)) return &req->headers.ptr[i].value;
  }
  return NULL;
}

// A page load: Fetch Metadata says so, or (without it) `accept` does.
static bool is_navigation(const push_policy_reads_request_t *req) {
  if (!str_eq(&req->method, "GET")) return false;
  const str_t *mode = header(req, "sec-fetch-mode");
  const str_t *dest = header(req, "sec-fetch-dest");
  if (mode || dest) {
    return (mode && str_eq(mode, "navigate")) || (dest && str_eq(dest, "document"));
  }
  const str_t *accept = header(req, "accept");
  if (!accept) return true;
  return contains(accept, "text/html") || (contains(accept, "*/*") && !contains(accept, ","));
}

static const struct {
  const char *ext;
  herald_policy_types_destination_t dest;
} EXTENSIONS[] = {
    {"css", HERALD_POLICY_TYPES_DESTINATION_STYLE},
    {"js", HERALD_POLICY_TYPES_DESTINATION_SCRIPT},
    {"mjs", HERALD_POLICY_TYPES_DESTINATION_SCRIPT},
    {"woff2", HERALD_POLICY_TYPES_DESTINATION_FONT},
    {"woff", HERALD_POLICY_TYPES_DESTINATION_FONT},
    {"ttf", HERALD_POLICY_TYPES_DESTINATION_FONT},
    {"otf", HERALD_POLICY_TYPES_DESTINATION_FONT},
    {"png", HERALD_POLICY_TYPES_DESTINATION_IMAGE},
    {"jpg", HERALD_POLICY_TYPES_DESTINATION_IMAGE},
    {"jpeg", HERALD_POLICY_TYPES_DESTINATION_IMAGE},
    {"gif", HERALD_POLICY_TYPES_DESTINATION_IMAGE},
    {"webp", HERALD_POLICY_TYPES_DESTINATION_IMAGE},
    {"avif", HERALD_POLICY_TYPES_DESTINATION_IMAGE},
    {"svg", HERALD_POLICY_TYPES_DESTINATION_IMAGE},
    {"ico", HERALD_POLICY_TYPES_DESTINATION_IMAGE},
    {"html", HERALD_POLICY_TYPES_DESTINATION_DOCUMENT},
    {"htm", HERALD_POLICY_TYPES_DESTINATION_DOCUMENT},
    {"mp3", HERALD_POLICY_TYPES_DESTINATION_AUDIO},
    {"ogg", HERALD_POLICY_TYPES_DESTINATION_AUDIO},
    {"wav", HERALD_POLICY_TYPES_DESTINATION_AUDIO},
    {"flac", HERALD_POLICY_TYPES_DESTINATION_AUDIO},
    {"mp4", HERALD_POLICY_TYPES_DESTINATION_VIDEO},
    {"webm", HERALD_POLICY_TYPES_DESTINATION_VIDEO},
    {"vtt", HERALD_POLICY_TYPES_DESTINATION_TRACK},
    {"webmanifest", HERALD_POLICY_TYPES_DESTINATION_MANIFEST},
};

// `as=` names, in the WIT enum's order.
static const char *DESTINATIONS[] = {"style", "script", "font",  "image", "fetch",   "document",
                                     "audio", "video",  "track", "worker", "manifest"};

static herald_policy_types_destination_t destination_of(const char *path, size_t len) {
  size_t end = 0;
  while (end < len && path[end] != '?' && path[end] != '#') end++;
  size_t start = end;
  while (start > 0 && path[start - 1] != '/') start--;
  size_t dot = end;
  while (dot > start && path[dot - 1] != '.') dot--;
  if (dot == start) return HERALD_POLICY_TYPES_DESTINATION_FETCH;
  size_t n = end - dot;
  for (size_t i = 0; i < sizeof EXTENSIONS / sizeof EXTENSIONS[0]; i++) {
    const char *ext = EXTENSIONS[i].ext;
    if (strlen(ext) != n) continue;
    bool same = true;
    for (size_t j = 0; j < n && same; j++) {
      char c = path[dot + j];
      if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
      same = c == ext[j];
    }
    if (same) return EXTENSIONS[i].dest;
  }
  return HERALD_POLICY_TYPES_DESTINATION_FETCH;
}

// Digits only, within [low, high]; -1 otherwise.
static long number(const char *s, size_t n, long low, long high) {
  if (n == 0 || n > 9) return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v >= low && v <= high ? v : -1;
}

static bool word_is(const char *w, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void append(char **at, const char *s, size_t n) {
  memcpy(*at, s, n);
  *at += n;
}

// err = "asset `PATH`: bad attribute `WORD`" (no stdio: it would import WASI).
static void bad_attribute(str_t *err, const char *path, size_t path_len, const char *w, size_t n) {
  static const char a[] = "asset `", b[] = "`: bad attribute `", c[] = "`";
  size_t len = sizeof a - 1 + path_len + sizeof b - 1 + n + sizeof c - 1;
  char *msg = malloc(len), *at = msg;
  if (!msg) abort();
  append(&at, a, sizeof a - 1);
  append(&at, path, path_len);
  append(&at, b, sizeof b - 1);
  append(&at, w, n);
  append(&at, c, sizeof c - 1);
  err->ptr = (uint8_t *)msg;
  err->len = len;
}

// `/path attr...` -> *hint. On a bad spec, sets *err to a message and
// returns false.
static bool parse_spec(const str_t *spec, push_policy_reads_hint_t *hint, str_t *err) {
  const char *s = (const char *)spec->ptr, *end = s + spec->len;
  while (s < end && is_space(*s)) s++;
  const char *path = s;
  while (s < end && !is_space(*s)) s++;
  size_t path_len = (size_t)(s - path);
  if (path_len == 0) {
    push_policy_reads_string_dup(err, "empty asset spec");
    return false;
  }
  memset(hint, 0, sizeof *hint);
  push_policy_reads_string_dup_n(&hint->path, path, path_len);
  hint->urgency = 3;
  hint->weight = 16;
  hint->destination = destination_of(path, path_len);
  hint->delivery = HERALD_POLICY_TYPES_DELIVERY_AUTO;
  for (;;) {
    while (s < end && is_space(*s)) s++;
    if (s == end) return true;
    const char *w = s;
    while (s < end && !is_space(*s)) s++;
    size_t n = (size_t)(s - w);
    const char *eq = memchr(w, '=', n);
    size_t key = eq ? (size_t)(eq - w) : n;
    const char *value = eq ? eq + 1 : NULL;
    size_t value_len = eq ? n - key - 1 : 0;
    bool ok = true;
    if (eq && word_is(w, key, "as")) {
      ok = false;
      for (size_t i = 0; i < sizeof DESTINATIONS / sizeof DESTINATIONS[0]; i++) {
        if (word_is(value, value_len, DESTINATIONS[i])) {
          hint->destination = (herald_policy_types_destination_t)i;
          ok = true;
        }
      }
    } else if (eq && word_is(w, key, "u")) {
      long u = number(value, value_len, 0, 7);
      ok = u >= 0;
      if (ok) hint->urgency = (uint8_t)u;
    } else if (eq && word_is(w, key, "w")) {
      long v = number(value, value_len, 1, 256);
      ok = v >= 0;
      if (ok) hint->weight = (uint16_t)v;
    } else if (word_is(w, n, "i")) {
      hint->incremental = true;
    } else if (word_is(w, n, "push")) {
      hint->delivery = HERALD_POLICY_TYPES_DELIVERY_PUSH_ONLY;
    } else if (word_is(w, n, "hint")) {
      hint->delivery = HERALD_POLICY_TYPES_DELIVERY_HINT_ONLY;
    } else if (word_is(w, n, "crossorigin") || word_is(w, n, "crossorigin=anonymous")) {
      hint->crossorigin.is_some = true;
      hint->crossorigin.val = HERALD_POLICY_TYPES_CORS_MODE_ANONYMOUS;
    } else if (word_is(w, n, "crossorigin=use-credentials")) {
      hint->crossorigin.is_some = true;
      hint->crossorigin.val = HERALD_POLICY_TYPES_CORS_MODE_USE_CREDENTIALS;
    } else {
      ok = false;
    }
    if (!ok) {
      bad_attribute(err, path, path_len, w, n);
      push_policy_reads_hint_free(hint);
      return false;
    }
  }
}

// Whether `path` is one of the `|`-separated entries of `have`.
static bool listed(const str_t *have, const str_t *path) {
  size_t start = 0;
  for (size_t i = 0; i <= have->len; i++) {
    if (i == have->len || have->ptr[i] == '|') {
      if (str_eq_n(path, have->ptr + start, i - start)) return true;
      start = i + 1;
    }
  }
  return false;
}

static void config_get(const char *key, push_policy_reads_list_string_t *out) {
  str_t k = {(uint8_t *)key, strlen(key)};
  herald_policy_config_get(&k, out);
}

bool exports_push_policy_reads_decide(push_policy_reads_request_t *req, push_policy_reads_list_hint_t *ret, str_t *err) {
  bool ok = true;
  ret->ptr = NULL;
  ret->len = 0;
  push_policy_reads_list_string_t specs = {0}, names = {0};
  if (!is_navigation(req)) goto done;

  herald_policy_config_get(&req->path, &specs);
  config_get("cookie", &names);
  const str_t *have = NULL;
  for (size_t i = 0; i < req->cookies.len; i++) {
    const str_t *name = &req->cookies.ptr[i].name;
    bool match = names.len > 0 ? str_eq_n(name, names.ptr[0].ptr, names.ptr[0].len)
                               : str_eq(name, DEFAULT_COOKIE);
    if (match) {
      have = &req->cookies.ptr[i].value;
      break;
    }
  }

  if (specs.len > 0) ret->ptr = calloc(specs.len, sizeof *ret->ptr);
  for (size_t i = 0; i < specs.len; i++) {
    push_policy_reads_hint_t hint;
    if (!parse_spec(&specs.ptr[i], &hint, err)) {
      push_policy_reads_list_hint_free(ret);
      ok = false;
      goto done;
    }
    if (have && listed(have, &hint.path)) {
      push_policy_reads_hint_free(&hint);
    } else {
      ret->ptr[ret->len++] = hint;
    }
  }

done:
  push_policy_reads_list_string_free(&specs);
  push_policy_reads_list_string_free(&names);
  push_policy_reads_request_free(req);
  return ok;
}

// What `decide` reads besides the method and the path: Herald shows it only
// these. Lists malloc'd here, freed by the generated post-return function.
bool exports_push_policy_reads_reads(push_policy_reads_read_set_t *ret) {
  static const char *const HEADERS[] = {"sec-fetch-dest", "sec-fetch-mode", "accept"};
  size_t n = sizeof HEADERS / sizeof *HEADERS;
  ret->headers.ptr = calloc(n, sizeof *ret->headers.ptr);
  ret->headers.len = n;
  for (size_t i = 0; i < n; i++) push_policy_reads_string_dup(&ret->headers.ptr[i], HEADERS[i]);
  push_policy_reads_list_string_t names = {0};
  config_get("cookie", &names);
  ret->cookies.ptr = calloc(1, sizeof *ret->cookies.ptr);
  ret->cookies.len = 1;
  if (names.len > 0) {
    push_policy_reads_string_dup_n(&ret->cookies.ptr[0], (const char *)names.ptr[0].ptr, names.ptr[0].len);
  } else {
    push_policy_reads_string_dup(&ret->cookies.ptr[0], DEFAULT_COOKIE);
  }
  push_policy_reads_list_string_free(&names);
  return true;
}
