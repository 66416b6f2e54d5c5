"""Bench job: does nothing, so throughput measures the scheduler, not the job."""


def run(task):
    return None
