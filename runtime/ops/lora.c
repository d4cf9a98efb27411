/* The low-rank adapter's products on OpenBLAS: each one cblas_sgemm over the caller's
 * buffers, so the adapter costs two thin GEMMs forward and four backward. */
#include "ops.h"

#include <cblas.h>

void graft_lora_forward(float *out, float *u, const float *x, const float *A, const float *B, int N,
                        int IC, int OC, int r, float scale) {
    if (N <= 0 || OC <= 0 || r <= 0 || IC <= 0) return;
    /* u[N,r] = x[N,IC] · A[r,IC]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, IC, 1.0f, x, IC, A, IC, 0.0f, u, r);
    /* out[N,OC] += scale · u · B[OC,r]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, r, scale, u, r, B, r, 1.0f, out,
                OC);
}

void graft_lora_backward(float *dx, float *dA, float *dB, float *du, const float *dout,
                         const float *x, const float *u, const float *A, const float *B, int N,
                         int IC, int OC, int r, float scale) {
    if (N <= 0 || OC <= 0 || r <= 0 || IC <= 0) return;
    /* dB[OC,r] += scale · dout^T · u */
    if (dB)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, r, N, scale, dout, OC, u, r, 1.0f,
                    dB, r);
    if (!dA && !dx) return;
    /* du[N,r] = scale · dout · B */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, OC, scale, dout, OC, B, r, 0.0f,
                du, r);
    /* dA[r,IC] += du^T · x */
    if (dA)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, IC, N, 1.0f, du, r, x, IC, 1.0f, dA,
                    IC);
    /* dx[N,IC] += du · A */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, r, 1.0f, du, r, A, IC, 1.0f,
                    dx, IC);
}
