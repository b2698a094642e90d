"""A real OpenAI-compatible server on loopback for tests: llama-cpp-python's server on the embedded SmolLM2 GGUF."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sao.embedded_models import DEFAULT_MODEL, EMBEDDED_MODELS
from sao.models import gguf_location


def embedded_gguf(alias: str = DEFAULT_MODEL) -> Path:
    """The GGUF file the embedded model is converted from: the very weights the in-process engine runs."""
    return gguf_location(EMBEDDED_MODELS[alias])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LlamaServer:
    """``python -m llama_cpp.server`` as a subprocess that can be killed and started again on the same port."""

    gguf: Path
    port: int
    api_key: str
    log_path: Path
    alias: str = DEFAULT_MODEL
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        # n_batch = n_ubatch = 1 makes the server batch-invariant: it reuses the KV cache of
        # the previous request's common prefix and evaluates only the rest, and llama.cpp's
        # CPU kernels round differently for different batch shapes, so with bigger batches a
        # greedy output depends on which request came before (measured: 2 of 12 prompts
        # changed with the request order). One token at a time, every position is computed
        # the same way whatever is cached.
        # logits_all keeps every position's logits, which echo=True log-probs need.
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--api_key",
            self.api_key,
            "--n_ctx",
            "2048",
            "--n_batch",
            "1",
            "--n_ubatch",
            "1",
            "--n_threads",
            "2",
            "--n_threads_batch",
            "2",
            "--logits_all",
            "true",
            "--seed",
            "0",
            "--verbose",
            "false",
        ]

    def start(self, timeout: float = 120.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll /v1/models until it answers; fail with the server's log if it exits or never answers."""
        assert self.proc is not None
        request = urllib.request.Request(f"{self.base_url}/models", headers={"Authorization": f"Bearer {self.api_key}"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if json.load(response).get("data"):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama.cpp server did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: the server dies with requests in flight, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""
