"""Loading torch & co. inside QGIS: without triton.

triton (which PyPI's Linux torch brings) kills a QGIS process that has loaded Mesa's libLLVM (the desktop's
OpenGL) with signal 11 as it loads its own LLVM. torch only needs triton to compile GPU kernels, which HierGeo
never does, and it treats a triton that cannot be imported as absent (torchvision.ops -> torch._dynamo keeps
working). So inside a QGIS application `triton` is marked as not importable (None in sys.modules, Python's own
way to say "no such module": `import triton` raises ModuleNotFoundError, `importlib.util.find_spec` returns None).
"""

from __future__ import annotations

import sys

from qgis.core import QgsApplication

#: The package that must not load inside QGIS.
TRITON = "triton"


def inside_qgis() -> bool:
    """True in a process that runs a QGIS application (the desktop, qgis_process, the tests' QGIS)."""
    return QgsApplication.instance() is not None


def keep_triton_out() -> bool:
    """Inside QGIS, make `import triton` fail as for a package that is not installed; True when it is kept out.

    Does nothing outside QGIS (a notebook or a Ray worker may want torch.compile), and cannot unload a triton
    that something else imported already (then False).
    """
    if not inside_qgis():
        return False
    if TRITON in sys.modules:
        return sys.modules[TRITON] is None
    sys.modules[TRITON] = None
    return True
