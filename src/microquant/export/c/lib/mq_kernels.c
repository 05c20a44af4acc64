/*
 * microquant C kernel library (see mq_kernels.h for the contracts).
 *
 * Rounding follows TFLite's default double-rounding build exactly:
 *   SRDHM(a, b)  = (a*b + (a*b >= 0 ? 2^30 : 1 - 2^30)) / 2^31   (C division, int64)
 *   RDBPOT(x, e) = (x >> e) + ((x & mask) > (mask >> 1) + (x < 0)), mask = 2^e - 1
 *   MBQM(x,m,s)  = RDBPOT(SRDHM(x << max(s,0), m), max(-s,0))
 * Shifts that may overflow are done on uint32 so they wrap (defined behaviour) the way
 * TFLite's int32 arithmetic does in practice. Right shifts of negative values are
 * arithmetic (true for every compiler TFLite supports, which relies on it too).
 */
#include "mq_kernels.h"

#include <string.h>

#define MQ_INT32_MIN (-2147483647 - 1)
#define MQ_INT32_MAX 2147483647

static inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

static inline int32_t shl_wrap(int32_t x, int32_t s) {
    return (int32_t)((uint32_t)x << s);
}

static inline int32_t srdhm(int32_t a, int32_t b) {
    int64_t ab;
    int32_t nudge;
    if (a == MQ_INT32_MIN && b == MQ_INT32_MIN) {
        return MQ_INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static inline int32_t rdbpot(int32_t x, int32_t e) {
    if (e < 32) {
        const int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
        const int32_t remainder = x & mask;
        const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
        return (x >> e) + (remainder > threshold ? 1 : 0);
    } else {
        /* Exponents >= 32 only come from extreme MEAN rescales; same formula in int64. */
        const int64_t xx = x;
        const int64_t mask = (int64_t)((((uint64_t)1) << e) - 1u);
        const int64_t remainder = xx & mask;
        const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
        return (int32_t)((xx >> e) + (remainder > threshold ? 1 : 0));
    }
}

static inline int32_t mbqm(int32_t x, int32_t multiplier, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return rdbpot(srdhm(shl_wrap(x, left), multiplier), right);
}

int32_t mq_srdhm(int32_t a, int32_t b) {
    return srdhm(a, b);
}

int32_t mq_rdbpot(int32_t x, int32_t e) {
    return rdbpot(x, e);
}

int32_t mq_mbqm(int32_t x, int32_t multiplier, int32_t shift) {
    return mbqm(x, multiplier, shift);
}

static inline int8_t requant(int32_t acc, int32_t mult, int32_t shift, int32_t zp, int32_t lo,
                      int32_t hi) {
    return (int8_t)clamp_i32(mbqm(acc, mult, shift) + zp, lo, hi);
}

/* ---- CONV_2D --------------------------------------------------------------------------- */

/* out[c] for n channels of one pixel: dot products of weight rows with one patch. Four
 * channels share each patch load. */
static void dot_channels(const int8_t *x, int32_t depth, const int8_t *w, const int32_t *bias,
                         int32_t acc_add, const int32_t *mult, const int32_t *shift,
                         int32_t mstep, int32_t n, int32_t zp, int32_t lo, int32_t hi,
                         int8_t *out) {
    int32_t c = 0;
    for (; c + 4 <= n; c += 4) {
        const int8_t *w0 = w + c * depth;
        const int8_t *w1 = w0 + depth;
        const int8_t *w2 = w1 + depth;
        const int8_t *w3 = w2 + depth;
        int32_t a0 = bias[c] + acc_add, a1 = bias[c + 1] + acc_add;
        int32_t a2 = bias[c + 2] + acc_add, a3 = bias[c + 3] + acc_add;
        int32_t k = 0;
        for (; k + 4 <= depth; k += 4) {
            /* unrolled x4: loop overhead amortised over 16 multiply-accumulates */
            const int32_t x0 = x[k], x1 = x[k + 1], x2 = x[k + 2], x3 = x[k + 3];
            a0 += x0 * w0[k] + x1 * w0[k + 1] + x2 * w0[k + 2] + x3 * w0[k + 3];
            a1 += x0 * w1[k] + x1 * w1[k + 1] + x2 * w1[k + 2] + x3 * w1[k + 3];
            a2 += x0 * w2[k] + x1 * w2[k + 1] + x2 * w2[k + 2] + x3 * w2[k + 3];
            a3 += x0 * w3[k] + x1 * w3[k + 1] + x2 * w3[k + 2] + x3 * w3[k + 3];
        }
        for (; k < depth; ++k) {
            const int32_t xv = x[k];
            a0 += xv * w0[k];
            a1 += xv * w1[k];
            a2 += xv * w2[k];
            a3 += xv * w3[k];
        }
        out[c] = requant(a0, mult[c * mstep], shift[c * mstep], zp, lo, hi);
        out[c + 1] = requant(a1, mult[(c + 1) * mstep], shift[(c + 1) * mstep], zp, lo, hi);
        out[c + 2] = requant(a2, mult[(c + 2) * mstep], shift[(c + 2) * mstep], zp, lo, hi);
        out[c + 3] = requant(a3, mult[(c + 3) * mstep], shift[(c + 3) * mstep], zp, lo, hi);
    }
    for (; c < n; ++c) {
        const int8_t *w0 = w + c * depth;
        int32_t a0 = bias[c] + acc_add;
        int32_t k;
        for (k = 0; k < depth; ++k) {
            a0 += (int32_t)x[k] * w0[k];
        }
        out[c] = requant(a0, mult[c * mstep], shift[c * mstep], zp, lo, hi);
    }
}

static void fill_bytes(int8_t *dst, int32_t n, int8_t value) {
    memset(dst, value, (size_t)n);
}

void mq_conv2d(const mq_conv_params *p, const int8_t *input, int8_t *output, int8_t *scratch) {
    const mq_window *g = &p->win;
    const int32_t cg = g->in_c / p->groups;
    const int32_t cog = g->out_c / p->groups;
    const int32_t depth = g->kh * g->kw * cg;
    const int32_t row_stride = g->in_w * g->in_c;
    const int8_t zp = (int8_t)p->in_zp;
    /* A 1x1 window over all channels reads the input pixel itself: no patch copy. */
    const int direct_1x1 = g->kh == 1 && g->kw == 1 && p->groups == 1;
    int32_t b, oy, ox, grp;
    for (b = 0; b < g->batches; ++b) {
        const int8_t *in_b = input + b * g->in_h * row_stride;
        for (oy = 0; oy < g->out_h; ++oy) {
            const int32_t iy0 = oy * g->sh - g->pad_top;
            for (ox = 0; ox < g->out_w; ++ox) {
                const int32_t ix0 = ox * g->sw - g->pad_left;
                for (grp = 0; grp < p->groups; ++grp) {
                    const int8_t *src;
                    const int32_t c0 = grp * cog;
                    if (direct_1x1 && iy0 >= 0 && iy0 < g->in_h && ix0 >= 0 && ix0 < g->in_w) {
                        src = in_b + iy0 * row_stride + ix0 * g->in_c;
                    } else {
                        int8_t *dst = scratch;
                        int32_t ky, kx;
                        for (ky = 0; ky < g->kh; ++ky) {
                            const int32_t iy = iy0 + ky * g->dh;
                            const int32_t ix_last = ix0 + (g->kw - 1) * g->dw;
                            const int8_t *in_row;
                            if (iy < 0 || iy >= g->in_h) {
                                fill_bytes(dst, g->kw * cg, zp);
                                dst += g->kw * cg;
                                continue;
                            }
                            in_row = in_b + iy * row_stride + grp * cg;
                            if (p->groups == 1 && g->dw == 1 && ix0 >= 0 && ix_last < g->in_w) {
                                /* the whole filter row is one contiguous run */
                                memcpy(dst, in_row + ix0 * g->in_c, (size_t)(g->kw * cg));
                                dst += g->kw * cg;
                            } else {
                                for (kx = 0; kx < g->kw; ++kx) {
                                    const int32_t ix = ix0 + kx * g->dw;
                                    if (ix < 0 || ix >= g->in_w) {
                                        fill_bytes(dst, cg, zp);
                                    } else {
                                        memcpy(dst, in_row + ix * g->in_c, (size_t)cg);
                                    }
                                    dst += cg;
                                }
                            }
                        }
                        src = scratch;
                    }
                    dot_channels(src, depth, p->weights + c0 * depth, p->bias + c0, 0,
                                 p->mult + c0, p->shift + c0, 1, cog, p->out_zp, p->act_min,
                                 p->act_max, output + c0);
                }
                output += g->out_c;
            }
        }
    }
}

/* ---- DEPTHWISE_CONV_2D ------------------------------------------------------------------ */

/* Valid filter taps [lo, hi) along one axis for a window starting at i0. */
static void tap_range(int32_t i0, int32_t k, int32_t d, int32_t size, int32_t *lo, int32_t *hi) {
    int32_t a = 0, b = k;
    while (a < k && i0 + a * d < 0) {
        ++a;
    }
    while (b > a && i0 + (b - 1) * d >= size) {
        --b;
    }
    *lo = a;
    *hi = b;
}

/* One depthwise output pixel, depth_multiplier 1: four channels at a time, taps inner, so
 * every load is used and the accumulators stay in registers. `off` is the input offset
 * (0 for interior windows, whose bias already holds it); inlined twice so the interior
 * copy has no per-tap add. */
static inline void dw_pixel_dm1(const mq_depthwise_params *p, const int8_t *x_base,
                                const int8_t *w_base, int32_t ky_n, int32_t kx_n,
                                const int32_t *bias, int32_t off, int8_t *out) {
    const mq_window *g = &p->win;
    const int32_t tap_x_in = g->dw * g->in_c;
    const int32_t tap_y_in = g->dh * g->in_w * g->in_c;
    const int32_t tap_x_w = g->out_c;
    const int32_t tap_y_w = g->kw * g->out_c;
    const int32_t channels = g->out_c;
    int32_t c = 0, ky, kx;
    for (; c + 4 <= channels; c += 4) {
        int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
        const int8_t *xr = x_base + c;
        const int8_t *wr = w_base + c;
        for (ky = 0; ky < ky_n; ++ky) {
            const int8_t *xp = xr;
            const int8_t *wp = wr;
            for (kx = 0; kx < kx_n; ++kx) {
                a0 += ((int32_t)xp[0] + off) * wp[0];
                a1 += ((int32_t)xp[1] + off) * wp[1];
                a2 += ((int32_t)xp[2] + off) * wp[2];
                a3 += ((int32_t)xp[3] + off) * wp[3];
                xp += tap_x_in;
                wp += tap_x_w;
            }
            xr += tap_y_in;
            wr += tap_y_w;
        }
        out[c] = requant(a0, p->mult[c], p->shift[c], p->out_zp, p->act_min, p->act_max);
        out[c + 1] = requant(a1, p->mult[c + 1], p->shift[c + 1], p->out_zp, p->act_min,
                             p->act_max);
        out[c + 2] = requant(a2, p->mult[c + 2], p->shift[c + 2], p->out_zp, p->act_min,
                             p->act_max);
        out[c + 3] = requant(a3, p->mult[c + 3], p->shift[c + 3], p->out_zp, p->act_min,
                             p->act_max);
    }
    for (; c < channels; ++c) {
        int32_t acc = bias[c];
        const int8_t *xr = x_base + c;
        const int8_t *wr = w_base + c;
        for (ky = 0; ky < ky_n; ++ky) {
            const int8_t *xp = xr;
            const int8_t *wp = wr;
            for (kx = 0; kx < kx_n; ++kx) {
                acc += ((int32_t)(*xp) + off) * (*wp);
                xp += tap_x_in;
                wp += tap_x_w;
            }
            xr += tap_y_in;
            wr += tap_y_w;
        }
        out[c] = requant(acc, p->mult[c], p->shift[c], p->out_zp, p->act_min, p->act_max);
    }
}

/* Any depth multiplier: output channel oc = ic * dm + m reads input channel ic. */
static void dw_pixel_generic(const mq_depthwise_params *p, const int8_t *x_base,
                             const int8_t *w_base, int32_t ky_n, int32_t kx_n,
                             const int32_t *bias, int32_t off, int8_t *out) {
    const mq_window *g = &p->win;
    const int32_t dm = p->depth_multiplier;
    const int32_t tap_x_in = g->dw * g->in_c;
    const int32_t tap_y_in = g->dh * g->in_w * g->in_c;
    const int32_t tap_x_w = g->out_c;
    const int32_t tap_y_w = g->kw * g->out_c;
    int32_t ic, m, ky, kx;
    for (ic = 0; ic < g->in_c; ++ic) {
        for (m = 0; m < dm; ++m) {
            const int32_t oc = ic * dm + m;
            const int8_t *xr = x_base + ic;
            const int8_t *wr = w_base + oc;
            int32_t acc = bias[oc];
            for (ky = 0; ky < ky_n; ++ky) {
                const int8_t *xp = xr;
                const int8_t *wp = wr;
                for (kx = 0; kx < kx_n; ++kx) {
                    acc += ((int32_t)(*xp) + off) * (*wp);
                    xp += tap_x_in;
                    wp += tap_x_w;
                }
                xr += tap_y_in;
                wr += tap_y_w;
            }
            out[oc] = requant(acc, p->mult[oc], p->shift[oc], p->out_zp, p->act_min,
                              p->act_max);
        }
    }
}

void mq_depthwise_conv2d(const mq_depthwise_params *p, const int8_t *input, int8_t *output) {
    const mq_window *g = &p->win;
    const int32_t row_stride = g->in_w * g->in_c;
    const int32_t in_offset = -p->in_zp;
    int32_t b, oy, ox;
    for (b = 0; b < g->batches; ++b) {
        const int8_t *in_b = input + b * g->in_h * row_stride;
        for (oy = 0; oy < g->out_h; ++oy) {
            const int32_t iy0 = oy * g->sh - g->pad_top;
            int32_t ky0, ky1;
            tap_range(iy0, g->kh, g->dh, g->in_h, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ++ox) {
                const int32_t ix0 = ox * g->sw - g->pad_left;
                int32_t kx0, kx1;
                const int8_t *x_base;
                const int8_t *w_base;
                int interior;
                tap_range(ix0, g->kw, g->dw, g->in_w, &kx0, &kx1);
                interior = ky0 == 0 && ky1 == g->kh && kx0 == 0 && kx1 == g->kw;
                x_base = in_b + (iy0 + ky0 * g->dh) * row_stride + (ix0 + kx0 * g->dw) * g->in_c;
                w_base = p->weights + (ky0 * g->kw + kx0) * g->out_c;
                if (p->depth_multiplier != 1) {
                    dw_pixel_generic(p, x_base, w_base, ky1 - ky0, kx1 - kx0,
                                     interior ? p->bias_full : p->bias, interior ? 0 : in_offset,
                                     output);
                } else if (interior) {
                    dw_pixel_dm1(p, x_base, w_base, g->kh, g->kw, p->bias_full, 0, output);
                } else {
                    dw_pixel_dm1(p, x_base, w_base, ky1 - ky0, kx1 - kx0, p->bias, in_offset,
                                 output);
                }
                output += g->out_c;
            }
        }
    }
}

/* ---- FULLY_CONNECTED -------------------------------------------------------------------- */

void mq_fully_connected(const mq_fc_params *p, const int8_t *input, int8_t *output) {
    const int32_t mstep = p->n_mult > 1 ? 1 : 0;
    int32_t b;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *x = input + b * p->depth;
        int32_t acc_add = 0;
        if (p->w_zp != 0) {
            /* sum_k (w - w_zp) x = sum_k w x - w_zp * sum_k x */
            int32_t k, sx = 0;
            for (k = 0; k < p->depth; ++k) {
                sx += x[k];
            }
            acc_add = -p->w_zp * sx;
        }
        dot_channels(x, p->depth, p->weights, p->bias, acc_add, p->mult, p->shift, mstep,
                     p->units, p->out_zp, p->act_min, p->act_max, output + b * p->units);
    }
}

/* ---- pooling ----------------------------------------------------------------------------- */

static void pool(const mq_pool_params *p, const int8_t *input, int8_t *output, int is_max) {
    const mq_window *g = &p->win;
    const int32_t row_stride = g->in_w * g->in_c;
    int32_t b, oy, ox, c;
    for (b = 0; b < g->batches; ++b) {
        const int8_t *in_b = input + b * g->in_h * row_stride;
        for (oy = 0; oy < g->out_h; ++oy) {
            const int32_t iy0 = oy * g->sh - g->pad_top;
            int32_t ky0, ky1;
            tap_range(iy0, g->kh, 1, g->in_h, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ++ox) {
                const int32_t ix0 = ox * g->sw - g->pad_left;
                int32_t kx0, kx1, count;
                const int8_t *base;
                tap_range(ix0, g->kw, 1, g->in_w, &kx0, &kx1);
                count = (ky1 - ky0) * (kx1 - kx0);
                base = in_b + (iy0 + ky0) * row_stride + (ix0 + kx0) * g->in_c;
                for (c = 0; c < g->in_c; ++c) {
                    const int8_t *row = base + c;
                    int32_t acc = is_max ? -128 : 0;
                    int32_t ky, kx;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int8_t *px = row;
                        for (kx = kx0; kx < kx1; ++kx) {
                            if (is_max) {
                                acc = *px > acc ? *px : acc;
                            } else {
                                acc += *px;
                            }
                            px += g->in_c;
                        }
                        row += row_stride;
                    }
                    if (!is_max && count > 0) {
                        /* round half away from zero with C's truncating division */
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    output[c] = (int8_t)clamp_i32(acc, p->act_min, p->act_max);
                }
                output += g->out_c;
            }
        }
    }
}

void mq_average_pool2d(const mq_pool_params *p, const int8_t *input, int8_t *output) {
    pool(p, input, output, 0);
}

void mq_max_pool2d(const mq_pool_params *p, const int8_t *input, int8_t *output) {
    pool(p, input, output, 1);
}

/* ---- element-wise ------------------------------------------------------------------------ */

/* Advance a multi-index over dims; updates two running offsets. */
static void bc_next(const mq_broadcast *bc, int32_t *idx, int32_t *ia, int32_t *ib) {
    int32_t d;
    for (d = bc->rank - 1; d >= 0; --d) {
        *ia += bc->a_strides[d];
        *ib += bc->b_strides[d];
        if (++idx[d] < bc->dims[d]) {
            return;
        }
        idx[d] = 0;
        *ia -= bc->a_strides[d] * bc->dims[d];
        *ib -= bc->b_strides[d] * bc->dims[d];
    }
}

static int32_t add_scale1(const mq_add_params *p, int32_t x) {
    return mbqm(shl_wrap(x + p->in1_offset, p->left_shift), p->in1_mult, p->in1_shift);
}

static int32_t add_scale2(const mq_add_params *p, int32_t x) {
    return mbqm(shl_wrap(x + p->in2_offset, p->left_shift), p->in2_mult, p->in2_shift);
}

static inline int8_t add_out(const mq_add_params *p, int32_t s1, int32_t s2) {
    const int32_t raw = mbqm(s1 + s2, p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)clamp_i32(raw, p->act_min, p->act_max);
}

void mq_add(const mq_add_params *p, const int8_t *a, const int8_t *b, int8_t *output,
            void *scratch) {
    int32_t i;
    int32_t idx[MQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t ia = 0, ib = 0;
    if (scratch != 0) {
        /* Each input's rescale depends on one int8 value only: tabulate all 256 once,
         * then every element costs one output rescale instead of three. */
        int32_t *t1 = (int32_t *)scratch;
        int32_t *t2 = t1 + 256;
        for (i = 0; i < 256; ++i) {
            t1[i] = add_scale1(p, i - 128);
            t2[i] = add_scale2(p, i - 128);
        }
        if (p->bc.flat) {
            for (i = 0; i < p->bc.count; ++i) {
                output[i] = add_out(p, t1[a[i] + 128], t2[b[i] + 128]);
            }
        } else {
            for (i = 0; i < p->bc.count; ++i) {
                output[i] = add_out(p, t1[a[ia] + 128], t2[b[ib] + 128]);
                bc_next(&p->bc, idx, &ia, &ib);
            }
        }
        return;
    }
    if (p->bc.flat) {
        for (i = 0; i < p->bc.count; ++i) {
            output[i] = add_out(p, add_scale1(p, a[i]), add_scale2(p, b[i]));
        }
    } else {
        for (i = 0; i < p->bc.count; ++i) {
            output[i] = add_out(p, add_scale1(p, a[ia]), add_scale2(p, b[ib]));
            bc_next(&p->bc, idx, &ia, &ib);
        }
    }
}

static int8_t mul_one(const mq_mul_params *p, int32_t x1, int32_t x2) {
    const int32_t prod = (x1 + p->in1_offset) * (x2 + p->in2_offset);
    const int32_t raw = mbqm(prod, p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)clamp_i32(raw, p->act_min, p->act_max);
}

void mq_mul(const mq_mul_params *p, const int8_t *a, const int8_t *b, int8_t *output) {
    int32_t i;
    if (p->bc.flat) {
        for (i = 0; i < p->bc.count; ++i) {
            output[i] = mul_one(p, a[i], b[i]);
        }
    } else {
        int32_t idx[MQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t ia = 0, ib = 0;
        for (i = 0; i < p->bc.count; ++i) {
            output[i] = mul_one(p, a[ia], b[ib]);
            bc_next(&p->bc, idx, &ia, &ib);
        }
    }
}

void mq_requantize(const mq_requant_params *p, const int8_t *input, int8_t *output) {
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        output[i] = requant((int32_t)input[i] - p->in_zp, p->mult, p->shift, p->out_zp,
                            p->act_min, p->act_max);
    }
}

void mq_clamp(const mq_clamp_params *p, const int8_t *input, int8_t *output) {
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        output[i] = (int8_t)clamp_i32(input[i], p->lo, p->hi);
    }
}

/* ---- gemmlowp fixed point (raw int32 values, integer bits passed explicitly) ------------- */

static int32_t fp_add(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t fp_sub(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

static int32_t fp_one(int32_t integer_bits) {
    return integer_bits == 0 ? MQ_INT32_MAX : (int32_t)1 << (31 - integer_bits);
}

/* SaturatingRoundingMultiplyByPOT: saturating for e > 0, rounding for e < 0. */
static int32_t fp_mul_pot(int32_t x, int32_t e) {
    int32_t threshold;
    if (e == 0) {
        return x;
    }
    if (e < 0) {
        return rdbpot(x, -e);
    }
    threshold = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
    if (x > threshold) {
        return MQ_INT32_MAX;
    }
    if (x < -threshold) {
        return MQ_INT32_MIN;
    }
    return shl_wrap(x, e);
}

static int32_t fp_rescale(int32_t x, int32_t src_bits, int32_t dst_bits) {
    return fp_mul_pot(x, src_bits - dst_bits);
}

static int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a) {
    const int32_t constant_term = 1895147668; /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = fp_add(a, (int32_t)1 << 28);
    const int32_t x2 = srdhm(x, x);
    const int32_t x3 = srdhm(x2, x);
    const int32_t x4 = srdhm(x2, x2);
    const int32_t x4_over_4 = fp_mul_pot(x4, -2);
    const int32_t poly = fp_mul_pot(
        fp_add(srdhm(fp_add(x4_over_4, x3), constant_1_over_3), x2), -1);
    return fp_add(constant_term, srdhm(constant_term, fp_add(x, poly)));
}

static int32_t exp_on_negative_values(int32_t a, int32_t integer_bits) {
    static const int32_t barrel_exponent[7] = {-2, -1, 0, 1, 2, 3, 4};
    static const int32_t barrel_multiplier[7] = {1672461947, 1302514674, 790015084, 290630308,
                                                 39332535,   720401,     242};
    const int32_t frac_bits = 31 - integer_bits;
    const int32_t quarter = (int32_t)1 << (29 - integer_bits);
    const int32_t a_mod_quarter_minus_quarter = fp_sub(a & (quarter - 1), quarter);
    int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        fp_rescale(a_mod_quarter_minus_quarter, integer_bits, 0));
    const int32_t remainder = fp_sub(a_mod_quarter_minus_quarter, a);
    int32_t i;
    for (i = 0; i < 7; ++i) {
        const int32_t e = barrel_exponent[i];
        if (integer_bits > e && (remainder & ((int32_t)1 << (frac_bits + e))) != 0) {
            result = srdhm(result, barrel_multiplier[i]);
        }
    }
    if (integer_bits > 5 && a < -((int32_t)1 << (36 - integer_bits))) {
        result = 0;
    }
    return a == 0 ? MQ_INT32_MAX : result;
}

static int32_t rounding_half_sum(int32_t a, int32_t b) {
    const int64_t total = (int64_t)a + (int64_t)b;
    const int64_t sign = total >= 0 ? 1 : -1;
    return (int32_t)((total + sign) / 2);
}

/* Newton-Raphson 1/half_denominator in Q2.29 (three iterations, as gemmlowp). */
static int32_t newton_reciprocal(int32_t a) {
    const int32_t half_denominator = rounding_half_sum(a, MQ_INT32_MAX);
    int32_t x = fp_add(1515870810, srdhm(half_denominator, -1010580540));
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t hdx = srdhm(half_denominator, x);
        const int32_t one_minus = fp_sub(fp_one(2), hdx);
        x = fp_add(x, fp_rescale(srdhm(x, one_minus), 4, 2));
    }
    return x;
}

