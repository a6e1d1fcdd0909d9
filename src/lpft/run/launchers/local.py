"""``--launcher local``: each cell a job, one after another, in this process."""

from __future__ import annotations

from pathlib import Path

from lpft.run.jobs import run_cell
from lpft.run.launchers.base import JobResult, Launcher, last_line


class LocalLauncher(Launcher):
    def run_wave(self, run_dir: Path, keys: list[str]) -> list[JobResult]:
        results = []
        for key in keys:
            try:
                message = run_cell(run_dir, key, config=self.plain_config)
                results.append(JobResult(key, True, message))
            except Exception as exc:  # any cell's failure is recorded; the others go on
                results.append(JobResult(key, False, f"{type(exc).__name__}: {last_line(exc)}"))
        return results
