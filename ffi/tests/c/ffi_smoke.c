/*
 * End-to-end smoke test of the keystead-ffi C ABI, i.e. of exactly what the generated Swift
 * (and Kotlin) code calls: the `uniffi_keystead_ffi_fn_*` functions, RustBuffer, RustCallStatus,
 * the object handle clone/free functions, and uniffi's serialization of the Records and of
 * KeysteadError. Built and run by scripts/test-swift.sh against the cdylib and the staticlib:
 *
 *   gcc -D_Nullable= -D_Nonnull= -I bindings/swift/Sources/keysteadFFI ffi_smoke.c -lkeystead_ffi
 *   ./a.out <temp dir>
 *
 * open -> prefix -> create (+ CreatedKey Display/Debug) -> verify (valid) -> verify_header -> get (bad id: InvalidArgument)
 * -> revoke -> verify (revoked) -> audit -> close -> verify (Closed) -> close again -> free
 * -> check_integrity. Wire format (uniffi 0.32): big-endian; a top-level String argument is a
 * RustBuffer holding the bare UTF-8 bytes; inside a buffer a String or byte sequence is an i32
 * length plus bytes, Option an i8 tag, Vec/HashMap an i32 count, times and durations i64
 * milliseconds, a flat error an i32 variant index (from 1) plus its message as a String.
 * Object methods consume a handle, so every call gets a fresh one from the clone function.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keysteadFFI.h"

/* KeysteadError variant indices: declaration order in ffi/src/lib.rs, from 1. */
enum {
    ERR_STORE = 1,
    ERR_WRONG_PEPPER,
    ERR_INVALID_ARGUMENT,
    ERR_KEY_NOT_FOUND,
    ERR_INVALID_STATE,
    ERR_PREFIX_MISMATCH,
    ERR_UNSUPPORTED_VERSION,
    ERR_CLOSED,
    ERR_UNAVAILABLE,
};

static int checks;

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "ffi_smoke: FAILED: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(1);
}

#define CHECK(cond, ...)              \
    do {                              \
        checks++;                     \
        if (!(cond)) fail(__VA_ARGS__); \
    } while (0)

/* ---- building arguments ---- */

typedef struct {
    uint8_t data[4096];
    int32_t len;
} Writer;

static void put(Writer *w, const void *bytes, size_t n) {
    if (w->len + n > sizeof w->data) fail("writer overflow");
    memcpy(w->data + w->len, bytes, n);
    w->len += (int32_t)n;
}
static void put_u8(Writer *w, uint8_t v) { put(w, &v, 1); }
static void put_i32(Writer *w, int32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}
static void put_string(Writer *w, const char *s) {
    put_i32(w, (int32_t)strlen(s));
    put(w, s, strlen(s));
}

static RustBuffer to_buffer(const uint8_t *data, int32_t len) {
    RustCallStatus status = {0};
    ForeignBytes bytes = {len, data};
    RustBuffer buf = ffi_keystead_ffi_rustbuffer_from_bytes(bytes, &status);
    if (status.code != 0) fail("rustbuffer_from_bytes: status %d", status.code);
    return buf;
}
static RustBuffer writer_buffer(const Writer *w) { return to_buffer(w->data, w->len); }
/* A top-level String argument: the bare UTF-8 bytes. */
static RustBuffer string_arg(const char *s) {
    return to_buffer((const uint8_t *)s, (int32_t)strlen(s));
}
/* Whether a returned string buffer contains needle. */
static int contains(RustBuffer buf, const char *needle) {
    size_t n = strlen(needle);
    for (uint64_t i = 0; n <= buf.len && i <= buf.len - n; i++)
        if (memcmp(buf.data + i, needle, n) == 0) return 1;
    return 0;
}
static void free_buffer(RustBuffer buf) {
    RustCallStatus status = {0};
    ffi_keystead_ffi_rustbuffer_free(buf, &status);
    if (status.code != 0) fail("rustbuffer_free: status %d", status.code);
}

/* ---- reading results ---- */