static int32_t one_over_one_plus_x_for_x_in_0_1(int32_t a) {
    return fp_rescale(newton_reciprocal(a), 1, 0);
}

static int32_t one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a) {
    return fp_rescale(fp_sub(newton_reciprocal(a), fp_one(2)), 2, 0);
}

static int32_t fp_tanh(int32_t a, int32_t integer_bits) {
    int32_t n, t;
    if (a == 0) {
        return 0;
    }
    n = a < 0 ? a : fp_sub(0, a);
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1));
    return a < 0 ? fp_sub(0, t) : t;
}

static int32_t fp_logistic(int32_t a, int32_t integer_bits) {
    int32_t abs_a, if_positive;
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    abs_a = a > 0 ? a : fp_sub(0, a);
    if_positive = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(fp_sub(0, abs_a), integer_bits));
    return a > 0 ? if_positive : fp_sub(MQ_INT32_MAX, if_positive);
}

static int32_t clz_u32(uint32_t x) {
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* ---- LOGISTIC / TANH / SOFTMAX ------------------------------------------------------------ */

#define MQ_SIGMOID_INPUT_BITS 4

void mq_logistic(const mq_sigmoid_params *p, const int8_t *input, int8_t *output) {
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t d = (int32_t)input[i] - p->in_zp;
        int32_t out;
        if (d <= -p->radius) {
            out = -128;
        } else if (d >= p->radius) {
            out = 127;
        } else {
            const int32_t z = mbqm(d, p->mult, p->shift);
            const int32_t y = fp_logistic(z, MQ_SIGMOID_INPUT_BITS);
            out = clamp_i32(rdbpot(y, 23) - 128, -128, 127);
        }
        output[i] = (int8_t)out;
    }
}

