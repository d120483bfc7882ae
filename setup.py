"""The one optional C extension (everything else is in pyproject.toml).

featlab/probes/_moments.c: column sums and sum of squares of an array in one read, the fast path
of the D/G/R denominator (featlab.probes._moments). ``optional=True``: without a C compiler the
install still succeeds and featlab uses its torch path (``featlab.probes._moments.AVAILABLE`` is
False). Kept here rather than in pyproject.toml, where ``ext-modules`` is still experimental.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("featlab.probes._moments_c", sources=["featlab/probes/_moments.c"],
                             extra_compile_args=["-O3", "-fopenmp-simd"], optional=True)])
