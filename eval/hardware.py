"""Which machine ran a job, in words, for reports and benchmarks.

Kept apart from the report so that benchmarks on a bare GPU box need not import ROUGE.
"""

from __future__ import annotations

import os
import platform


def hardware() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"CPU only: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
