/* Time stepping of the 2-D wave simulator in C: the native backend of
   phys.simulators.wave2d (see native.py, which compiles this file on first use).

   The loops implement exactly the updates of the torch stepper (stepper.py): the same
   flat padded layout and the same coefficients. The precision is chosen at compile
   time: build once with -DREAL=float and once with -DREAL=double. */
#include <string.h>

#ifndef REAL
#error "compile with -DREAL=float or -DREAL=double"
#endif

typedef long long i64;

/* One step for one sample, over the interior (pointers at flat index W + 1):
   o = bc pv + a u + c (N u)                                   (linear), or
   o = bc pv + a u + c q^2 (N u - 4 u), q = chat + cnl u^2     (nonlinear: a = 2k, c = k),
   with pv = o (in place) when pv is 0. Separate loops keep every case free of aliasing,
   so that each vectorises. */
#define LINEAR_UPDATE(PV) \
    o[i] = bc[i] * (PV) + a[i] * u[i] + c[i] * (u[i - 1] + u[i + 1] + u[i - W] + u[i + W])
#define KERR_UPDATE(PV) do { \
        REAL lap = u[i - 1] + u[i + 1] + u[i - W] + u[i + W] - 4 * u[i]; \
        REAL q = chat[i] + cnl * u[i] * u[i]; \
        o[i] = bc[i] * (PV) + a[i] * u[i] + c[i] * q * q * lap; \
    } while (0)
static void step(i64 W, i64 M, int linear, const REAL* restrict bc,
                 const REAL* restrict a, const REAL* restrict c, const REAL* restrict chat,
                 REAL cnl, const REAL* restrict pv, const REAL* restrict u,
                 REAL* restrict o) {
    if (linear && pv)
        for (i64 i = 0; i < M; ++i) LINEAR_UPDATE(pv[i]);
    else if (linear)
        for (i64 i = 0; i < M; ++i) LINEAR_UPDATE(o[i]);
    else if (pv)
        for (i64 i = 0; i < M; ++i) KERR_UPDATE(pv[i]);
    else
        for (i64 i = 0; i < M; ++i) KERR_UPDATE(o[i]);
}

/* Steps start..stop-1 in place for samples b0..b1-1; see _Stepper.march.
   prev, cur: (B, P); drive: (n_drive, B, n_src); record: (T, B, n_prb) or 0;
   ckpt: (n_ckpt, 2, B, P) or 0, filled before every step n with n % every == 0. */
void wave2d_march(i64 B, i64 b0, i64 b1, i64 W, i64 P, i64 start, i64 stop, int linear,
                  const REAL* bc, const REAL* a, const REAL* c, const REAL* chat, REAL cnl,
                  REAL* prev_all, REAL* cur_all, i64 n_src, const i64* src, i64 n_drive,
                  const REAL* drive, i64 n_prb, const i64* prb, REAL* record,
                  i64 every, REAL* ckpt) {
    const i64 M = P - 2 * W - 2;
    for (i64 b = b0; b < b1; ++b) {
        REAL* prev = prev_all + b * P;
        REAL* cur = cur_all + b * P;
        for (i64 n = start; n < stop; ++n) {
            if (ckpt && n % every == 0) {
                REAL* dst = ckpt + ((n / every) * 2 * B + b) * P;
                memcpy(dst, prev, P * sizeof(REAL));
                memcpy(dst + B * P, cur, P * sizeof(REAL));
            }
            step(W, M, linear, bc, a, c, chat, cnl, 0, cur + W + 1, prev + W + 1);
            if (n < n_drive)
                for (i64 k = 0; k < n_src; ++k) prev[src[k]] += drive[(n * B + b) * n_src + k];
            if (record)
                for (i64 k = 0; k < n_prb; ++k) record[(n * B + b) * n_prb + k] = prev[prb[k]];
            REAL* t = prev; prev = cur; cur = t;
        }
    }
}

/* Fields u[start-1 .. stop] of samples b0..b1-1 into tape (stop - start + 2, B, P), from
   the state (u[start-1], u[start]) in ck_prev, ck_cur (B, P). The tape's halo must be 0. */
