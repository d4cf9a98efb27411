/* Fully connected layer on OpenBLAS: every product is one cblas_sgemm call working
 * in place on the caller's buffers (no transposed copies), for both weight layouts. */
#include "ops.h"

#include <cblas.h>
#include <string.h>

/* out[B,OC] = inp[B,IC] · W + bias. The bias is written into the output rows first so
 * that the GEMM can add onto it (beta = 1) instead of needing a second pass. */
void graft_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                          int B, int IC, int OC, graft_wlayout layout) {
    if (B <= 0 || OC <= 0) return;
    if (bias != NULL) {
        for (int b = 0; b < B; b++)
            memcpy(out + (size_t)b * OC, bias, (size_t)OC * sizeof(float));
    } else if (IC <= 0) {
        memset(out, 0, (size_t)B * OC * sizeof(float));
    }
    if (IC <= 0) return;
    float beta = bias != NULL ? 1.0f : 0.0f;
    if (layout == GRAFT_W_OUT_IN) {
        /* W [OC, IC]: out = inp · W^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OC, IC, 1.0f, inp, IC, weight, IC,
                    beta, out, OC);
    } else {
        /* W [IC, OC]: out = inp · W */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, OC, IC, 1.0f, inp, IC, weight, OC,
                    beta, out, OC);
    }
}

/* Accumulates dinp += dout · W^T-as-[OC,IC], dweight += the weight-shaped product of
 * dout and inp, dbias += column sums of dout; NULL outputs are skipped. */
void graft_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int B, int IC, int OC,
                           graft_wlayout layout) {
    if (B <= 0 || OC <= 0) return;
    if (dinp != NULL && IC > 0) {
        if (layout == GRAFT_W_OUT_IN) {
            /* W [OC, IC]: dinp[B,IC] += dout[B,OC] · W */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, IC, OC, 1.0f, dout, OC,
                        weight, IC, 1.0f, dinp, IC);
        } else {
            /* W [IC, OC]: dinp[B,IC] += dout[B,OC] · W^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, IC, OC, 1.0f, dout, OC, weight,
                        OC, 1.0f, dinp, IC);
        }
    }
    if (dweight != NULL && IC > 0) {
        if (layout == GRAFT_W_OUT_IN) {
            /* dW[OC,IC] += dout^T · inp */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, B, 1.0f, dout, OC, inp, IC,
                        1.0f, dweight, IC);
        } else {
            /* dW[IC,OC] += inp^T · dout */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IC, OC, B, 1.0f, inp, IC, dout, OC,
                        1.0f, dweight, OC);
        }
    }
    if (dbias != NULL) {
        for (int b = 0; b < B; b++) {
            const float *dout_row = dout + (size_t)b * OC;
            for (int o = 0; o < OC; o++)
                dbias[o] += dout_row[o];
        }
    }
}
