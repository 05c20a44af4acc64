/*
 * microquant C kernel library: integer-only int8 kernels, bit-exact with TensorFlow Lite
 * Micro's reference kernels (and with microquant's Python reference runtime).
 *
 * C99, no float, no double, no malloc, no libm. Accumulators are int32; int64 appears only
 * in the 32x32->64 product of SaturatingRoundingDoublingHighMul, as in TFLite.
 *
 * Every parameter struct is filled by microquant's generator from the Python reference
 * kernels' prepare() step (multipliers, shifts, offsets, clamp bounds, padding) and lives
 * in flash as a const object. Kernels never allocate: callers pass input/output pointers
 * (into the model's static arena or into const flash arrays) and, where needed, a scratch
 * buffer whose size the generator computed.
 */
#ifndef MQ_KERNELS_H_
#define MQ_KERNELS_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MQ_MAX_DIMS 6

/* ---- fixed-point primitives (exposed for tests) ------------------------------------ */

/* SaturatingRoundingDoublingHighMul: round(a*b / 2^31), ties away from zero. */
int32_t mq_srdhm(int32_t a, int32_t b);
/* RoundingDivideByPOT: x / 2^e rounded half away from zero, 0 <= e <= 62. */
int32_t mq_rdbpot(int32_t x, int32_t e);
/* MultiplyByQuantizedMultiplier (double rounding); shift > 0 is a left shift. */
int32_t mq_mbqm(int32_t x, int32_t multiplier, int32_t shift);

/* ---- windowed kernels ------------------------------------------------------------- */

/* Geometry shared by conv, depthwise conv and pooling (TFLite padding definition). */
typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t kh, kw;           /* filter size */
    int32_t sh, sw;           /* strides */
    int32_t dh, dw;           /* dilations */
    int32_t pad_top, pad_left;
} mq_window;

/*
 * CONV_2D (per-channel). acc[c] = bias[c] + sum_k w[c][k] * patch[k] where the patch holds
 * the input window with padded taps set to in_zp, so the generator folds the input offset
 * into the bias: bias[c] = b[c] - in_zp * sum_k w[c][k]. Scratch: kh*kw*(in_c/groups) bytes.
 */
typedef struct {
    mq_window win;
    int32_t groups;
    int32_t in_zp, out_zp, act_min, act_max;
    const int8_t *weights;    /* [out_c][kh][kw][in_c/groups] */
    const int32_t *bias;      /* [out_c], input offset folded in */
    const int32_t *mult;      /* [out_c] */
    const int32_t *shift;     /* [out_c], left-shift exponent */
} mq_conv_params;
void mq_conv2d(const mq_conv_params *p, const int8_t *input, int8_t *output, int8_t *scratch);

/*
 * DEPTHWISE_CONV_2D (per-channel). acc[oc] = bias[oc] + sum_taps w[tap][oc] * (x - in_zp)
 * over in-image taps; fully interior windows use bias_full[oc] = bias[oc] - in_zp *
 * sum_taps w[tap][oc] and skip the per-tap offset.
 */
typedef struct {
    mq_window win;
    int32_t depth_multiplier;
    int32_t in_zp, out_zp, act_min, act_max;
    const int8_t *weights;    /* [kh][kw][out_c] */
    const int32_t *bias;      /* [out_c] */
    const int32_t *bias_full; /* [out_c], input offset folded in for interior windows */
    const int32_t *mult;
    const int32_t *shift;
} mq_depthwise_params;
void mq_depthwise_conv2d(const mq_depthwise_params *p, const int8_t *input, int8_t *output);

/*
 * FULLY_CONNECTED. acc[b][n] = bias[n] + sum_k w[n][k] * x[b][k] - w_zp * sum_k x[b][k]
 * with bias[n] = b[n] - in_zp * sum_k (w[n][k] - w_zp) folded by the generator
 * (w_zp is 0 on the per-channel path). n_mult == 1 is the per-tensor path, n_mult == units per-channel.
 */
typedef struct {
    int32_t batches, depth, units;
    int32_t w_zp;
    int32_t out_zp, act_min, act_max;
    int32_t n_mult;
    const int8_t *weights;    /* [units][depth] */
    const int32_t *bias;      /* [units], offsets folded in */
    const int32_t *mult;
    const int32_t *shift;
} mq_fc_params;
void mq_fully_connected(const mq_fc_params *p, const int8_t *input, int8_t *output);

