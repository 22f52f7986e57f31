/* cove.h: call the sandbox's host functions from a guest program running in cove.
 *
 * Header-only, no libc needed: cove_call() issues the cove-specific syscall
 * (COVE_HOSTCALL_NR, above every Linux number) and returns 0 or -errno.
 * Errors: -ENOSYS no host functions in this sandbox, -ENOENT no such function,
 * -EINVAL wrong argument count or type, -EFAULT bad pointer, -EILSEQ str not
 * UTF-8, -E2BIG argument over 16 MiB, -ERANGE result larger than the buffer
 * (ret->len says how large; cove_fetch() with a bigger buffer gets it without
 * calling again), -EREMOTEIO the host function failed (ret->type is
 * COVE_ERROR and the buffer holds its message, if one was given).
 *
 *     char buf[256];
 *     struct cove_val arg = cove_str("key"), ret = cove_buf(buf, sizeof buf);
 *     long rc = cove_call("lookup", &arg, 1, &ret);   // bytes in buf[0..ret.len)
 */
#ifndef COVE_H
#define COVE_H

#include <stddef.h>
#include <stdint.h>

#define COVE_HOSTCALL_NR 1000

enum { COVE_OP_CALL = 0, COVE_OP_FETCH = 1, COVE_OP_DESCRIBE = 2 };

enum cove_type {
    COVE_NONE = 0, COVE_I32 = 1, COVE_U32 = 2, COVE_I64 = 3, COVE_U64 = 4,
    COVE_F32 = 5, COVE_F64 = 6, COVE_BOOL = 7, COVE_STR = 8, COVE_BYTES = 9,
    COVE_ERROR = 10, /* results only: the host function raised; the message */
};

/* One argument or result: integers in value (two's complement), floats as
 * their bits (f32 in the low 32 bits), str/bytes as a pointer and a length.
 * A str/bytes result needs a buffer: value = its address, len = its size. */
struct cove_val {
    uint32_t type;
    uint32_t reserved;
    uint64_t value;
    uint64_t len;
};

static inline long cove_syscall5(long nr, long a, long b, long c, long d, long e) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

static inline long cove_call(const char *name, const struct cove_val *args, unsigned nargs,
                             struct cove_val *ret) {
    return cove_syscall5(COVE_HOSTCALL_NR, COVE_OP_CALL, (long)name, (long)args, (long)nargs,
                         (long)ret);
}

/* After -ERANGE: the kept result into a bigger buffer. */
static inline long cove_fetch(struct cove_val *ret) {
    return cove_syscall5(COVE_HOSTCALL_NR, COVE_OP_FETCH, (long)ret, 0, 0, 0);
}

/* The signature: ret's buffer gets [result type, parameter types...]. */
static inline long cove_describe(const char *name, struct cove_val *ret) {
    return cove_syscall5(COVE_HOSTCALL_NR, COVE_OP_DESCRIBE, (long)name, (long)ret, 0, 0);
}

static inline struct cove_val cove_val_of(uint32_t type, uint64_t value, uint64_t len) {
    struct cove_val v = {type, 0, value, len};
    return v;
}
static inline struct cove_val cove_i32(int32_t x) { return cove_val_of(COVE_I32, (uint64_t)(int64_t)x, 0); }
static inline struct cove_val cove_u32(uint32_t x) { return cove_val_of(COVE_U32, x, 0); }
static inline struct cove_val cove_i64(int64_t x) { return cove_val_of(COVE_I64, (uint64_t)x, 0); }
static inline struct cove_val cove_u64(uint64_t x) { return cove_val_of(COVE_U64, x, 0); }
static inline struct cove_val cove_bool(int x) { return cove_val_of(COVE_BOOL, x ? 1 : 0, 0); }
static inline struct cove_val cove_f32(float x) {
    union { float f; uint32_t u; } b = {x};
    return cove_val_of(COVE_F32, b.u, 0);
}
static inline struct cove_val cove_f64(double x) {
    union { double f; uint64_t u; } b = {x};
    return cove_val_of(COVE_F64, b.u, 0);
}
static inline struct cove_val cove_bytes(const void *p, size_t n) {
    return cove_val_of(COVE_BYTES, (uint64_t)(uintptr_t)p, n);
}
static inline struct cove_val cove_str(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return cove_val_of(COVE_STR, (uint64_t)(uintptr_t)s, n);
}
/* A result slot with a buffer for str/bytes results (or messages). */
static inline struct cove_val cove_buf(void *p, size_t cap) {
    return cove_val_of(COVE_NONE, (uint64_t)(uintptr_t)p, cap);
}
static inline float cove_as_f32(const struct cove_val *v) {
    union { uint32_t u; float f; } b = {(uint32_t)v->value};
    return b.f;
}
static inline double cove_as_f64(const struct cove_val *v) {
    union { uint64_t u; double f; } b = {v->value};
    return b.f;
}

#endif /* COVE_H */
