/* frechet.c - Gaussian fits, a Jacobi eigensolver and the Fréchet distance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frechet.h"

int gm_gaussian_fit(const float *x, int n, int d, double *mean, double *cov) {
    double *c = malloc(sizeof(double) * d);
    if (!c) return -1;
    memset(mean, 0, sizeof(double) * d);
    memset(cov, 0, sizeof(double) * d * d);
    for (int r = 0; r < n; r++)
        for (int i = 0; i < d; i++) mean[i] += x[(size_t)r * d + i];
    for (int i = 0; i < d; i++) mean[i] /= n;
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < d; i++) c[i] = x[(size_t)r * d + i] - mean[i];
        for (int i = 0; i < d; i++)
            for (int j = i; j < d; j++) cov[i * d + j] += c[i] * c[j];
    }
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) cov[j * d + i] = cov[i * d + j] /= (n - 1);
    free(c);
    return 0;
}

void gm_sym_eigen(double *a, int d, double *w, double *v) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) v[i * d + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < d; i++) {
            diag += a[i * d + i] * a[i * d + i];
            for (int j = i + 1; j < d; j++) off += a[i * d + j] * a[i * d + j];
        }
        if (off <= 1e-30 * diag || off == 0) break;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = a[p * d + q];
                if (fabs(apq) < 1e-300) continue;
                /* rotation that zeroes a[p][q] (Numerical Recipes' form) */
                double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < d; k++) { /* columns p, q */
                    double akp = a[k * d + p], akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) { /* rows p, q */
                    double apk = a[p * d + k], aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < d; k++) {
                    double vkp = v[k * d + p], vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < d; i++) w[i] = a[i * d + i];
}

/* tr((S1 S2)^(1/2)) = sum sqrt(eig(R S2 R)) with R = S1^(1/2): R S2 R is
 * symmetric positive semi-definite and similar to S1 S2. */
double gm_frechet_distance(const double *m1, const double *s1, const double *m2, const double *s2, int d) {
    size_t dd = (size_t)d * d;
    double *a = malloc(sizeof(double) * dd), *v = malloc(sizeof(double) * dd), *w = malloc(sizeof(double) * d);
    double *r = malloc(sizeof(double) * dd), *t = malloc(sizeof(double) * dd);
    double result = -1;
    if (!a || !v || !w || !r || !t) goto done;
    memcpy(a, s1, sizeof(double) * dd);
    gm_sym_eigen(a, d, w, v);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += v[i * d + k] * sqrt(fmax(w[k], 0)) * v[j * d + k];
            r[i * d + j] = s;
        }
    for (int i = 0; i < d; i++) /* t = R S2 */
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += r[i * d + k] * s2[k * d + j];
            t[i * d + j] = s;
        }
    for (int i = 0; i < d; i++) /* a = t R, symmetrized against rounding */
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += t[i * d + k] * r[k * d + j];
            a[i * d + j] = s;
        }
    for (int i = 0; i < d; i++)
        for (int j = i + 1; j < d; j++) a[i * d + j] = a[j * d + i] = 0.5 * (a[i * d + j] + a[j * d + i]);
    gm_sym_eigen(a, d, w, v);
    double tr_sqrt = 0, dist = 0;
    for (int i = 0; i < d; i++) {
        tr_sqrt += sqrt(fmax(w[i], 0));
        dist += (m1[i] - m2[i]) * (m1[i] - m2[i]) + s1[i * d + i] + s2[i * d + i];
    }
    result = fmax(dist - 2 * tr_sqrt, 0);
done:
    free(a);
    free(v);
    free(w);
    free(r);
    free(t);
    return result;
}
