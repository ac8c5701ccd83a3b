// BTF of every kind clang 14 emits: ints of each size and signedness, bool, char,
// float/double, pointers (one with a type tag), arrays (multi-dimensional), structs
// with bitfields (kind_flag), unions, anonymous members, enums (signed and
// unsigned, and a 64-bit one), a forward declaration, typedefs, const, volatile,
// restrict, function prototypes, functions, variables, data sections, decl tags.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct opaque;                                   /* FWD */
union opaque_u;                                  /* FWD (union) */
typedef unsigned long long u64_t;
enum color { RED = -1, GREEN = 1, BLUE = 0x7fffffff };
enum big { BIG_ZERO = 0, BIG_ONE = 1ULL << 40 };

struct floats {                                  /* FLOAT, behind a pointer: bpftool */
    float f;                                     /* cannot print floats in map dumps */
    double d;
};

struct bits {
    unsigned int a : 3;
    unsigned int b : 13;
    int c : 16;
    _Bool flag;
    char name[2][3];
    union {
        short s;
        unsigned char raw[2];
    };
    struct opaque *fwd;
    union opaque_u *fwd_u;
    enum color col;
    enum big bg;
    struct floats *fl;
    long long ll;
    signed char sc;
    int (*callback)(const void *restrict p, volatile long v);
    int __attribute__((btf_type_tag("user"))) *tagged;
} __attribute__((btf_decl_tag("a_struct_tag")));

struct bits bits_var;
const volatile u64_t config_word = 7;
int counter __attribute__((btf_decl_tag("a_var_tag"))) = 3;

/* a global function in .text that nothing calls: not loaded (libbpf appends only called
 * subprograms), but its member access makes clang emit struct floats and FLOAT */
__noinline int use_floats(struct floats *fs)
{
    int x;
    __builtin_memcpy(&x, &fs->f, sizeof(x));
    return x;
}

static __noinline int helper(struct bits *b __attribute__((btf_decl_tag("an_arg_tag"))),
                             int x)
{
    return b->c + x + (b->fwd != 0);
}

SEC("socket")
int kinds(struct __sk_buff *skb)
{
    /* interesting values for the map dumps (compared with bpftool's) */
    bits_var.a = skb->len & 7;
    bits_var.b = skb->len;
    bits_var.c = -(int)skb->len;
    bits_var.flag = skb->len & 1;
    bits_var.name[0][0] = 'h';
    bits_var.name[0][1] = 'i';
    bits_var.name[1][0] = (char)(0x80 | skb->len);
    bits_var.s = -3;
    bits_var.col = skb->len & 1 ? GREEN : RED;
    bits_var.bg = skb->len & 2 ? BIG_ONE : BIG_ZERO;
    bits_var.ll = -(long long)skb->len;
    bits_var.sc = -(signed char)skb->len;
    return helper(&bits_var, counter) + (int)config_word + (bits_var.col == GREEN);
}

char LICENSE[] SEC("license") = "GPL";
