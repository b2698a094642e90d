"""Run every benchmark in turn; each writes benchmarks/results/<name>.json and its table in docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "model_load.py",
    "generate_throughput.py",
    "llamacpp_decode.py",
    "judge_throughput.py",
    "train_throughput.py",
    "judge_agreement.py",
    "batch_invariance.py",
    "e2e_iteration.py",
    "grpo_rollouts.py",
    "sar_grpo.py",  # about an hour on 2 cores
    "rain_decode.py",  # about 12 minutes on 2 cores
]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