void mq_tanh(const mq_sigmoid_params *p, const int8_t *input, int8_t *output) {
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t d = (int32_t)input[i] - p->in_zp;
        int32_t out;
        if (d <= -p->radius) {
            out = -128;
        } else if (d >= p->radius) {
            out = 127;
        } else {
            const int32_t z = mbqm(d, p->mult, p->shift);
            const int32_t y = fp_tanh(z, MQ_SIGMOID_INPUT_BITS);
            out = clamp_i32(rdbpot(y, 24), -128, 127);
        }
        output[i] = (int8_t)out;
    }
}

#define MQ_SOFTMAX_DIFF_BITS 5
#define MQ_SOFTMAX_ACCUM_BITS 12

void mq_softmax(const mq_softmax_params *p, const int8_t *input, int8_t *output) {
    int32_t r, i;
    for (r = 0; r < p->rows; ++r) {
        const int8_t *x = input + r * p->depth;
        int8_t *out = output + r * p->depth;
        int32_t max_val = -128;
        int32_t sum = 0;
        int32_t headroom, bits_over_unit, exponent, scale;
        uint32_t shifted;
        for (i = 0; i < p->depth; ++i) {
            max_val = x[i] > max_val ? x[i] : max_val;
        }
        for (i = 0; i < p->depth; ++i) {
            const int32_t diff = (int32_t)x[i] - max_val;
            if (diff >= p->diff_min) {
                const int32_t scaled = srdhm(shl_wrap(diff, p->left_shift), p->mult);
                const int32_t e = exp_on_negative_values(scaled, MQ_SOFTMAX_DIFF_BITS);
                sum = fp_add(sum, fp_rescale(e, 0, MQ_SOFTMAX_ACCUM_BITS));
            }
        }
        /* GetReciprocal(sum, 12): 1/sum = scale * 2^-bits_over_unit */
        headroom = clz_u32((uint32_t)sum);
        bits_over_unit = MQ_SOFTMAX_ACCUM_BITS - headroom;
        shifted = headroom >= 32 ? 0u : ((uint32_t)sum << headroom);
        scale = one_over_one_plus_x_for_x_in_0_1((int32_t)(shifted - 0x80000000u));
        exponent = bits_over_unit + 31 - 8;
        if (exponent > 31) {
            exponent = 31; /* TFLite Micro aborts here (rows >= 512 values); we saturate */
        }
        for (i = 0; i < p->depth; ++i) {
            const int32_t diff = (int32_t)x[i] - max_val;
            int32_t v = -128;
            if (diff >= p->diff_min) {
                const int32_t scaled = srdhm(shl_wrap(diff, p->left_shift), p->mult);
                const int32_t e = exp_on_negative_values(scaled, MQ_SOFTMAX_DIFF_BITS);
                v = clamp_i32(rdbpot(srdhm(scale, e), exponent) - 128, -128, 127);
            }
            out[i] = (int8_t)v;
        }
    }
}

