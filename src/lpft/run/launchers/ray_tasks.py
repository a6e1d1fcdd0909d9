"""``--launcher ray``: one Ray task per cell, with the CPUs and GPUs the config asks for, on an
existing cluster (``launcher.ray.address``) or a local instance started for this launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpft.config import RunConfig
from lpft.optional import import_optional
from lpft.run.jobs import run_cell
from lpft.run.launchers.base import JobResult, Launcher, last_line


class RayLauncher(Launcher):
    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.ray = import_optional("ray", "ray")
        self.started_here = False

    def _connect(self) -> None:
        if self.ray.is_initialized():
            return
        options = self.config.launcher.ray
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if options.address is None and options.local_cpus is not None:
            kwargs["num_cpus"] = options.local_cpus
        self.ray.init(address=options.address, **kwargs)
        self.started_here = True

    def run_wave(self, run_dir: Path, keys: list[str]) -> list[JobResult]:
        self._connect()
        options = self.config.launcher.ray
        task = self.ray.remote(num_cpus=options.num_cpus, num_gpus=options.num_gpus)(run_cell)
        # Each task claims as its own Ray task id (``scheduler_job``): no two tasks, of this
        # launch or another, share an identity.
        refs = [
            task.options(max_retries=0).remote(str(run_dir), key, "", self.plain_config)
            for key in keys
        ]
        results = []
        for key, ref in zip(keys, refs, strict=True):
            try:
                results.append(JobResult(key, True, self.ray.get(ref)))
            except self.ray.exceptions.RayError as exc:
                results.append(JobResult(key, False, last_line(exc)))
        return results

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()
