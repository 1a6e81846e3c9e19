"""Closed-loop episodes fanned out over a Ray cluster (optional: ``pip install .[cluster]``).

    liquid-controller evaluate --model models/cfc.json --scenes ... --ray auto        # local or running
    liquid-controller benchmark --models ... --ray ray://head-node:10001              # a remote cluster

Each episode is one Ray task (``num_cpus=1``) running the same worker function as the local process
pool (evaluate.py ``_worker``): its own simulator world, a fresh Controller, the world reset by
(scene, seed). Episodes are independent, so the records equal those of a local run episode by episode
(the timing fields aside); they come back in job order.

``address``: ``'auto'`` joins the cluster this machine belongs to (``ray start`` / ``RAY_ADDRESS``) and
starts a local Ray with ``local_cpus`` CPUs when there is none; anything else is passed to
``ray.init(address=...)`` (``ray://host:10001``, ``host:6379``). Every node must see the model file and
the scenes at the same paths (a shared file system or the same checkout), and plots are written on the
node that ran the episode. Ray itself retries an unreachable address for a long time (minutes) before
it gives up; check the address with ``ray status --address ...`` first.
"""
from __future__ import annotations

from liquid_controller.errors import InputError

__all__ = ['run_on_ray']


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError('ray', 'not installed', 'the Ray fan-out needs the cluster extra: '
                                                 'pip install .[cluster] (or pip install ray)') from None
    return ray


def _connect(ray, address, local_cpus):
    """Join or start Ray; returns True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False)
    if address == 'auto':
        try:
            ray.init(address='auto', **quiet)
        except ConnectionError:          # no running cluster: a local one for this run
            ray.init(num_cpus=max(1, int(local_cpus)), **quiet)
    else:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError) as exc:
            raise InputError('ray', address, f'cannot connect to the Ray cluster: {exc}') from None
    return True


def run_on_ray(worker, driver, config, jobs, address, out_dir, label, bar=None, local_cpus=2):
    """Run ``worker(driver, config, [job], out_dir, label)`` for every job as a Ray task; returns the
    per-job results in job order (the ``done`` list of evaluate.py's local runners)."""
    if not isinstance(address, str) or not address:
        raise InputError('ray', address, "expected 'auto' or a Ray cluster address")
    ray = _ray()
    started = _connect(ray, address, local_cpus)
    try:
        task = ray.remote(num_cpus=1)(worker)
        refs = {task.remote(driver, config, [job], out_dir, label): i for i, job in enumerate(jobs)}
        done = [None] * len(jobs)
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            i = refs.pop(ready[0])
            done[i] = ray.get(ready[0])[0]
            if bar is not None:
                record = done[i][0]
                bar.set_postfix(scene=record['scene'], laps=f'{record["laps"]:.2f}', end=record['end_reason'])
                bar.update(config.time_limit)
        return done
    finally:
        if started:
            ray.shutdown()