typedef struct {
    mq_window win;
    int32_t act_min, act_max;
} mq_pool_params;
void mq_average_pool2d(const mq_pool_params *p, const int8_t *input, int8_t *output);
void mq_max_pool2d(const mq_pool_params *p, const int8_t *input, int8_t *output);

/* ---- element-wise -------------------------------------------------------------------- */

/* Broadcasting walk: the output in row-major order over dims, each input advancing by its
 * own strides (0 on broadcast axes). flat != 0: same shapes, plain loop over count. */
typedef struct {
    int32_t flat, count, rank;
    int32_t dims[MQ_MAX_DIMS];
    int32_t a_strides[MQ_MAX_DIMS];
    int32_t b_strides[MQ_MAX_DIMS];
} mq_broadcast;

typedef struct {
    mq_broadcast bc;
    int32_t in1_offset, in2_offset, out_offset;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t left_shift;
    int32_t act_min, act_max;
} mq_add_params;
/* scratch: NULL, or 2 KB of int32-aligned memory for the two 256-entry rescale tables
 * (worth it once the output has more than a few hundred elements). */
void mq_add(const mq_add_params *p, const int8_t *a, const int8_t *b, int8_t *output,
            void *scratch);

typedef struct {
    mq_broadcast bc;
    int32_t in1_offset, in2_offset, out_offset;
    int32_t out_mult, out_shift;
    int32_t act_min, act_max;
} mq_mul_params;
void mq_mul(const mq_mul_params *p, const int8_t *a, const int8_t *b, int8_t *output);

/* RELU and int8->int8 QUANTIZE: clamp(out_zp + mbqm(x - in_zp, mult, shift), lo, hi). */
typedef struct {
    int32_t count;
    int32_t in_zp, out_zp, mult, shift, act_min, act_max;
} mq_requant_params;
void mq_requantize(const mq_requant_params *p, const int8_t *input, int8_t *output);

/* RELU6 (and any pure clamp): out = min(max(x, lo), hi). */
typedef struct {
    int32_t count, lo, hi;
} mq_clamp_params;
void mq_clamp(const mq_clamp_params *p, const int8_t *input, int8_t *output);

/* LOGISTIC / TANH on a Q4.27 rescaled input (gemmlowp fixed point). */
typedef struct {
    int32_t count;
    int32_t in_zp, mult, shift, radius;
} mq_sigmoid_params;
void mq_logistic(const mq_sigmoid_params *p, const int8_t *input, int8_t *output);
void mq_tanh(const mq_sigmoid_params *p, const int8_t *input, int8_t *output);

/* SOFTMAX over rows of `depth` values; output scale 1/256, zero point -128. */
typedef struct {
    int32_t rows, depth;
    int32_t mult, left_shift, diff_min;
} mq_softmax_params;
void mq_softmax(const mq_softmax_params *p, const int8_t *input, int8_t *output);

/* ---- reductions and data movement ---------------------------------------------------- */

/* A strided walk over up to MQ_MAX_DIMS axes. */
typedef struct {
    int32_t rank;
    int32_t dims[MQ_MAX_DIMS];
    int32_t strides[MQ_MAX_DIMS];
} mq_walk;

/* MEAN: each output (outer walk over kept axes) sums the inner walk (reduced axes). */
typedef struct {
    mq_walk outer, inner;
    int32_t count;            /* values reduced into one output */
    int32_t in_zp, out_zp, mult, shift;
} mq_mean_params;
void mq_mean(const mq_mean_params *p, const int8_t *input, int8_t *output);

/* TRANSPOSE: the output in row-major order, reading the input along `walk`. */
typedef struct {
    mq_walk walk;
} mq_transpose_params;
void mq_transpose(const mq_transpose_params *p, const int8_t *input, int8_t *output);

/* PAD: fill the output with value, then copy input rows (walk over the input's leading
 * axes with output strides) of row_len bytes starting at output offset base. */
typedef struct {
    int32_t out_count, value;
    int32_t base, row_len;
    mq_walk rows;
} mq_pad_params;
void mq_pad(const mq_pad_params *p, const int8_t *input, int8_t *output);

/* CONCATENATION: for each of `outer` blocks, input i contributes inner[i] bytes. */
typedef struct {
    int32_t n_inputs, outer;
    const int32_t *inner;
} mq_concat_params;
void mq_concatenation(const mq_concat_params *p, const int8_t *const *inputs, int8_t *output);

/* RESHAPE: copy (memmove-safe; nothing to do when input == output). */
void mq_copy(int32_t count, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* MQ_KERNELS_H_ */
