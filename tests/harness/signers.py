"""Real `python -m signer` processes for tests: short socket paths, start, kill, restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class SignerProcesses:
    """N signers on Unix sockets in a short temporary directory (socket paths are limited to ~107 bytes)."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="hps-"))
        self.paths = [str(self.dir / f"s{i}.sock") for i in range(count)]
        self.env = env
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen | None] = [None] * count

    @property
    def sockets_setting(self) -> str:
        return ",".join(self.paths)

    def start(self, index: int | None = None) -> SignerProcesses:
        for i in range(len(self.paths)) if index is None else [index]:
            log = open(self.log_dir / f"signer-{i}.log", "ab")
            self.processes[i] = subprocess.Popen(
                [sys.executable, "-m", "signer", "--socket", self.paths[i]], cwd=REPO, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        for i in range(len(self.paths)) if index is None else [index]:
            self._wait_listening(i)
        return self

    def _wait_listening(self, index: int, timeout: float = 20.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[index]
            if process.poll() is not None:
                raise RuntimeError(f"signer {index} exited with {process.returncode}")
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(self.paths[index])
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"signer {index} does not listen")

    def kill(self, index: int) -> None:
        """SIGKILL: the signer dies with whatever it had in flight, its socket file left behind."""
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("signer-*.log")))


def signer_environment(base: dict[str, str], master_key_file: Path) -> dict[str, str]:
    return {**base, "SIGNING_MASTER_KEY_FILE": str(master_key_file), "LOG_LEVEL": "INFO"}
