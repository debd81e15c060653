"""The optional C kernels for IMA lists (shared_spec/_speedups.c); the rest of the
build is declared in pyproject.toml. Without a C compiler, Python's headers or
libcrypto's, the install goes on and shared_spec's Python code runs instead."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "shared_spec._speedups",
    sources=["shared_spec/_speedups.c"],
    libraries=["crypto"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    optional=True,
)])
