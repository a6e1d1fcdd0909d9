"""What every launcher does: run a wave of cell jobs and report how each ended."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from lpft.config import RunConfig


@dataclass
class JobResult:
    key: str
    ok: bool
    # "done", "done already", "held by HOST pid N" or, when not ok, why the job failed.
    message: str


class Launcher(ABC):
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        # Jobs get the launching configuration: same numbers as config.yaml (checked), but
        # this launch's lease, tracking and launcher settings.
        self.plain_config = config.to_plain()

    @abstractmethod
    def run_wave(self, run_dir: Path, keys: list[str]) -> list[JobResult]:
        """Run one job per cell key and wait for all of them."""

    def close(self) -> None:
        """Give back whatever the launcher started."""
        return None


def last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
