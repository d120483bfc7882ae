/* featlab.probes._moments_c: column sums and the total sum of squares of a (P, D) array in one read.
 *
 * The closed-form mean-protocol denominator (featlab/probes/_stability.py, mean_sq_distance) needs
 * S1 = sum_i f_i (a D-vector) and S2 = sum_i |f_i|^2. torch has no single-read kernel for both: a
 * gemv and a dot over the same data read it twice, once from memory and once from a cache the
 * chunk has already left (1.4-1.7x one read of the array). This kernel reads every element once.
 *
 * Convention: F is C-contiguous, row-major (P, D), float64 or float32; every sum is float64.
 * Rows are taken four at a time, so s1 is loaded and stored once per four rows; each of the four
 * rows has its own sum-of-squares accumulator over its D values, added to the total once per
 * block (two-level summation: relative error of S2 is O((D + P/4) eps), not O(P D eps)). The
 * inner loop is an OpenMP SIMD reduction (-fopenmp-simd: vector lanes, no threads, no runtime),
 * so float32 input is converted and summed a vector at a time; no fast-math, so a given build
 * gives the same bits on every call (another compiler or vector width may round differently).
 *
 * The functions are reached through ctypes (featlab/probes/_moments.py); the module itself exports
 * nothing to Python and exists so that the file is an ordinary importable extension module.
 * Built by setuptools as an optional extension: where no C compiler is present the package still
 * installs and mean_sq_distance uses its torch path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define FEATLAB_MOMENTS(NAME, T)                                                               \
    double NAME(const T *F, int64_t P, int64_t D, double *s1)                                  \
    {                                                                                          \
        double s2 = 0.0;                                                                       \
        int64_t i = 0, d;                                                                      \
        for (d = 0; d < D; d++) s1[d] = 0.0;                                                   \
        for (; i + 4 <= P; i += 4) {                                                           \
            const T *a = F + i * D, *b = a + D, *c = b + D, *e = c + D;                        \
            double q0 = 0.0, q1 = 0.0, q2 = 0.0, q3 = 0.0;                                     \
            _Pragma("omp simd reduction(+:q0,q1,q2,q3)")                                      \
            for (d = 0; d < D; d++) {                                                          \
                double x0 = a[d], x1 = b[d], x2 = c[d], x3 = e[d];                             \
                s1[d] += (x0 + x1) + (x2 + x3);                                                \
                q0 += x0 * x0; q1 += x1 * x1; q2 += x2 * x2; q3 += x3 * x3;                    \
            }                                                                                  \
            s2 += (q0 + q1) + (q2 + q3);                                                       \
        }                                                                                      \
        for (; i < P; i++) {                                                                   \
            const T *a = F + i * D;                                                            \
            double q0 = 0.0;                                                                   \
            for (d = 0; d < D; d++) {                                                          \
                double x0 = a[d];                                                              \
                s1[d] += x0;                                                                   \
                q0 += x0 * x0;                                                                 \
            }                                                                                  \
            s2 += q0;                                                                          \
        }                                                                                      \
        return s2;                                                                             \
    }

FEATLAB_MOMENTS(featlab_moments_f64, double)
FEATLAB_MOMENTS(featlab_moments_f32, float)

static struct PyModuleDef moments_module = {
    PyModuleDef_HEAD_INIT, "_moments_c",
    "Single-read column sums and sum of squares (C, called through ctypes by featlab.probes._moments).",
    -1, NULL,
};

PyMODINIT_FUNC PyInit__moments_c(void) { return PyModule_Create(&moments_module); }