/* ---- reductions and data movement ---------------------------------------------------------- */

static int32_t walk_count(const mq_walk *w) {
    int32_t n = 1, d;
    for (d = 0; d < w->rank; ++d) {
        n *= w->dims[d];
    }
    return n;
}

static void walk_next(const mq_walk *w, int32_t *idx, int32_t *offset) {
    int32_t d;
    for (d = w->rank - 1; d >= 0; --d) {
        *offset += w->strides[d];
        if (++idx[d] < w->dims[d]) {
            return;
        }
        idx[d] = 0;
        *offset -= w->strides[d] * w->dims[d];
    }
}

void mq_mean(const mq_mean_params *p, const int8_t *input, int8_t *output) {
    const int32_t n_out = walk_count(&p->outer);
    const int32_t n_in = walk_count(&p->inner);
    int32_t oidx[MQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t ooff = 0, o;
    for (o = 0; o < n_out; ++o) {
        int32_t iidx[MQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t ioff = 0, i;
        int32_t sum = 0;
        if (p->count == 0) {
            output[o] = 0;
        } else {
            const int8_t *base = input + ooff;
            for (i = 0; i < n_in; ++i) {
                sum = fp_add(sum, base[ioff]);
                walk_next(&p->inner, iidx, &ioff);
            }
            sum = fp_sub(sum, (int32_t)((uint32_t)p->in_zp * (uint32_t)p->count));
            output[o] = (int8_t)clamp_i32(mbqm(sum, p->mult, p->shift) + p->out_zp, -128, 127);
        }
        walk_next(&p->outer, oidx, &ooff);
    }
}

void mq_transpose(const mq_transpose_params *p, const int8_t *input, int8_t *output) {
    const int32_t n = walk_count(&p->walk);
    int32_t idx[MQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t off = 0, i;
    for (i = 0; i < n; ++i) {
        output[i] = input[off];
        walk_next(&p->walk, idx, &off);
    }
}

void mq_pad(const mq_pad_params *p, const int8_t *input, int8_t *output) {
    const int32_t n = walk_count(&p->rows);
    int32_t idx[MQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t off = 0, i;
    memset(output, (int8_t)p->value, (size_t)p->out_count);
    for (i = 0; i < n; ++i) {
        memcpy(output + p->base + off, input + i * p->row_len, (size_t)p->row_len);
        walk_next(&p->rows, idx, &off);
    }
}

void mq_concatenation(const mq_concat_params *p, const int8_t *const *inputs, int8_t *output) {
    int32_t o, i;
    for (o = 0; o < p->outer; ++o) {
        for (i = 0; i < p->n_inputs; ++i) {
            const int32_t n = p->inner[i];
            memcpy(output, inputs[i] + o * n, (size_t)n);
            output += n;
        }
    }
}

void mq_copy(int32_t count, const int8_t *input, int8_t *output) {
    if (input != output) {
        memmove(output, input, (size_t)count);
    }
}
