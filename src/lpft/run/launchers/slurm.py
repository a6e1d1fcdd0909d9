"""``--launcher slurm``: one Slurm job per cell through submitit, as a job array per wave.

A job that Slurm preempts or times out is requeued by submitit (``checkpoint``) and resumes
from the cell's ``last.pt``; the requeued job takes its own claim back. With
``launcher.slurm.cluster: local`` the same jobs run as processes on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpft.config import SlurmOptions
from lpft.optional import import_optional
from lpft.run.jobs import run_cell
from lpft.run.launchers.base import JobResult, Launcher, last_line


class CellTask:
    """The callable submitit pickles into each job; ``checkpoint`` makes it requeue itself."""

    def __init__(self, run_dir: Path, plain_config: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.plain_config = plain_config

    def __call__(self, key: str) -> str:
        submitit = import_optional("submitit", "slurm")
        job = submitit.JobEnvironment().job_id
        return run_cell(self.run_dir, key, job=f"slurm:{job}", config=self.plain_config)

    def checkpoint(self, key: str) -> Any:
        submitit = import_optional("submitit", "slurm")
        return submitit.helpers.DelayedSubmission(self, key)


def executor_parameters(options: SlurmOptions) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": options.cpus_per_job,
        "gpus_per_node": options.gpus_per_job,
        "timeout_min": options.time_minutes,
        "slurm_array_parallelism": options.array_parallelism,
        "name": "lpft-cell",
    }
    if options.partition:
        parameters["slurm_partition"] = options.partition
    if options.mem_gb is not None:
        parameters["mem_gb"] = options.mem_gb
    if options.sbatch:
        parameters["slurm_additional_parameters"] = dict(options.sbatch)
    return parameters


class SlurmLauncher(Launcher):
    def run_wave(self, run_dir: Path, keys: list[str]) -> list[JobResult]:
        submitit = import_optional("submitit", "slurm")
        options = self.config.launcher.slurm
        executor = submitit.AutoExecutor(
            folder=Path(run_dir) / "jobs" / "%j", cluster=options.cluster
        )
        executor.update_parameters(**executor_parameters(options))
        jobs = executor.map_array(CellTask(run_dir, self.plain_config), keys)
        results = []
        for key, job in zip(keys, jobs, strict=True):
            try:
                results.append(JobResult(key, True, job.result()))
            except Exception as exc:  # submitit raises its own errors with the job's output
                results.append(JobResult(key, False, f"job {job.job_id}: {last_line(exc)}"))
        return results
