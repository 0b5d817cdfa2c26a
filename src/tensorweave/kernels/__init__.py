"""Kernels keyed by (op type, device type). ``cpu/`` is NumPy, ``gpu/`` CuPy.

Importing this package registers every CPU kernel; GPU kernels register when CuPy imports.
"""

import importlib
import pkgutil


def load_cpu_kernels():
    from tensorweave.kernels import cpu
    for m in pkgutil.iter_modules(cpu.__path__):
        importlib.import_module(f"tensorweave.kernels.cpu.{m.name}")
