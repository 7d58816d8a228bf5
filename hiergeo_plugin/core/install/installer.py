"""Install HierGeo's Python dependencies for QGIS's own Python, into a private folder, and check that they import.

QGIS-free on purpose (plain subprocess + threading): the Qt dialog (gui/install_dialog.py) and the message that an
algorithm shows without a GUI (processing/dependencies.py) are thin adapters over the same four steps:

1. `qgis_python.find_qgis_python` (a module of its own): the interpreter QGIS runs, from the platform's layout,
   its version checked against the running one. Everything here takes that interpreter as given.
2. `private_packages_dir` (install/private_path.py): <QGIS profile>/hiergeo/python3.X. The profile is outside the
   application (survives QGIS upgrades, notably the QGIS.app bundle replaced on macOS), needs no administrator
   rights (Windows keeps QGIS's Python under Program Files) and is not the system's Python (Debian 12+ refuses pip
   there, "externally managed"). One folder per Python version, since binary wheels are built for one.
3. `pip_command` + `run_pip` (install/pip_run.py): pip of that interpreter with `--target`, the pinned requirements, a CPU
   or CUDA build of torch, QGIS's proxy as environment variables (install/pip_env.py, which also masks pip's configured
   credentials), each log line passed to a callback, Cancel kills pip.
4. `verify_imports` (install/verify.py): a fresh process of that interpreter, the folder put on sys.path exactly as
   the plugin does at load time (`add_private_path`), imports every module: what the user gets after restarting
   QGIS, not what this process (with half-imported modules of a previous install) believes.

Running it again repairs: with `--target` pip ignores what is installed anywhere and installs every requirement
afresh, and `--upgrade` replaces the copies already in the folder (a half-deleted or mismatched torch included).
"""

from __future__ import annotations

import functools
import re
import shlex

# Only for the platform's quoting of the command shown (list2cmdline); nothing is run here (bandit: B404).
import subprocess  # nosec B404
import sys
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, Iterable, List, Mapping, Optional, Sequence, Tuple

# The `X as X` imports are re-exports: the dialog, processing/dependencies.py and the tests use them through this module.
from .pip_env import (
    configured_pip_extra_indexes,
    configured_pip_settings,
    index_reachable,
    masker,
    pip_environment,
    pip_secret_urls,
    shown_command,
)
from .pip_run import PipProgress as PipProgress
from .pip_run import failure_message, run_pip
from .pip_run import redact_line as redact_line
from .private_path import add_private_path as add_private_path
from .private_path import private_packages_dir as private_packages_dir
from .verify import DEPENDENCIES as DEPENDENCIES
from .verify import DEPENDENCY_MODULES, VerifyResult, verify_imports

#: The pinned runtime requirements, exactly the lines of requirements.txt (tests/core/install/test_installer.py keeps
#: them equal; requirements.txt is not in the plugin zip). Markers are evaluated by the target interpreter's own pip.
RUNTIME_REQUIREMENTS: Tuple[str, ...] = (
    "torch==2.14.1",
    "torchvision==0.29.1",
    "open_clip_torch==3.3.0",
    'numpy==1.26.4; python_version < "3.12"',
    'numpy==2.2.6; python_version >= "3.12" and python_version < "3.14"',
    'numpy==2.4.6; python_version >= "3.14"',
    "pillow==11.3.0",
    "shapely==2.1.2",
    "pyproj==3.7.2",
    "requests==2.32.5",
    "safetensors==0.6.2",
    "tqdm==4.67.1",
    "faiss-cpu==1.15.1",
)

#: PyTorch's own index of CPU-only builds: on Linux PyPI's torch carries the CUDA libraries (several GB of nvidia-*
#: wheels); these builds are a few hundred MB. Given as an extra index, so the other packages still come from PyPI
#: (or the user's configured index); pip picks torch 2.x.y+cpu over PyPI's 2.x.y for the same `==2.x.y` pin.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: PyPI's torch for Windows is CPU-only; CUDA builds for Windows are on PyTorch's index for one CUDA release.
#: Check that it carries the pinned torch when the pin changes.
TORCH_CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"

VARIANTS = ("cpu", "cuda")


class Outcome(Enum):
    """How an install ended, for code to act on (the dialog offers the next step from it, not from the text)."""

    INSTALLED = "installed"
    IMPORT_FAILED = "import_failed"  # pip succeeded, a module does not import
    PIP_FAILED = "pip_failed"
    CANCELLED = "cancelled"
    #: The chosen torch build's index did not answer; pip did not run. The default index would give another build
    #: (`default_torch_build`), so that takes the user's explicit choice (`install(allow_default_torch=True)`).
    TORCH_INDEX_UNREACHABLE = "torch_index_unreachable"


