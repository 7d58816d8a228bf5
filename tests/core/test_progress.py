"""Command-line progress (core/progress.py): one updating line on a terminal, clean lines anywhere else.

Why: `make demo > log` wrote every progress update into the file with carriage returns, so a log line held the
same update several times. Both cases are run for real: a child process writes to a pipe, and to a pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from hiergeo_plugin.core.progress import ConsoleReporter

    reporter = ConsoleReporter("job", stream=sys.stderr)
    for i in range(1001):
        reporter.progress(i / 1000)
        if i in (250, 500):
            reporter.info(f"stage at {{i}}")
    reporter.warning("almost done")
    reporter.close()
    print("isatty", sys.stderr.isatty(), file=sys.stderr)
    """
).format(root=str(ROOT))


def _run_with_pipe() -> str:
    proc = subprocess.run([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True)
    return proc.stdout.decode()


def _run_with_pty() -> str:
    master, slave = pty.openpty()
    import tty

    tty.setraw(slave)  # no "\n" -> "\r\n" translation: what the child writes is what is read
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_a_pipe_gets_one_clean_line_per_step_and_per_message():
    out = _run_with_pipe()
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[-1] == "isatty False"
    progress = [line for line in lines if line.startswith("job: ")]
    assert progress == [f"job: {p}%" for p in range(10, 101, 10)]  # each step once, in order
    assert "stage at 250" in lines and "stage at 500" in lines and "warning: almost done" in lines
    assert out.count("almost done") == 1  # not a second time from logging's last-resort handler
    assert lines.index("job: 20%") < lines.index("stage at 250") < lines.index("job: 30%")


def test_a_terminal_gets_a_single_updating_line():
    out = _run_with_pty()
    assert out.rstrip("\n").splitlines()[-1] == "isatty True"
    # Log lines are printed above the bar; the bar itself never adds a line: messages + the final newline.
    assert out.count("\n") == 3 + 1 + 1, repr(out[-300:])
    assert out.count("\r") > 50  # updated in place
    lines = out.split("\n")
    assert [ln.rsplit("\r", 1)[-1].strip() for ln in lines if "stage at" in ln] == ["stage at 250", "stage at 500"]
    final = lines[-3].rsplit("\r", 1)[-1]  # the bar as it was left on screen
    assert final.startswith("job: [") and final.rstrip().endswith("100%") and "." not in final.split("]")[0]
