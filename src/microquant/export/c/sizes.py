"""Measured Cortex-M byte sizes behind the C export's flash estimate (tables, no logic
beyond lookups), shared by the generator (constant data) and :mod:`.footprint`.

All code sizes: **arm-none-eabi-gcc 12.2, -O2, --gc-sections, newlib-nano**, measured with
``arm-none-eabi-nm -S``; struct sizes are ``sizeof`` on a 32-bit ARM (ABI-fixed). A leaf
module (imports nothing from the package) so the generator, the footprint model and
``microquant.targets`` can all import it without a cycle.

Example:
    >>> const_data_bytes("static const int8_t w[5] = {1, 2, 3, 4, 5};")
    8
    >>> code_bytes_estimate(["RELU6"]) - code_bytes_estimate([])
    58
"""

from __future__ import annotations

import re

WORD = 4
# sizeof() of the kernel library's parameter structs on a 32-bit ARM (ABI-fixed)
STRUCT_BYTES: dict[str, int] = {
    "mq_add_params": 132, "mq_broadcast": 84, "mq_clamp_params": 12, "mq_concat_params": 12,
    "mq_conv_params": 96, "mq_depthwise_params": 100, "mq_fc_params": 48,
    "mq_mean_params": 124, "mq_mul_params": 112, "mq_pad_params": 68, "mq_pool_params": 68,
    "mq_requant_params": 28, "mq_sigmoid_params": 20, "mq_softmax_params": 20,
    "mq_transpose_params": 52, "mq_walk": 52, "mq_window": 60,
}
UNKNOWN_STRUCT_BYTES = 64  # a struct missing from STRUCT_BYTES: a typical size

# Cortex-M4 code bytes of the library's functions; a model links only the kernels it uses
# (--gc-sections). The whole library is ~16 KB at -O2 and ~5.5 KB at -Os.
FUNC_BYTES: dict[str, int] = {
    "conv": 674, "dot": 2234, "dw": 1172 + 2064, "fc": 148, "pool": 672, "add": 3518,
    "mul": 796, "bcast": 102, "mean": 596, "walk": 80, "copy": 16, "pad": 166, "concat": 80,
    "transpose": 132, "softmax": 632, "logistic": 624, "tanh": 612, "exp": 476 + 56,
    "newton": 296, "requant": 356, "clamp": 58,
}
OP_FUNCS: dict[str, tuple[str, ...]] = {
    "CONV_2D": ("conv", "dot"), "DEPTHWISE_CONV_2D": ("dw",), "FULLY_CONNECTED": ("fc", "dot"),
    "AVERAGE_POOL_2D": ("pool",), "MAX_POOL_2D": ("pool",), "ADD": ("add", "bcast"),
    "MUL": ("mul", "bcast"), "MEAN": ("mean", "walk"), "RESHAPE": ("copy",),
    "PAD": ("pad", "walk"), "CONCATENATION": ("concat",), "TRANSPOSE": ("transpose", "walk"),
    "SOFTMAX": ("softmax", "exp", "newton"), "LOGISTIC": ("logistic", "exp", "newton"),
    "TANH": ("tanh", "exp", "newton"), "RELU": ("requant",), "QUANTIZE": ("requant",),
    "RELU6": ("clamp",),
}
BASE_CODE_BYTES = 1200  # invoke function, memcpy/memset/memmove, integer helpers

# newlib-nano's memory functions and the firmware around the generated code (Cortex-M4)
LIBC_BYTES = {"memcpy": 308, "memset": 162, "memmove": 254}  # newlib-nano, Cortex-M4
OP_LIBC = {"CONV_2D": ("memcpy", "memset"), "PAD": ("memcpy", "memset"),
           "CONCATENATION": ("memcpy",), "RESHAPE": ("memmove",)}
INLINE_COPY_MAX = 64  # GCC inlines a constant-size memcpy up to this many bytes
INLINE_COPY_FREE = 16  # ... and the first bytes cost no more than the call would
INLINE_COPY_TAIL = 16  # a copy longer than 32 bytes with a 1-3 byte tail costs this much more
INVOKE_BASE, INVOKE_PER_CALL = 36, 18
STARTUP_BYTES = 64 + 40 + 2 + 80  # vectors, Reset_Handler, Default_Handler, main
STACK_BYTES = {"cortex-m4": 512, "cortex-m0plus": 768}