typedef struct {
    const uint8_t *data;
    uint64_t len, pos;
} Reader;

static Reader reader(RustBuffer buf) { return (Reader){buf.data, buf.len, 0}; }
static const uint8_t *take(Reader *r, uint64_t n) {
    if (r->pos + n > r->len) fail("read past the end of a RustBuffer");
    const uint8_t *p = r->data + r->pos;
    r->pos += n;
    return p;
}
static uint8_t get_u8(Reader *r) { return *take(r, 1); }
static uint16_t get_u16(Reader *r) {
    const uint8_t *b = take(r, 2);
    return (uint16_t)(b[0] << 8 | b[1]);
}
static int32_t get_i32(Reader *r) {
    const uint8_t *b = take(r, 4);
    return (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
}
static uint64_t get_u64(Reader *r) {
    const uint8_t *b = take(r, 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i];
    return v;
}
/* Copies a String into out (NUL-terminated). */
static void get_string(Reader *r, char *out, size_t cap) {
    int32_t n = get_i32(r);
    if (n < 0 || (size_t)n >= cap) fail("string of %d bytes does not fit", n);
    memcpy(out, take(r, (uint64_t)n), (size_t)n);
    out[n] = 0;
}
static void skip_string(Reader *r) {
    int32_t n = get_i32(r);
    take(r, (uint64_t)n);
}
static void skip_timestamp(Reader *r) { take(r, 8); } /* i64 milliseconds since the epoch */
static void skip_optional_timestamp(Reader *r) {
    if (get_u8(r)) skip_timestamp(r);
}
static void skip_optional_string(Reader *r) {
    if (get_u8(r)) skip_string(r);
}

typedef struct {
    char id[64];
    char name[256];
    char status[32];
    uint64_t use_count;
} KeyInfo;

/* KeyInfo: id, name, scopes, metadata, status, created_at, updated_at, expires_at,
 * last_used_at, use_count, replaces, replaced_by. */
static void get_key_info(Reader *r, KeyInfo *info) {
    get_string(r, info->id, sizeof info->id);
    get_string(r, info->name, sizeof info->name);
    for (int32_t i = 0, n = get_i32(r); i < n; i++) skip_string(r);
    for (int32_t i = 0, n = get_i32(r); i < n; i++) {
        skip_string(r);
        skip_string(r);
    }
    get_string(r, info->status, sizeof info->status);
    skip_timestamp(r);
    skip_timestamp(r);
    skip_optional_timestamp(r);
    skip_optional_timestamp(r);
    info->use_count = get_u64(r);
    skip_optional_string(r);
    skip_optional_string(r);
}

typedef struct {
    int ok;
    char code[32];
    int has_key;
    KeyInfo key;
    int has_key_id;
    char key_id[32];
    uint16_t http_status;
    char www_authenticate[256];
} Verification;

/* Verification: ok, code, key, key_id, http_status, www_authenticate. Frees the buffer. */
static Verification take_verification(RustBuffer buf) {
    Verification v = {0};
    Reader r = reader(buf);
    v.ok = get_u8(&r);
    get_string(&r, v.code, sizeof v.code);
    v.has_key = get_u8(&r);
    if (v.has_key) get_key_info(&r, &v.key);
    v.has_key_id = get_u8(&r);
    if (v.has_key_id) get_string(&r, v.key_id, sizeof v.key_id);
    v.http_status = get_u16(&r);
    if (get_u8(&r)) get_string(&r, v.www_authenticate, sizeof v.www_authenticate);
    CHECK(r.pos == r.len, "Verification: %llu trailing bytes",
          (unsigned long long)(r.len - r.pos));
    free_buffer(buf);
    return v;
}

/* Checks that a call failed with KeysteadError case `expected`; frees the error buffer. */
static void expect_error(RustCallStatus *status, int32_t expected, const char *what) {
    CHECK(status->code == 1, "%s: expected an error (status 1), got status %d", what,
          status->code);
    Reader r = reader(status->errorBuf);
    int32_t variant = get_i32(&r);
    char message[512];
    get_string(&r, message, sizeof message);
    CHECK(variant == expected, "%s: expected KeysteadError case %d, got %d (%s)", what,
          expected, variant, message);
    CHECK(message[0] != 0, "%s: empty error message", what);
    printf("  %s -> KeysteadError case %d: %s\n", what, variant, message);
    free_buffer(status->errorBuf);
}

static void expect_ok(RustCallStatus *status, const char *what) {
    if (status->code != 0) {
        if (status->errorBuf.len > 0) {
            Reader r = reader(status->errorBuf);
            int32_t variant = status->code == 1 ? get_i32(&r) : 0;
            fprintf(stderr, "  %s: error case %d\n", what, variant);
        }
        fail("%s: status %d", what, status->code);
    }
}

static uint64_t clone_handle(uint64_t handle) {
    RustCallStatus status = {0};
    uint64_t copy = uniffi_keystead_ffi_fn_clone_keystore(handle, &status);
    expect_ok(&status, "clone_keystore");
    return copy;
}

static Verification verify(uint64_t store, const char *presented) {
    RustCallStatus status = {0};
    Writer scopes = {0};
    put_i32(&scopes, 0); /* Vec<String> required_scopes: empty */
    RustBuffer out = uniffi_keystead_ffi_fn_method_keystore_verify(
        clone_handle(store), string_arg(presented), writer_buffer(&scopes), &status);
    expect_ok(&status, "verify");
    return take_verification(out);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <empty temp dir>\n", argv[0]);
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/smoke.redb", argv[1]);
    RustCallStatus status = {0};

    CHECK(ffi_keystead_ffi_uniffi_contract_version() == UNIFFI_CONTRACT_VERSION,
          "contract version %u, the generated bindings expect %u",
          ffi_keystead_ffi_uniffi_contract_version(), (unsigned)UNIFFI_CONTRACT_VERSION);

    /* open(path, OpenOptions { prefix: "smoke", flush_interval_ms: 0, actor: "c-smoke" }) */
    Writer options = {0};
    put_u8(&options, 1);
    put_string(&options, "smoke");    /* prefix */
    put_u8(&options, 0);              /* pepper */
    put_u8(&options, 0);              /* cache_size */
    put_u8(&options, 0);              /* refresh_interval_ms */
    put_u8(&options, 0);              /* max_staleness_ms */
    put_u8(&options, 1);              /* flush_interval_ms: Some(i64) */
    put(&options, "\0\0\0\0\0\0\0\0", 8);
    put_u8(&options, 0);              /* record_cache_entries */
    put_u8(&options, 1);
    put_string(&options, "c-smoke");  /* actor */
    uint64_t store = uniffi_keystead_ffi_fn_constructor_keystore_open(
        string_arg(path), writer_buffer(&options), &status);
    expect_ok(&status, "open");
    CHECK(store != 0, "open returned a null handle");

    /* prefix() -> String (a top-level String return is the bare bytes) */
    RustBuffer prefix = uniffi_keystead_ffi_fn_method_keystore_prefix(clone_handle(store), &status);
    expect_ok(&status, "prefix");
    CHECK(prefix.len == 5 && memcmp(prefix.data, "smoke", 5) == 0, "prefix is not `smoke`");
    free_buffer(prefix);

    /* create(NewKey { name, scopes: ["chat:completions"], metadata: {owner: c}, no expiry }) */
    Writer new_key = {0};
    put_string(&new_key, "c-smoke-key");
    put_i32(&new_key, 1);
    put_string(&new_key, "chat:completions");
    put_i32(&new_key, 1);
    put_string(&new_key, "owner");
    put_string(&new_key, "c");
    put_u8(&new_key, 0);
    RustBuffer created = uniffi_keystead_ffi_fn_method_keystore_create(
        clone_handle(store), writer_buffer(&new_key), &status);
    expect_ok(&status, "create");
    char key[256];
    KeyInfo info;
    Reader r = reader(created);
    get_string(&r, key, sizeof key);
    get_key_info(&r, &info);
    CHECK(r.pos == r.len, "CreatedKey: trailing bytes");
    /* CreatedKey's exported Display and Debug (Swift description/debugDescription, Kotlin
     * toString) never show the key. Each call consumes its argument buffer. */
    RustBuffer copy = to_buffer(created.data, (int32_t)created.len);
    RustBuffer shown = uniffi_keystead_ffi_fn_method_createdkey_uniffi_trait_display(created, &status);
    expect_ok(&status, "CreatedKey Display");
    CHECK(shown.len > 0 && !contains(shown, key) && contains(shown, info.id),
          "CreatedKey Display shows the key or lacks the id");
    printf("  CreatedKey Display: %.*s\n", (int)shown.len, (const char *)shown.data);
    free_buffer(shown);
    shown = uniffi_keystead_ffi_fn_method_createdkey_uniffi_trait_debug(copy, &status);
    expect_ok(&status, "CreatedKey Debug");
    CHECK(!contains(shown, key) && contains(shown, "<redacted>"), "CreatedKey Debug shows the key");
    free_buffer(shown);
    CHECK(strncmp(key, "smoke_", 6) == 0 && strlen(key) == 6 + 61, "unexpected key shape");
    CHECK(strcmp(info.name, "c-smoke-key") == 0, "name `%s`", info.name);
    CHECK(strcmp(info.status, "active") == 0, "status `%s`", info.status);
    CHECK(strlen(info.id) == 12 && strstr(key, info.id) == key + 6, "id `%s`", info.id);
    printf("  created key %s (status %s)\n", info.id, info.status);

    /* verify: valid */
    Verification v = verify(store, key);
    CHECK(v.ok && strcmp(v.code, "valid") == 0 && v.http_status == 200,
          "verify: %d %s %u", v.ok, v.code, v.http_status);
    CHECK(v.has_key && strcmp(v.key.id, info.id) == 0, "verify: key missing");
    CHECK(v.www_authenticate[0] == 0, "verify: unexpected WWW-Authenticate");
    printf("  verify -> %s %u\n", v.code, v.http_status);

    /* verify_header with a scope the key lacks: insufficient_scope, 403 */
    char header[300];
    snprintf(header, sizeof header, "Bearer %s", key);
    Writer scopes = {0};
    put_i32(&scopes, 1);
    put_string(&scopes, "images");
    RustBuffer vh = uniffi_keystead_ffi_fn_method_keystore_verify_header(
        clone_handle(store), string_arg(header), writer_buffer(&scopes), &status);
    expect_ok(&status, "verify_header");
    v = take_verification(vh);
    CHECK(!v.ok && strcmp(v.code, "insufficient_scope") == 0 && v.http_status == 403,
          "verify_header: %s %u", v.code, v.http_status);
    CHECK(strcmp(v.www_authenticate, "Bearer error=\"insufficient_scope\", scope=\"images\"") == 0,
          "verify_header: WWW-Authenticate `%s`", v.www_authenticate);
    printf("  verify_header -> %s %u %s\n", v.code, v.http_status, v.www_authenticate);

    /* get with a malformed id: InvalidArgument crosses as an error buffer */
    uniffi_keystead_ffi_fn_method_keystore_get(clone_handle(store), string_arg("nope"), &status);
    expect_error(&status, ERR_INVALID_ARGUMENT, "get(\"nope\")");
    status = (RustCallStatus){0};

    /* revoke, then verify: revoked, 401 */
    RustBuffer revoked = uniffi_keystead_ffi_fn_method_keystore_revoke(
        clone_handle(store), string_arg(info.id), &status);
    expect_ok(&status, "revoke");
    r = reader(revoked);
    KeyInfo after;
    get_key_info(&r, &after);
    free_buffer(revoked);
    CHECK(strcmp(after.status, "revoked") == 0, "revoke: status `%s`", after.status);

    v = verify(store, key);
    CHECK(!v.ok && strcmp(v.code, "revoked") == 0 && v.http_status == 401,
          "verify after revoke: %s %u", v.code, v.http_status);
    CHECK(strcmp(v.www_authenticate, "Bearer error=\"invalid_token\"") == 0,
          "WWW-Authenticate `%s`", v.www_authenticate);
    /* a refused key is named by its id only */
    CHECK(!v.has_key && v.has_key_id && strcmp(v.key_id, info.id) == 0, "revoked key id");
    printf("  verify after revoke -> %s %u %s\n", v.code, v.http_status, v.www_authenticate);

    /* audit(since: None, limit: 10): create + revoke, newest first, by c-smoke */
    Writer none = {0};
    put_u8(&none, 0);
    RustBuffer audit = uniffi_keystead_ffi_fn_method_keystore_audit(
        clone_handle(store), writer_buffer(&none), 10, &status);
    expect_ok(&status, "audit");
    r = reader(audit);
    int32_t entries = get_i32(&r);
    CHECK(entries == 2, "audit: %d entries", entries);
    char action[32], actor[32], key_id[32];
    get_u64(&r);                        /* seq */
    skip_timestamp(&r);                 /* at_ms */
    CHECK(get_u8(&r) == 1, "audit: no actor");
    get_string(&r, actor, sizeof actor);
    get_string(&r, action, sizeof action);
    get_string(&r, key_id, sizeof key_id);
    CHECK(strcmp(actor, "c-smoke") == 0 && strcmp(action, "revoke") == 0 &&
              strcmp(key_id, info.id) == 0,
          "audit: newest is %s %s %s", actor, action, key_id);
    free_buffer(audit);

    /* close, then every call fails with Closed; closing again is fine */
    uniffi_keystead_ffi_fn_method_keystore_close(clone_handle(store), &status);
    expect_ok(&status, "close");
    CHECK(uniffi_keystead_ffi_fn_method_keystore_is_closed(clone_handle(store), &status) == 1,
          "is_closed after close");
    expect_ok(&status, "is_closed");
    Writer empty = {0};
    put_i32(&empty, 0);
    uniffi_keystead_ffi_fn_method_keystore_verify(clone_handle(store), string_arg(key),
                                                  writer_buffer(&empty), &status);
    expect_error(&status, ERR_CLOSED, "verify after close");
    status = (RustCallStatus){0};
    uniffi_keystead_ffi_fn_method_keystore_close(clone_handle(store), &status);
    expect_ok(&status, "close again");

    /* free the object: the last handle */
    uniffi_keystead_ffi_fn_free_keystore(store, &status);
    expect_ok(&status, "free_keystore");

    /* A top-level function; the file was released by close. */
    int8_t intact = uniffi_keystead_ffi_fn_func_check_integrity(string_arg(path), &status);
    expect_ok(&status, "check_integrity");
    CHECK(intact == 1, "check_integrity: %d", intact);

    /* Opening with another prefix: PrefixMismatch at the constructor. */
    Writer other = {0};
    put_u8(&other, 1);
    put_string(&other, "other");
    /* pepper, cache_size, refresh_interval_ms, max_staleness_ms, flush_interval_ms,
       record_cache_entries, actor: all None */
    for (int i = 0; i < 7; i++) put_u8(&other, 0);
    uniffi_keystead_ffi_fn_constructor_keystore_open(string_arg(path), writer_buffer(&other),
                                                     &status);
    expect_error(&status, ERR_PREFIX_MISMATCH, "open with prefix `other`");

    /* A negative max_staleness_ms: InvalidArgument at the constructor. */
    Writer stale = {0};
    for (int i = 0; i < 4; i++) put_u8(&stale, 0); /* prefix .. refresh_interval_ms */
    put_u8(&stale, 1);                              /* max_staleness_ms: Some(-1) */
    put(&stale, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
    for (int i = 0; i < 3; i++) put_u8(&stale, 0); /* flush_interval_ms .. actor */
    uniffi_keystead_ffi_fn_constructor_keystore_open(string_arg(path), writer_buffer(&stale),
                                                     &status);
    expect_error(&status, ERR_INVALID_ARGUMENT, "open with max_staleness_ms -1");

    printf("ffi_smoke: %d checks passed\n", checks);
    return 0;
}
