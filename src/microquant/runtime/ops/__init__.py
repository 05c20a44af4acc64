"""One kernel per module; importing this package registers them all."""

from microquant.runtime.ops import (  # noqa: F401
    add,
    average_pool_2d,
    concatenation,
    conv_2d,
    depthwise_conv_2d,
    dequantize,
    fully_connected,
    logistic,
    max_pool_2d,
    mean,
    mul,
    pad,
    quantize,
    relu,
    relu6,
    reshape,
    softmax,
    tanh,
    transpose,
)