void wave2d_tape(i64 B, i64 b0, i64 b1, i64 W, i64 P, i64 start, i64 stop, int linear,
                 const REAL* bc, const REAL* a, const REAL* c, const REAL* chat, REAL cnl,
                 const REAL* ck_prev, const REAL* ck_cur, REAL* tape,
                 i64 n_src, const i64* src, i64 n_drive, const REAL* drive) {
    const i64 M = P - 2 * W - 2;
    for (i64 b = b0; b < b1; ++b) {
        memcpy(tape + b * P, ck_prev + b * P, P * sizeof(REAL));
        memcpy(tape + (B + b) * P, ck_cur + b * P, P * sizeof(REAL));
        for (i64 n = start; n < stop; ++n) {
            i64 j = n - start;
            REAL* o = tape + ((j + 2) * B + b) * P;
            step(W, M, linear, bc, a, c, chat, cnl, tape + (j * B + b) * P + W + 1,
                 tape + ((j + 1) * B + b) * P + W + 1, o + W + 1);
            if (n < n_drive)
                for (i64 k = 0; k < n_src; ++k) o[src[k]] += drive[(n * B + b) * n_src + k];
        }
    }
}

/* One adjoint step for one sample, over the interior: w = g li, then
   o = bc o + h li + N(w). Linear: g = c, h = a. Nonlinear (u = the field u[m]):
   g = c q^2, h = a + m4k q (q - cnl u (N u - 4 u)). All arrays distinct. */
static void adjoint_step(i64 W, i64 M, int linear, const REAL* restrict bc,
                         const REAL* restrict a, const REAL* restrict c,
                         const REAL* restrict chat, REAL cnl, const REAL* restrict m4k,
                         const REAL* restrict u, const REAL* restrict li,
                         REAL* restrict w, REAL* restrict o) {
    if (linear) {
        for (i64 i = 0; i < M; ++i) w[i] = c[i] * li[i];
        for (i64 i = 0; i < M; ++i) {
            REAL s = w[i - 1] + w[i + 1] + w[i - W] + w[i + W];
            o[i] = bc[i] * o[i] + a[i] * li[i] + s;
        }
        return;
    }
    for (i64 i = 0; i < M; ++i) {
        REAL q = chat[i] + cnl * u[i] * u[i];
        w[i] = c[i] * q * q * li[i];
    }
    for (i64 i = 0; i < M; ++i) {
        REAL lap = u[i - 1] + u[i + 1] + u[i - W] + u[i + W] - 4 * u[i];
        REAL q = chat[i] + cnl * u[i] * u[i];
        REAL h = a[i] + m4k[i] * q * (q - cnl * u[i] * lap);
        REAL s = w[i - 1] + w[i + 1] + w[i - W] + w[i + W];
        o[i] = bc[i] * o[i] + h * li[i] + s;
    }
}

/* Adjoint steps m = hi..lo (descending) for samples b0..b1-1; see _Stepper.adjoint:
   lam[m] = P^T grad[m-1] + J[m]^T lam[m+1] + bc lam[m+2], written over lam[m+2] (the
   Jacobian term only when with_jacobian). Nonlinear: u[m] = tape[m - tape_first + 1]
   (see wave2d_tape). w: (B, P) scratch with a zero halo. */
void wave2d_adjoint(i64 B, i64 b0, i64 b1, i64 W, i64 P, i64 hi, i64 lo, int linear,
                    const REAL* bc, const REAL* a, const REAL* c, const REAL* chat, REAL cnl,
                    const REAL* m4k, const REAL* tape, i64 tape_first,
                    REAL* lam1_all, REAL* lam2_all, REAL* w_all, int with_jacobian,
                    const REAL* grad_record, i64 n_prb, const i64* prb,
                    i64 n_src, const i64* src, i64 n_drive, REAL* grad_drive) {
    const i64 M = P - 2 * W - 2;
    for (i64 b = b0; b < b1; ++b) {
        REAL* l1 = lam1_all + b * P;
        REAL* l2 = lam2_all + b * P;
        for (i64 m = hi; m >= lo; --m) {
            if (with_jacobian) {
                const REAL* u = linear ? 0 : tape + ((m - tape_first + 1) * B + b) * P + W + 1;
                adjoint_step(W, M, linear, bc, a, c, chat, cnl, m4k, u, l1 + W + 1,
                             w_all + b * P + W + 1, l2 + W + 1);
            }
            for (i64 k = 0; k < n_prb; ++k)
                l2[prb[k]] += grad_record[((m - 1) * B + b) * n_prb + k];
            if (m - 1 < n_drive)
                for (i64 k = 0; k < n_src; ++k)
                    grad_drive[((m - 1) * B + b) * n_src + k] = l2[src[k]];
            REAL* t = l1; l1 = l2; l2 = t;
        }
    }
}
