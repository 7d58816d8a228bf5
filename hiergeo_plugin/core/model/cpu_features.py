"""What this CPU computes natively (bf16, int8 dot products): whether a low-precision way is worth probing.

Read from /proc/cpuinfo's flags (x86 "flags", Arm "Features") or, on macOS, from sysctl's hw.optional flags. A
question about the machine, not about the model, so it lives apart from execution.py, which only reads the answers:
without native support torch emulates bf16 through fp32 and OpenVINO widens int8 to 16 bits, so the probe would
only spend time on those ways.
"""

from __future__ import annotations


def cpu_flags() -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); empty where there is none."""
    flags: set = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset(flags)


def _sysctl_flag(name: str) -> bool:
    """A macOS hw.optional flag (Apple silicon), False elsewhere."""
    try:
        import subprocess

        # A fixed argument list with the tool's absolute path, no shell, nothing from the user; bandit's B603 flags
        # every subprocess call for review, and this one is reviewed.
        out = subprocess.run(  # nosec B603
            ["/usr/sbin/sysctl", "-n", name], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() == "1"
    except Exception:
        return False


def native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (x86 avx512_bf16 or AMX, Arm bf16): then bf16 weights pay off.

    Without it torch emulates bf16 through fp32 and gets slower, so bf16 is never a candidate there.
    """
    flags = cpu_flags()
    if flags:
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return _sysctl_flag("hw.optional.arm.FEAT_BF16")  # macOS on Apple silicon (M2 and later)


def native_int8() -> bool:
    """Whether the CPU has int8 dot products (x86 VNNI or AMX, Arm dotprod/i8mm): then int8 weights pay off.

    Without them OpenVINO's int8 path widens to 16 bits and gains little over its fp32 kernels, so the probe
    would only spend time on it.
    """
    flags = cpu_flags()
    if flags:
        return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})
    return _sysctl_flag("hw.optional.arm.FEAT_DotProd")
