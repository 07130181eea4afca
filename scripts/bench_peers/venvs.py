"""The peers' own venvs: their pins clash with ours (MLServer wants fastapi < 0.116 and full mlflow)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from scripts import local_stack as stack

PEERS = ("mlserver", "litserve", "bentoml")  # each with requirements-<peer>.txt beside this file
PEERS_DIR = Path(__file__).resolve().parent
VENVS = stack.REPO / ".state" / "bench" / "venvs"
INSTALL_TIMEOUT_SECONDS = 1800


def requirements(peer: str) -> Path:
    return PEERS_DIR / f"requirements-{peer}.txt"


def fingerprint(peer: str) -> str:
    """What the venv was made from: the requirements file and the Python that made it."""
    return hashlib.sha256(requirements(peer).read_bytes() + sys.version.encode()).hexdigest()


def peer_venv(peer: str, root: Path = VENVS) -> Path:
    """The bin/ folder of `peer`'s venv, made anew (with the Python running the bench, the repo venv's
    python3.11) unless it was made from the same requirements file."""
    venv = root / peer
    stamp = venv / "requirements.sha256"
    if stamp.is_file() and stamp.read_text() == fingerprint(peer):
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    print(f"making the {peer} venv ({venv}, from {requirements(peer).name}) ...", flush=True)
    # From a venv, `-m venv` bases the new one on the same interpreter the repo venv was made from.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(requirements(peer)),
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    if install.returncode != 0:
        raise SystemExit(f"pip could not install {requirements(peer)}:\n{install.stderr[-3000:]}")
    stamp.write_text(fingerprint(peer))
    return venv / "bin"