# Cortex-M0+ (-mfloat-abi=soft, armv6-m: no unaligned access, no 64-bit multiply or
# hardware divide): code bytes per symbol and the symbols each kernel entry point links
# (arm-none-eabi-nm -S of a --gc-sections link with that entry point; libgcc helpers
# included, aliases counted once).
M0_SYMBOL_BYTES: dict[str, int] = {
    "__aeabi_lmul": 90, "__aeabi_idiv0": 2, "__aeabi_idivmod": 8, "__divsi3": 460,
    "memcpy": 142, "memset": 166, "memmove": 176, "mq_srdhm": 80, "mq_rdbpot": 178,
    "mq_mbqm": 332, "dot_channels": 2688, "mq_conv2d": 680, "dw_pixel_dm1": 2576,
    "mq_depthwise_conv2d": 1260, "mq_fully_connected": 164, "mq_average_pool2d": 10,
    "pool": 684, "mq_max_pool2d": 10, "bc_next": 84, "mq_add": 4064, "mq_mul": 920,
    "mq_requantize": 456, "mq_clamp": 40, "barrel_exponent.1": 28, "barrel_multiplier.0": 28,
    "exp_on_negative_values": 552, "mq_logistic": 808, "newton_reciprocal": 476,
    "mq_tanh": 780, "mq_softmax": 712, "mq_mean": 664, "walk_next": 64, "mq_transpose": 124,
    "mq_pad": 170, "mq_concatenation": 86, "mq_copy": 18,
}
_EXP = ("__aeabi_lmul", "barrel_exponent.1", "barrel_multiplier.0", "exp_on_negative_values",
        "newton_reciprocal")
_DIV = ("__aeabi_idiv0", "__aeabi_idivmod", "__divsi3")
M0_CLOSURE: dict[str, tuple[str, ...]] = {
    "mq_conv2d": (*_DIV, "__aeabi_lmul", "dot_channels", "memcpy", "memset", "mq_conv2d"),
    "mq_depthwise_conv2d": ("__aeabi_lmul", "dw_pixel_dm1", "mq_depthwise_conv2d"),
    "mq_fully_connected": ("__aeabi_lmul", "dot_channels", "mq_fully_connected"),
    "mq_average_pool2d": (*_DIV, "mq_average_pool2d", "pool"),
    "mq_max_pool2d": (*_DIV, "mq_max_pool2d", "pool"),
    "mq_add": ("__aeabi_lmul", "bc_next", "memset", "mq_add"),
    "mq_mul": ("__aeabi_lmul", "bc_next", "memset", "mq_mul"),
    "mq_requantize": ("__aeabi_lmul", "mq_requantize"), "mq_clamp": ("mq_clamp",),
    "mq_logistic": (*_EXP, "mq_logistic"), "mq_tanh": (*_EXP, "mq_tanh"),
    "mq_softmax": (*_EXP, "mq_softmax"),
    "mq_mean": ("__aeabi_lmul", "memset", "mq_mean", "walk_next"),
    "mq_transpose": ("memset", "mq_transpose", "walk_next"),
    "mq_pad": ("memcpy", "memset", "mq_pad", "walk_next"),
    "mq_concatenation": ("memcpy", "mq_concatenation"), "mq_copy": ("memmove", "mq_copy"),
}
M0_INVOKE_BASE, M0_INVOKE_PER_CALL = 33, 21
M0_STARTUP_BYTES = 64 + 40 + 2 + 80
CPUS = ("cortex-m4", "cortex-m0plus")


_ARRAY = re.compile(r"static const (int8_t|int32_t) \w+\[(\d+)\] = \{")
_STRUCT = re.compile(r"static const (\w+) \w+ = \{")


def words(n: int) -> int:
    """``n`` bytes rounded up to whole 32-bit words."""
    return (n + WORD - 1) // WORD * WORD


def const_data_bytes(source: str) -> int:
    """Flash bytes of the ``static const`` objects in generated C text: int8/int32 arrays at
    their exact size rounded up to 4 bytes (GCC word-aligns arrays at -O2) plus each
    parameter struct at its ``sizeof`` (:data:`STRUCT_BYTES`; fixed arrays inside included)."""
    total = 0
    for ctype, count in _ARRAY.findall(source):
        total += words(int(count) * (1 if ctype == "int8_t" else 4))
    for ctype in _STRUCT.findall(source):
        total += STRUCT_BYTES.get(ctype, UNKNOWN_STRUCT_BYTES)
    return total


def code_bytes_estimate(ops: list[str]) -> int:
    """Approximate Cortex-M4 (-O2) code bytes of the kernels a model with ``ops`` links,
    plus :data:`BASE_CODE_BYTES` (a rough allowance for everything else; the footprint
    model in :mod:`.footprint` uses only the kernel part)."""
    funcs = {f for op in set(ops) for f in OP_FUNCS.get(op, ())}
    return BASE_CODE_BYTES + sum(FUNC_BYTES[f] for f in funcs)