@dataclass(frozen=True)
class InstallResult:
    """What an install run ended with; `message` is the one line for the user, `log_tail` the evidence.

    `command` is the pip command with its credentials masked (what may be shown and kept, not what ran).
    `outcome` defaults from `ok`/`cancelled`; `unreachable_index` (masked) says which index did not answer;
    `torch_from_default_index` is True when the user chose the default index's torch after that.
    """

    ok: bool
    cancelled: bool
    returncode: Optional[int]
    message: str
    command: Tuple[str, ...]
    missing: Tuple[Tuple[str, str], ...] = ()
    log_tail: Tuple[str, ...] = ()
    verify: Optional[VerifyResult] = None
    outcome: Optional[Outcome] = None
    unreachable_index: str = ""
    torch_from_default_index: bool = False

    def __post_init__(self):
        if self.outcome is None:
            implied = Outcome.INSTALLED if self.ok else Outcome.CANCELLED if self.cancelled else Outcome.PIP_FAILED
            object.__setattr__(self, "outcome", implied)


#: Public indexes, shown as they are in the command and the log: they hold no credential.
_PUBLIC_INDEXES = (TORCH_CPU_INDEX, TORCH_CUDA_INDEX_WINDOWS)


# -- the command --------------------------------------------------------------------------------------------------

_MARKER = re.compile(r"""^python_version\s*(<=|>=|==|!=|<|>)\s*["']([0-9.]+)["']$""")


def requirements_for(version: Sequence[int], requirements: Sequence[str] = RUNTIME_REQUIREMENTS) -> List[str]:
    """The requirements that apply to Python `version`, markers removed (the numpy pin per Python version).

    Evaluated here rather than by pip so that the command shown to the user is one that can be typed as it is,
    and the log has no "Ignoring numpy" noise. Only `python_version` comparisons joined by `and` are understood
    (all that requirements.txt uses); anything else raises ValueError, so a new kind of marker fails the tests,
    not a user.
    """
    have = tuple(int(v) for v in version[:2])
    out = []
    for line in requirements:
        spec, _, marker = line.partition(";")
        applies = True
        for clause in filter(None, (c.strip() for c in marker.split(" and "))):
            match = _MARKER.match(clause)
            if not match:
                raise ValueError(f"unsupported marker in {line!r}: {clause!r}")
            want = tuple(int(v) for v in match.group(2).split("."))[:2]
            compare = {
                "<": have < want,
                "<=": have <= want,
                ">": have > want,
                ">=": have >= want,
                "==": have == want,
                "!=": have != want,
            }
            applies = applies and compare[match.group(1)]
        if applies:
            out.append(spec.strip())
    return out


def torch_index(variant: str, platform: Optional[str] = None) -> Optional[str]:
    """The extra index that provides the chosen torch build, None for PyPI's.

    CPU: PyTorch's CPU index on Linux and Windows; macOS's PyPI wheels are CPU (+ Apple's MPS) builds already.
    CUDA: PyPI's torch on Linux (it includes the CUDA libraries); PyTorch's CUDA index on Windows; none on macOS.
    """
    platform = sys.platform if platform is None else platform
    if variant not in VARIANTS:
        raise ValueError(f"torch build must be one of {VARIANTS}, not {variant!r}")
    if platform == "darwin":
        return None
    if variant == "cpu":
        return TORCH_CPU_INDEX
    return TORCH_CUDA_INDEX_WINDOWS if platform.startswith("win") else None


def pip_command(
    python: str,
    target: Path,
    requirements: Sequence[str] = RUNTIME_REQUIREMENTS,
    variant: str = "cpu",
    platform: Optional[str] = None,
    configured_extra_indexes: Sequence[str] = (),
    torch_index_url: Optional[str] = "",
) -> List[str]:
    """The pip command line (a list: no shell, no quoting) that installs `requirements` into `target`.

    An extra index given on the command line replaces the ones in the user's pip configuration (pip's rule: the
    command line wins over the configuration), so those are passed on too (`configured_pip_extra_indexes`).
    `torch_index_url` replaces the variant's index ("" = the variant's, None = none).
    """
    command = [
        python,
        "-m",
        "pip",
        "install",
        "--upgrade",  # replace what a previous run left in the folder: running it again repairs
        "--target",
        str(target),
        "--prefer-binary",  # never compile numpy & co. inside QGIS when an older wheel exists
        "--no-input",  # a prompt for credentials would wait forever with no terminal
        "--progress-bar",
        "off",  # one line per step, not a bar redrawn thousands of times
        "--disable-pip-version-check",
    ]
    index = torch_index(variant, platform) if torch_index_url == "" else torch_index_url  # None: no extra index
    if index:
        for url in [index, *[u for u in configured_extra_indexes if u != index]]:
            command += ["--extra-index-url", url]
    return command + list(requirements)


