/*
 * frechet.h - the Fréchet distance between two Gaussians fitted to feature
 * sets: |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), the measure
 * behind FID, here in float64 with a Jacobi eigensolver (no LAPACK needed).
 */
#ifndef GM_FRECHET_H
#define GM_FRECHET_H

/* Mean (d) and unbiased covariance (d, d) of n rows of x (n, d), n >= 2.
 * Returns 0, or -1 when out of memory. */
int gm_gaussian_fit(const float *x, int n, int d, double *mean, double *cov);

/* The distance between N(m1, s1) and N(m2, s2), d-dimensional. Returns a
 * value >= 0 (tiny negative rounding is clamped), or -1 when out of memory. */
double gm_frechet_distance(const double *m1, const double *s1, const double *m2, const double *s2, int d);

/* Eigen-decomposition of the symmetric a (d, d), destroyed: eigenvalues in
 * w (d), eigenvectors in the columns of v (d, d). Cyclic Jacobi. */
void gm_sym_eigen(double *a, int d, double *w, double *v);

#endif
