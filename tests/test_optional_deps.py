"""The package on a machine without its optional dependencies (the lent GPU has no rawpy, no
PyAV, no demosaicnet package): everything imports, and what needs a missing package says so in
one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("rawpy", "av", "demosaicnet", "colour_demosaicing", "numpy2dng")

SCRIPT = textwrap.dedent("""
    import sys
    for name in {blocked!r}:
        sys.modules[name] = None  # "import name" now raises ImportError
    import importlib, pkgutil
    import burstjdd
    failed = []
    for mod in pkgutil.walk_packages(burstjdd.__path__, "burstjdd."):
        if mod.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception as exc:
            failed.append(f"{{mod.name}}: {{type(exc).__name__}}: {{exc}}")
    print("IMPORT-FAILURES", failed)
    from burstjdd.errors import BurstJDDError
    from burstjdd.raw.camera import read_raw_frame
    open("x.dng", "wb").write(b"not a raw file")
    try:
        read_raw_frame("x.dng")
    except BurstJDDError as exc:
        print("RAWPY", type(exc).__name__, exc)
    from burstjdd.synth.sources import open_source
    open("x.mp4", "wb").write(b"not a video")
    try:
        open_source("video:x.mp4")
    except BurstJDDError as exc:
        print("AV", type(exc).__name__, exc)
    from burstjdd.cli import main
    print("CLI", main(["info", "x.dng"]))
""")


def test_everything_imports_and_missing_packages_are_one_line_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=BLOCKED)],
                          check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "IMPORT-FAILURES []" in out, out
    raw_line = next(line for line in out.splitlines() if line.startswith("RAWPY"))
    assert "needs rawpy" in raw_line and "pip install rawpy" in raw_line
    av_line = next(line for line in out.splitlines() if line.startswith("AV"))
    assert "PyAV" in av_line
    assert "CLI 2" in out  # the command line turns it into one error line, status 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("burstjdd info")]
    assert len(errors) == 1 and "needs rawpy" in errors[0]