def command_text(command: Sequence[str], platform: Optional[str] = None) -> str:
    """The command as one line to paste into the platform's shell (cmd.exe quoting on Windows)."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("win"):
        return subprocess.list2cmdline(list(command))
    return " ".join(shlex.quote(part) for part in command)


# -- the whole install -----------------------------------------------------------------------------------------


def default_torch_build(platform: Optional[str] = None) -> str:
    """What the default index (PyPI) gives for torch on `platform`: what the user agrees to when PyTorch's own
    index cannot be reached. Linux: the CUDA build, 5.7 GB measured for the pinned torch with its nvidia-*
    wheels and triton (which is also a build that QGIS's desktop must keep from loading)."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("win"):
        return "PyPI's torch for Windows (CPU only, a few hundred MB)"
    return "PyPI's full torch (the CUDA build: about 5.7 GB with its nvidia-* libraries and triton)"


def unreachable_index_message(index: str, variant: str, platform: Optional[str] = None) -> str:
    """The user's line when the chosen build's index does not answer: nothing ran, and what the alternative is."""
    build = "CPU-only" if variant == "cpu" else "CUDA"
    return (
        f"PyTorch's index {index} cannot be reached (network, proxy or firewall), so its {build} build of torch "
        f"cannot be installed; nothing was installed. Check the connection and try again, or choose to install "
        f"{default_torch_build(platform)} instead."
    )


def pip_masker(settings: Sequence[Tuple[str, str]], env: Mapping[str, str]) -> Callable[[str], str]:
    """What every line shown or kept goes through: pip's configured credentials masked (install/pip_env.py), PyTorch's
    public indexes shown as they are."""
    return masker(pip_secret_urls(settings, env), _PUBLIC_INDEXES)


def install(
    python: str,
    target: Path,
    requirements: Sequence[str] = RUNTIME_REQUIREMENTS,
    variant: str = "cpu",
    proxies: Optional[Mapping[str, str]] = None,
    on_line: Optional[Callable[[str], None]] = None,
    cancel: Optional[threading.Event] = None,
    modules: Iterable[str] = DEPENDENCY_MODULES,
    platform: Optional[str] = None,
    base_env: Optional[Mapping[str, str]] = None,
    python_version: Optional[Sequence[int]] = None,
    torch_index_url: Optional[str] = "",
    allow_default_torch: bool = False,
) -> InstallResult:
    """pip-install `requirements` into `target` for `python`, then verify `modules` import: one typed result.

    `python_version` (default: this process's, which `find_qgis_python` matched) selects the requirements whose
    markers apply. `base_env` (default: os.environ) is the environment pip starts from, `proxies` go on top of it.
    `torch_index_url` replaces the variant's torch index ("" = the variant's). When that index does not answer,
    pip does not run (Outcome.TORCH_INDEX_UNREACHABLE): the default index's torch is another build (on Linux
    5.7 GB of CUDA instead of a few hundred MB), which only `allow_default_torch=True`, the user's explicit
    choice, installs.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    env = pip_environment(proxies, base_env)
    settings = configured_pip_settings(python, env)
    mask = pip_masker(settings, env)  # pip's configured tokens never reach the screen or the result
    index = torch_index(variant, platform) if torch_index_url == "" else torch_index_url
    notes, fell_back = [], False
    if index and not index_reachable(index, env):
        if not allow_default_torch:
            return _index_unreachable(mask(index), variant, platform, on_line)
        notes.append(
            f"{mask(index)} cannot be reached; as chosen, torch comes from the default index instead: "
            f"{default_torch_build(platform)}."
        )
        index, fell_back = None, True
    extra = configured_pip_extra_indexes(python, env, settings) if index else []
    wanted = requirements_for(tuple(python_version or sys.version_info[:3]), requirements)
    command = pip_command(python, target, wanted, variant, platform, extra, index)
    shown = shown_command(command, mask)
    if on_line is not None:
        for note in notes:
            on_line(note)
        on_line("$ " + command_text(shown))
    returncode, cancelled, tail = run_pip(command, env, on_line, cancel, mask=mask)
    ran = functools.partial(InstallResult, command=shown, log_tail=tail, torch_from_default_index=fell_back)
    if cancelled:
        return ran(False, True, returncode, "Cancelled: pip was stopped; run it again to finish.")
    if returncode != 0:
        return ran(False, False, returncode, failure_message(tail, returncode))
    return _verified(ran, returncode, verify_imports(python, target, modules, env))


def _index_unreachable(
    index: str, variant: str, platform: Optional[str], on_line: Optional[Callable[[str], None]]
) -> InstallResult:
    """The result when the chosen build's index (`index`, masked) did not answer: pip did not run."""
    message = unreachable_index_message(index, variant, platform)
    if on_line is not None:
        on_line(message)
    return InstallResult(
        False, False, None, message, (), outcome=Outcome.TORCH_INDEX_UNREACHABLE, unreachable_index=index
    )


def _verified(ran: Callable[..., InstallResult], returncode: int, verified: VerifyResult) -> InstallResult:
    """The result of a pip run that succeeded, by what the import check found (`ran`: the run's result maker)."""
    if verified.ok:
        message = "Installed; every module imports."
    else:
        message = "Installed, but these do not import: " + "; ".join(f"{m} ({why})" for m, why in verified.missing)
    outcome = Outcome.INSTALLED if verified.ok else Outcome.IMPORT_FAILED
    return ran(verified.ok, False, returncode, message, missing=verified.missing, verify=verified, outcome=outcome)
