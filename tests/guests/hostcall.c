/* Calls the host functions tests/test_hostfuncs.py registers, through cove.h,
 * with every type and every error the ABI promises. Prints "ok" or the first
 * "FAIL: ...". With argument "nohf": the sandbox has no host functions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cove.h"

#define CHECK(c, ...) do { if (!(c)) { printf("FAIL: " __VA_ARGS__); printf("\n"); exit(1); } } while (0)

static struct cove_val ret;
static char buf[64];

static long call1(const char *name, struct cove_val arg) {
    ret = cove_buf(buf, sizeof buf);
    return cove_call(name, &arg, 1, &ret);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "nohf") == 0) {
        struct cove_val a = cove_i32(1);
        long rc = cove_call("double_i32", &a, 1, &ret);
        CHECK(rc == -ENOSYS, "no host functions: %ld", rc);
        printf("ok\n");
        return 0;
    }
    long rc;
    /* every type, there and back */
    CHECK((rc = call1("double_i32", cove_i32(-21))) == 0 && ret.type == COVE_I32 &&
          (int32_t)ret.value == -42, "i32: %ld %d", rc, (int)ret.value);
    CHECK(call1("inc_u32", cove_u32(0xFFFFFFFEu)) == 0 && ret.type == COVE_U32 &&
          (uint32_t)ret.value == 0xFFFFFFFFu, "u32");
    CHECK(call1("neg_i64", cove_i64(1ll << 40)) == 0 && (int64_t)ret.value == -(1ll << 40), "i64");
    CHECK(call1("max_u64", cove_u64(0)) == 0 && ret.value == UINT64_MAX, "u64");
    CHECK(call1("half_f32", cove_f32(3.0f)) == 0 && ret.type == COVE_F32 &&
          cove_as_f32(&ret) == 1.5f, "f32 %f", cove_as_f32(&ret));
    CHECK(call1("half_f64", cove_f64(-5.0)) == 0 && cove_as_f64(&ret) == -2.5, "f64");
    CHECK(call1("not", cove_bool(1)) == 0 && ret.type == COVE_BOOL && ret.value == 0, "bool");
    CHECK(call1("upper", cove_str("héllo")) == 0 && ret.type == COVE_STR && ret.len == 6 &&
          memcmp(buf, "HÉLLO", 6) == 0, "str: %.*s", (int)ret.len, buf);
    CHECK(call1("reverse", cove_bytes("a\0c", 3)) == 0 && ret.type == COVE_BYTES && ret.len == 3 &&
          memcmp(buf, "c\0a", 3) == 0, "bytes");
    struct cove_val two[2] = {cove_str("x"), cove_i64(3)};
    ret = cove_buf(buf, sizeof buf);
    CHECK(cove_call("repeat", two, 2, &ret) == 0 && ret.len == 3 && memcmp(buf, "xxx", 3) == 0,
          "two arguments");
    CHECK(cove_call("count", NULL, 0, NULL) == 0 && cove_call("count", NULL, 0, NULL) == 0,
          "no arguments, no result");
    /* errors */
    CHECK(call1("no_such_function", cove_i32(1)) == -ENOENT, "unknown name");
    CHECK(cove_call("double_i32", NULL, 0, &ret) == -EINVAL, "too few arguments");
    CHECK(cove_call("double_i32", two, 2, &ret) == -EINVAL, "too many arguments");
    CHECK(call1("double_i32", cove_i64(1)) == -EINVAL, "wrong type tag");
    CHECK(call1("double_i32", cove_val_of(77, 0, 0)) == -EINVAL, "unknown type tag");
    CHECK(call1("not", cove_val_of(COVE_BOOL, 2, 0)) == -EINVAL, "bool 2");
    CHECK(call1("upper", cove_val_of(COVE_STR, 16, 4)) == -EFAULT, "bad pointer");
    CHECK(call1("upper", cove_bytes("\xff\xfe", 2)) == -EINVAL, "bytes for a str");
    CHECK(call1("upper", cove_val_of(COVE_STR, (uint64_t)(uintptr_t)"\xff\xfe", 2)) == -EILSEQ,
          "invalid UTF-8");
    struct cove_val a = cove_i32(1);
    CHECK(cove_call("double_i32", &a, 1, NULL) == -EINVAL, "no result slot");
    CHECK(cove_call("double_i32", &a, 1, (struct cove_val *)16) == -EFAULT, "bad result slot");
    CHECK(cove_syscall5(COVE_HOSTCALL_NR, 99, 0, 0, 0, 0) == -EINVAL, "unknown op");
    /* the host function raised: EREMOTEIO and its message */
    rc = call1("fail", cove_i32(42));
    CHECK(rc == -EREMOTEIO && ret.type == COVE_ERROR, "fail: %ld", rc);
    CHECK(strncmp(buf, "ValueError: bad input 42", ret.len) == 0, "message: %.*s", (int)ret.len, buf);
    rc = call1("wrong_result", cove_i32(0));
    CHECK(rc == -EREMOTEIO && ret.type == COVE_ERROR, "a result of the wrong type: %ld", rc);
    /* a result larger than the buffer: ERANGE, then FETCH without calling again */
    rc = call1("big", cove_u32(100000));
    CHECK(rc == -ERANGE && ret.len == 100000, "big: %ld %lu", rc, (unsigned long)ret.len);
    char *large = malloc(100000);
    struct cove_val r2 = cove_buf(large, 100000);
    CHECK(cove_fetch(&r2) == 0 && r2.len == 100000 && large[0] == 'b' && large[99999] == 'b', "fetch");
    CHECK(cove_fetch(&r2) == -ENOENT, "fetch twice");
    ret = cove_buf(buf, sizeof buf);
    CHECK(cove_call("calls", NULL, 0, &ret) == 0 && (int64_t)ret.value == 1, "big called once");
    /* describe */
    ret = cove_buf(buf, sizeof buf);
    CHECK(cove_describe("repeat", &ret) == 0 && ret.len == 3 && buf[0] == COVE_STR && buf[1] == COVE_STR &&
          buf[2] == COVE_I64, "describe");
    printf("ok\n");
    return 0;
}
