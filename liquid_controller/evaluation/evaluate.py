"""Closed-loop evaluation: drive a policy in the embedded simulator through the runtime Controller.

The loop is the ROS-free fast path of what the live node does. Each camera period the simulator gives
an :class:`~liquid_controller.sim.Observation`; its image, IMU samples (as a runtime ``ImuWindow``),
odometry speed and range go through :meth:`Controller.step` exactly as the controller node feeds them
(frame header stamp, the IMU samples since the previous frame, ``MeasuredState``), and the filtered
command goes back to ``world.step``. The same :class:`~liquid_controller.runtime.controller.Controller`
class the node uses, configured from the node's parameter file (config/controller.yaml), so evaluation
measures what the robot would do.

Anything that satisfies the :class:`Driver` interface can be evaluated by the same loop: the model
(:class:`ControllerDriver`) and the privileged expert (:class:`ExpertDriverAdapter`), which tests the loop
independently of model quality.

Episode end (whichever comes first; ``end_reason`` in each episode's record):
- ``laps``: the target number of laps was driven (progress along the centre line);
- ``time_limit``: ``seconds_per_lap * laps`` of simulated time passed (default 90 s per lap, where the
  expert needs about 45 s), or ``max_seconds`` when given;
- ``collision``: the rover touched an obstacle (``stop_on_collision``, on by default);
- ``off_road``: the rover's centre left the road surface, i.e. ``|lateral offset| > lane_width / 2 +
  shoulder_width`` (``stop_off_road``, on by default). A lane departure (a wheel over the lane line)
  does not end the episode: departures are counted.

Deterministic for a seed: the world's sensor noise, the optional added image noise and a fresh
Controller per episode depend only on (scene, seed); inference runs on one CPU thread. With
``random_start`` and ``disturbance_rate_hz`` the start pose and the command pushes are drawn from
(scene, seed) too (evaluation/trials.py), so seeds become separate trials. Episodes are
independent, so ``workers`` > 1 spreads them over processes with the same records.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liquid_controller.config_base import check_known_keys, config_to_dict
from liquid_controller.errors import InputError
from liquid_controller.validation import check_number

DEFAULT_SCENES = ('summer', 'fall', 'winter', 'night')
NOISE_SEED_SALT = 0x1A9E  # keeps the added image noise stream apart from the world's own noise


# ----------------------------------------------------------------------------------------- config

@dataclass
class EvalConfig:
    """What to evaluate: scenes, seeds, laps, end conditions and added input noise.

    scenes: shipped scene names or paths to scene YAML files. laps: target laps per episode (> 0).
    seeds: non-negative ints (one episode per scene and seed). image_noise_std: standard deviation of
    zero-mean Gaussian noise added to every camera frame, in 8-bit intensity units (0..255), before the
    policy sees it (0 = none). seconds_per_lap: time limit per target lap (s). max_seconds: explicit
    time limit (s) overriding ``seconds_per_lap * laps``. start: start position as a lap fraction.
    stop_on_collision / stop_off_road: end an episode on a collision / when leaving the road.
    plots: write a trajectory PNG per episode. random_start: each (scene, seed) starts at its own
    lap fraction, slightly off the centre line and askew (evaluation/trials.py; ``start`` is then
    unused). disturbance_rate_hz: random yaw-rate pushes per second added to the applied command
    (0 = none). With either, seeds are separate trials rather than sensor-noise repeats.
    """
    scenes: tuple = DEFAULT_SCENES
    laps: float = 1.0
    seeds: tuple = (0,)
    image_noise_std: float = 0.0
    seconds_per_lap: float = 90.0
    max_seconds: float | None = None
    start: float = 0.0
    stop_on_collision: bool = True
    stop_off_road: bool = True
    plots: bool = True
    random_start: bool = False
    disturbance_rate_hz: float = 0.0

    def __post_init__(self):
        if isinstance(self.scenes, str):
            self.scenes = tuple(s.strip() for s in self.scenes.split(',') if s.strip())
        self.scenes = tuple(str(s) for s in self.scenes)
        if not self.scenes:
            raise InputError('scenes', self.scenes, 'give at least one scene')
        for scene in self.scenes:
            check_scene(scene)
        self.laps = _positive('laps', self.laps)
        if isinstance(self.seeds, (int, np.integer)) and not isinstance(self.seeds, bool):
            self.seeds = (int(self.seeds),)
        self.seeds = tuple(self.seeds)
        if not self.seeds:
            raise InputError('seeds', self.seeds, 'give at least one seed')
        for s in self.seeds:
            if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 0:
                raise InputError('seeds', s, 'every seed must be a non-negative integer')
        self.seeds = tuple(int(s) for s in self.seeds)
        if len(set(self.seeds)) != len(self.seeds):
            raise InputError('seeds', self.seeds, 'seeds must be distinct')
        self.image_noise_std = _non_negative('image_noise_std', self.image_noise_std)
        self.seconds_per_lap = _positive('seconds_per_lap', self.seconds_per_lap)
        if self.max_seconds is not None:
            self.max_seconds = _positive('max_seconds', self.max_seconds)
        start = _non_negative('start', self.start)
        if start >= 1.0:
            raise InputError('start', self.start, 'must be a lap fraction in [0, 1)')
        self.start = start
        self.disturbance_rate_hz = _non_negative('disturbance_rate_hz', self.disturbance_rate_hz)
        for name in ('stop_on_collision', 'stop_off_road', 'plots', 'random_start'):
            if not isinstance(getattr(self, name), bool):
                raise InputError(name, getattr(self, name), 'must be true or false')

    @property
    def time_limit(self):
        """Simulated seconds after which an episode ends."""
        return self.max_seconds if self.max_seconds is not None else self.seconds_per_lap * self.laps

    def to_dict(self):
        """JSON-able dict (tuples become lists)."""
        d = config_to_dict(self)
        d['scenes'] = list(self.scenes)
        d['seeds'] = list(self.seeds)
        return d

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; unknown keys are an InputError naming them."""
        check_known_keys(d, {f.name for f in dataclasses.fields(cls)}, 'eval config')
        d = dict(d)
        for key in ('scenes', 'seeds'):
            if key in d and isinstance(d[key], list):
                d[key] = tuple(d[key])
        return cls(**d)


def _positive(name, value):
    return check_number(name, value, 0.0, low_open=True)


def _non_negative(name, value):
    return check_number(name, value, 0.0)


def check_scene(scene):
    """Raise InputError naming ``scene`` unless it is a shipped scene or an existing YAML file."""
    from liquid_controller.sim import list_scenes
    known = list_scenes()
    if scene in known:
        return
    path = Path(scene)
    if path.suffix in ('.yaml', '.yml') and path.is_file():
        return
    raise InputError('scene', scene, f'unknown scene; shipped scenes: {", ".join(known)} '
                                     f'(or a path to a scene .yaml file)')


def parse_list(text, name, kind=str):
    """Parse a comma-separated command-line list ('summer,fall' or '0,1,2') into a tuple of ``kind``;
    a bad item is an InputError naming ``name`` and the item."""
    items = [s.strip() for s in str(text).split(',') if s.strip()]
    if not items:
        raise InputError(name, text, 'expected a comma-separated list with at least one item')
    out = []
    for item in items:
        try:
            out.append(kind(item))
        except (TypeError, ValueError):
            raise InputError(name, item, f'not a valid {kind.__name__}') from None
    return tuple(out)


# ----------------------------------------------------------------------------------------- drivers

class Driver:
    """What the evaluation loop drives. ``reset(world, seed)`` starts an episode (after
    ``world.reset``); ``act(observation, truth) -> (v, w)`` gives the command for one camera frame;
    ``episode_stats()`` returns JSON-able statistics of the episode so far; ``needs_image`` says whether
    the world must render the camera (then ``image_size`` (H, W) sets the camera size). A model uses
    only the observation; the expert uses the truth."""
    name = 'driver'
    needs_image = True

    def reset(self, world, seed):  # pragma: no cover - interface
        raise NotImplementedError

    def act(self, observation, truth):  # pragma: no cover - interface
        raise NotImplementedError

    def episode_stats(self):
        return {}

    def info(self):
        """Static description of the driver (model name, core, sizes)."""
        return {'name': self.name}


class ControllerDriver(Driver):
    """A model file driven through the runtime Controller, fed exactly as the controller node feeds it.

    ``model``: a LoadedModel (runtime.model_file.load_model) or a model name/path. ``settings``: a
    :class:`liquid_controller.runtime.settings.Settings` (None: the node's parameter file,
    config/controller.yaml). The simulator's sensor readings go through the node's frame assembler.
    A fresh Controller is built for every episode so that episodes do not depend on each other's order.

    ``use_filter`` False drives on the network's nominal command alone (before the controller's rate
    limit and the safety filter); the filter still runs in shadow, so its interventions are counted
    as if it were on. Braking outputs (bad input, watchdog) are applied either way. ``lane_from_scene``
    (default) sets the lane barrier's half-width for each episode from the scene and the robot,
    ``lane_width / 2 - rover half-width`` (what the rover's centre may use), instead of the parameter
    file's fixed ``safety.lane_half_width``.
    """

    def __init__(self, model, settings=None, use_filter=True, lane_from_scene=True):
        from liquid_controller.runtime.policy_backend import load_runtime_model
        from liquid_controller.runtime.settings import load_settings
        self.settings = settings if settings is not None else load_settings()
        # torch or onnx, as the settings' 'backend' says (a LoadedModel of that backend passes through)
        self.model = load_runtime_model(model, self.settings['backend'])
        self.name = self.model.card.name
        self.use_filter = bool(use_filter)
        self.lane_from_scene = bool(lane_from_scene)
        self.controller = None
        self._reset_stats()

    @property
    def image_size(self):
        return self.model.image_size

    def info(self):
        card = self.model.card
        policy = self.model.policy
        training = card.training or {}
        return {
            'name': card.name,
            'path': str(self.model.json_path),
            'core': str(policy.config.core),
            'liquid_neurons': int(policy.liquid_neurons),
            'parameters': int(policy.num_parameters()),
            'untrained': bool(card.untrained),
            'train_seconds': training.get('train_seconds'),
            'train_steps': training.get('steps'),
            'train_batch': _nested(training, 'config', 'train', 'batch_size'),
            'train_seq_len': _nested(training, 'config', 'train', 'seq_len'),
            'filter': 'on' if self.use_filter else 'off (shadow)',
            'lane_geometry': 'scene' if self.lane_from_scene else 'parameter file',
        }

    def reset(self, world, seed):
        from liquid_controller.runtime.controller import Controller
        from liquid_controller.evaluation.lane_geometry import scene_safety_config
        safety = self.settings.safety_config()
        if self.lane_from_scene:
            safety = scene_safety_config(safety, world)
        self.lane_half_width = safety.lane_half_width
        self.controller = Controller(self.model, self.settings.controller_config(), safety)
        self.controller.start(now=world.time)
        self._now = world.time
        # sim time is the arrival clock too: on a live robot readings arrive at their stamps
        self.assembler = self.settings.frame_assembler(clock=lambda: self._now)
        self._reset_stats()

    def _reset_stats(self):
        self._statuses = {}
        self._interventions = 0
        self._fallbacks = 0
        self._filtered = 0
        self._step_s = []
        self._policy_s = []
        self._ood = []            # (sim time s, OOD score, rover in lane) per step
        from liquid_controller.evaluation.interventions import InterventionCounter
        self._rows = InterventionCounter()

    def act(self, observation, truth):
        from liquid_controller.runtime.controller import MeasuredState
        imu, odom, stamp = observation.imu, observation.odometry, observation.stamp
        self._now = stamp
        asm = self.assembler
        for s, g, a in zip(imu.stamps, imu.angular_velocity, imu.linear_acceleration):
            asm.add_imu(s, g, a)
        # the node's defaults: use_odometry true (odom twist.linear.x), use_range false unless the
        # world has a range sensor, in which case the reading is given as the node would with use_range.
        asm.set_reading('odom', odom.stamp, float(odom.v))
        if observation.range is not None:
            asm.set_reading('range', stamp, observation.range)
        # sim time is the steady clock here: frames are never stale, as on a live robot at 30 Hz
        try:
            inputs = asm.assemble(stamp)
        except InputError as exc:       # clock skew: not in this simulator, handled as the node does
            out = self.controller.reject(str(exc), now=stamp)
        else:
            out = self.controller.step(observation.image, stamp, inputs.imu,
                                       MeasuredState(speed=inputs.speed, range=inputs.range), now=stamp)
        self._statuses[out.status] = self._statuses.get(out.status, 0) + 1
        cert = out.certificate
        if cert is not None:
            self._filtered += 1
            self._interventions += bool(cert.intervened)
            self._fallbacks += bool(cert.fallback)
        self._rows.add(cert)
        if 'total' in out.timings:
            self._step_s.append(out.timings['total'])
        if 'policy' in out.timings:
            self._policy_s.append(out.timings['policy'])
        self._ood.append((stamp, out.ood_score, bool(truth.in_lane)))
        self.last_output = out
        if not self.use_filter and not out.safe:
            return out.nominal  # the filter ran in shadow (counted above); the network drives
        return out.command

    def episode_stats(self):
        return {
            'controller_statuses': dict(sorted(self._statuses.items())),
            'filter_steps': self._filtered,
            'filter_interventions': self._interventions,
            'filter_intervention_rate': self._interventions / self._filtered if self._filtered else 0.0,
            'filter_fallbacks': self._fallbacks,
            'filter_rows': self._rows.to_dict(),
            'filter_applied': self.use_filter,
            'lane_half_width': self.lane_half_width,
            'step_time_us': _percentiles(self._step_s),
            'policy_time_us': _percentiles(self._policy_s),
            'ood': ood_episode_stats(self._ood),
            '_step_s': list(self._step_s),  # raw, pooled by the caller then dropped
        }


def ood_episode_stats(samples):
    """The OOD monitor over one episode from (sim time, score, in lane) per step: summary (replay's
    ood_summary), when the score first went above 1 and when the rover first left its lane (s from the
    episode start), and ``lead_s``: how long before that departure the score crossed 1 (None without a
    departure or without a crossing before it)."""
    from liquid_controller.runtime.ood import ood_summary
    if not samples:
        return {**ood_summary([]), 'first_over_s': None, 'first_departure_s': None, 'lead_s': None}
    t = np.array([x[0] for x in samples], dtype=np.float64)
    score = np.array([x[1] for x in samples], dtype=np.float64)
    in_lane = np.array([x[2] for x in samples], dtype=bool)
    t = t - t[0]
    over = np.flatnonzero(score > 1.0)
    out_lane = np.flatnonzero(~in_lane)
    first_over = float(t[over[0]]) if over.size else None
    first_departure = float(t[out_lane[0]]) if out_lane.size else None
    lead = None
    if first_departure is not None:
        before = over[t[over] <= first_departure] if over.size else over
        lead = float(first_departure - t[before[0]]) if before.size else None
    return {**ood_summary(score), 'first_over_s': first_over, 'first_departure_s': first_departure,
            'lead_s': lead}


class ExpertDriverAdapter(Driver):
    """The privileged pure-pursuit expert behind the Driver interface (uses the ground truth, so its
    result tests the evaluation loop, not a model). ``kwargs`` go to ExpertDriver."""
    needs_image = False

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.name = 'expert'
        self.expert = None

    def info(self):
        return {'name': 'expert', 'core': 'expert (privileged)', 'liquid_neurons': 0, 'parameters': 0,
                'untrained': False}

    def reset(self, world, seed):
        from liquid_controller.sim import ExpertDriver
        self.expert = ExpertDriver(world.track, dt=world.frame_period, seed=seed, **self.kwargs)

    def act(self, observation, truth):
        return np.asarray(self.expert.command(truth), dtype=np.float64)


def _nested(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _percentiles(seconds):
    if not seconds:
        return {'p50': None, 'p95': None, 'max': None, 'n': 0}
    us = np.asarray(seconds) * 1e6
    return {'p50': float(np.percentile(us, 50)), 'p95': float(np.percentile(us, 95)),
            'max': float(us.max()), 'n': int(us.size)}


# ----------------------------------------------------------------------------------------- the loop

@dataclass
class EpisodeResult:
    """One closed-loop episode: the metrics summary plus driver statistics (``record``), and the
    EpisodeMetrics itself (for plots)."""
    record: dict
    metrics: object = field(repr=False, default=None)
    step_seconds: list = field(repr=False, default_factory=list)


def add_image_noise(image, std, rng):
    """uint8 (H,W,3) image plus zero-mean Gaussian noise of ``std`` intensity units, clipped to 0..255."""
    noisy = image.astype(np.float32) + rng.normal(0.0, std, size=image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def run_closed_loop(world, driver, scene, seed, config, on_step=None):
    """Drive ``driver`` in ``world`` for one episode of ``config`` (EvalConfig) on ``scene`` with
    ``seed``. Returns an :class:`EpisodeResult` (see the module docstring for the end conditions).
    ``on_step(sim_seconds)`` is called after every simulator step (progress bars)."""
    from liquid_controller.sim import EpisodeMetrics
    from liquid_controller.evaluation.trials import CommandDisturbance, episode_start
    start = episode_start(scene, seed, config.random_start, config.start)
    disturbance = CommandDisturbance(scene, seed, config.disturbance_rate_hz)
    observation = world.reset(scene=scene, seed=seed, **start)
    truth = world.last_truth
    driver.reset(world, seed)
    noise_rng = np.random.default_rng([int(seed), NOISE_SEED_SALT]) if config.image_noise_std > 0 else None
    metrics = EpisodeMetrics(world.track, world.track_map, target_laps=config.laps,
                             scene_name=world.scene.name)
    road_half_width = world.track.lane_width / 2 + world.scene.track.shoulder_width
    limit = config.time_limit
    wall0 = time.perf_counter()
    end_reason = None
    while True:
        seen = observation
        if noise_rng is not None and observation.image is not None:
            seen = dataclasses.replace(observation,
                                       image=add_image_noise(observation.image, config.image_noise_std,
                                                             noise_rng))
        command = np.asarray(driver.act(seen, truth), dtype=np.float64).reshape(2)
        metrics.update(truth, command)
        if truth.progress_laps >= config.laps:
            end_reason = 'laps'
        elif config.stop_on_collision and truth.collision:
            end_reason = 'collision'
        elif config.stop_off_road and abs(truth.lateral_offset) > road_half_width:
            end_reason = 'off_road'
        elif truth.stamp >= limit - 1e-9:
            end_reason = 'time_limit'
        if end_reason:
            break
        result = world.step(disturbance.apply(command, truth.stamp))
        observation, truth = result.observation, result.truth
        if on_step is not None:
            on_step(world.frame_period)
    wall = time.perf_counter() - wall0
    record = dict(metrics.summary())
    stats = driver.episode_stats()
    step_seconds = stats.pop('_step_s', [])
    record.update(seed=int(seed), image_noise_std=config.image_noise_std, end_reason=end_reason,
                  completed=end_reason == 'laps', target_laps=config.laps, wall_s=wall,
                  realtime_factor=record['duration_s'] / wall if wall > 0 else None,
                  start=start, disturbance_pushes=disturbance.pushes,
                  by_corner=metrics.corner_breakdown(), **stats)
    return EpisodeResult(record=record, metrics=metrics, step_seconds=step_seconds)


def _world_for(driver):
    from liquid_controller.sim import DrivingWorld, WorldConfig
    if driver.needs_image:
        h, w = driver.image_size
        return DrivingWorld(WorldConfig(camera_height=int(h), camera_width=int(w)))
    return DrivingWorld(WorldConfig(render=False))


def _plot_episode(result, driver_name, config, out_dir, label):
    """Write the trajectory PNG of one episode; returns its path."""
    r = result.record
    folder = Path(out_dir) / 'plots'
    folder.mkdir(parents=True, exist_ok=True)
    noise = f'_noise{config.image_noise_std:g}' if config.image_noise_std else ''
    path = folder / f'{label or driver_name}_{r["scene"]}_seed{r["seed"]}{noise}.png'
    shown = f', image noise {config.image_noise_std:g}' if noise else ''
    result.metrics.plot(path, title=(f'{driver_name} in {r["scene"]} (seed {r["seed"]}{shown}): '
                                     f'{r["laps"]:.2f}/{config.laps:g} laps, end: {r["end_reason"]}, '
                                     f'departures {r["lane_departures"]}'))
    return str(path)


def _run_jobs(driver, config, jobs, world, out_dir, label, bar=None):
    """Run episodes ``jobs`` [(scene, seed)] one after the other in ``world``; returns
    [(record, step_seconds, plot path or None)] in job order."""
    done = []
    for scene, seed in jobs:
        base = bar.n if bar is not None else 0.0
        budget_end = base + config.time_limit  # bar position at the end of this episode
        on_step = None if bar is None else (lambda dt: bar.update(max(min(dt, budget_end - bar.n), 0.0)))
        result = run_closed_loop(world, driver, scene, seed, config, on_step=on_step)
        plot = _plot_episode(result, driver.name, config, out_dir, label) \
            if out_dir is not None and config.plots else None
        done.append((result.record, result.step_seconds, plot))
        if bar is not None:
            r = result.record
            bar.set_postfix(scene=r['scene'], laps=f'{r["laps"]:.2f}', end=r['end_reason'])
            # an episode that ended early gives the rest of its time budget back to the bar
            bar.update(max(budget_end - bar.n, 0.0))
    return done


def _worker(driver, config, jobs, out_dir, label):
    """Process-pool entry: its own world, one inference thread, the given episodes."""
    try:   # the onnx backend runs without torch; its session is single-threaded already
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    world = _world_for(driver)
    try:
        return _run_jobs(driver, config, jobs, world, out_dir, label)
    finally:
        world.close()


def _run_parallel(driver, config, jobs, workers, out_dir, label, bar):
    """Episodes spread over ``workers`` processes (spawned: MuJoCo's GL context and torch threads must
    not be forked). Each episode is independent of the others (fresh Controller, world reset by seed),
    so the records equal those of a serial run; results come back in job order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    chunks = [jobs[i::workers] for i in range(workers) if jobs[i::workers]]
    index = {job: i for i, job in enumerate(jobs)}
    done = [None] * len(jobs)
    if hasattr(driver, 'controller'):
        driver.controller = None  # nothing stateful travels to the workers
    with ProcessPoolExecutor(len(chunks), mp_context=multiprocessing.get_context('spawn')) as pool:
        futures = {pool.submit(_worker, driver, config, chunk, out_dir, label): chunk for chunk in chunks}
        for future in as_completed(futures):
            for job, item in zip(futures[future], future.result()):
                done[index[job]] = item
                if bar is not None:
                    bar.set_postfix(scene=item[0]['scene'], laps=f'{item[0]["laps"]:.2f}',
                                    end=item[0]['end_reason'])
                    bar.update(config.time_limit)
    return done


def evaluate_driver(driver, config, out_dir=None, progress=True, world=None, label=None, workers=1,
                    ray=None):
    """Evaluate ``driver`` on every scene and seed of ``config``.

    Returns a JSON-able report: ``model`` (driver.info()), ``config``, ``episodes`` (one record per
    scene and seed), ``scenes`` (aggregates per scene), ``speed`` (simulated vs wall seconds). With
    ``out_dir``, writes ``evaluation.json`` (or ``<label>.json``) and trajectory plots under ``plots/``.
    ``workers`` > 1 runs episodes in that many processes (same records as a serial run; the driver must
    be picklable, which ControllerDriver and ExpertDriverAdapter are). ``ray`` ('auto' or a cluster
    address) runs every episode as a Ray task instead (evaluation/ray_cluster.py; a local Ray started
    for the call gets ``workers`` CPUs).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InputError('workers', workers, 'must be an integer >= 1')
    jobs = [(scene, seed) for scene in config.scenes for seed in config.seeds]
    local_cpus = workers
    workers = min(workers, len(jobs))
    out_dir = Path(out_dir) if out_dir is not None else None
    bar = None
    if progress:
        # in simulated seconds, so that a long multi-lap episode shows progress while it runs
        from tqdm import tqdm
        bar = tqdm(total=round(len(jobs) * config.time_limit, 1), unit='sim s',
                   desc=f'{label or driver.name}',
                   bar_format='{l_bar}{bar}| {n:.0f}/{total:.0f} sim s [{elapsed}<{remaining}]{postfix}')
    t0 = time.perf_counter()
    try:
        if ray is not None:
            from liquid_controller.evaluation.ray_cluster import run_on_ray
            if hasattr(driver, 'controller'):
                driver.controller = None  # nothing stateful travels to the tasks
            done = run_on_ray(_worker, driver, config, jobs, ray, out_dir, label, bar, local_cpus=local_cpus)
        elif workers > 1:
            done = _run_parallel(driver, config, jobs, workers, out_dir, label, bar)
        else:
            own_world = world is None
            world = world or _world_for(driver)
            try:
                done = _run_jobs(driver, config, jobs, world, out_dir, label, bar)
            finally:
                if own_world:
                    world.close()
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    episodes = [record for record, _, _ in done]
    plots = [plot for _, _, plot in done if plot]
    steps_by_scene = {}
    for record, step_seconds, _ in done:
        steps_by_scene.setdefault(record['scene'], []).extend(step_seconds)
    scenes = {name: aggregate([e for e in episodes if e['scene'] == name], steps_by_scene.get(name, []))
              for name in dict.fromkeys(e['scene'] for e in episodes)}
    sim_s = float(sum(e['duration_s'] for e in episodes))
    wall_s = float(sum(e['wall_s'] for e in episodes))
    report = {
        'model': driver.info(),
        'config': config.to_dict(),
        'episodes': episodes,
        'scenes': scenes,
        # per process: simulated seconds per wall second inside the episode loops; elapsed: the whole
        # call (world and model set-up, plots, all workers) for the throughput
        'speed': {'sim_s': sim_s, 'wall_s': wall_s,
                  'sim_seconds_per_wall_second': sim_s / wall_s if wall_s > 0 else None,
                  'workers': workers, 'ray': ray, 'elapsed_s': elapsed,
                  'throughput_sim_seconds_per_wall_second': sim_s / elapsed if elapsed > 0 else None},
        'plots': plots,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f'{label or "evaluation"}.json'
        path.write_text(json.dumps(report, indent=1) + '\n')
        report['json'] = str(path)
    return report


def aggregate(episodes, step_seconds=()):
    """Per-scene aggregate of episode records: means over seeds for rates and offsets, sums for
    counts, the maximum of max |offset|, and per-step time percentiles pooled over all steps."""
    if not episodes:
        return {}
    mean = lambda key: float(np.mean([e[key] for e in episodes]))  # noqa: E731
    total = lambda key: int(sum(e.get(key, 0) for e in episodes))  # noqa: E731
    filter_steps = total('filter_steps')
    return {
        'episodes': len(episodes),
        'completed_episodes': sum(bool(e['completed']) for e in episodes),
        'lap_completion_pct': mean('lap_completion_pct'),
        'laps_mean': mean('laps'),
        'mean_abs_lateral_offset_m': mean('mean_abs_lateral_offset_m'),
        'max_abs_lateral_offset_m': float(max(e['max_abs_lateral_offset_m'] for e in episodes)),
        'lane_departures': total('lane_departures'),
        'collisions': total('collisions'),
        'off_road_ends': sum(e['end_reason'] == 'off_road' for e in episodes),
        'mean_speed_mps': mean('mean_speed_mps'),
        'smoothness_mean_abs_dw_dt': mean('smoothness_mean_abs_dw_dt'),
        'filter_steps': filter_steps,
        'filter_interventions': total('filter_interventions'),
        'filter_intervention_rate': total('filter_interventions') / filter_steps if filter_steps else 0.0,
        'filter_fallbacks': total('filter_fallbacks'),
        'step_time_us': _percentiles(list(step_seconds)),
        # 95% Student-t interval of the mean over episodes (evaluation/statistics.py) and the binding
        # filter rows by type (evaluation/interventions.py), summed over episodes
        'lap_completion_ci': _mean_ci([e['lap_completion_pct'] for e in episodes]),
        'filter_rows_by_type': _rows_by_type(episodes),
    }


def _mean_ci(values):
    from liquid_controller.evaluation.statistics import mean_ci
    return mean_ci(values)


def _rows_by_type(episodes):
    from liquid_controller.evaluation.interventions import ROW_TYPES
    return {t: int(sum(e.get('filter_rows', {}).get('by_type', {}).get(t, 0) for e in episodes))
            for t in ROW_TYPES}


def evaluate_model(model, config, out_dir=None, progress=True, settings=None, label=None):
    """Load ``model`` (name or path; ModelFileError when missing or invalid) and evaluate it through
    the runtime Controller with ``settings`` (None: config/controller.yaml). See :func:`evaluate_driver`."""
    driver = ControllerDriver(model, settings)
    return evaluate_driver(driver, config, out_dir=out_dir, progress=progress, label=label)


def record_in_card(report, command=None):
    """Store the closed-loop results of ``report`` (a model's evaluation) in its model card's
    ``metrics['closed_loop']`` (per scene: completion, mean |offset|, departures, collisions, filter
    interventions; plus laps, seeds, noise and the command) and ``metrics['closed_loop_laps']`` (mean
    laps driven in the first scene evaluated, used to rank shipped models). Only the card's JSON is
    rewritten; the weights and their sha256 are untouched. Returns the card path."""
    from liquid_controller.runtime.model_file import read_card
    path = report['model'].get('path')
    if not path:
        raise InputError('report', report['model'].get('name'), 'not the evaluation of a model file')
    card = read_card(path)
    scenes = {name: {k: agg[k] for k in ('episodes', 'lap_completion_pct', 'mean_abs_lateral_offset_m',
                                         'max_abs_lateral_offset_m', 'lane_departures', 'collisions',
                                         'filter_interventions', 'filter_intervention_rate')}
              for name, agg in report['scenes'].items()}
    first = next(iter(report['scenes'].values()))
    card.metrics['closed_loop'] = {'scenes': scenes, 'laps': report['config']['laps'],
                                   'seeds': report['config']['seeds'],
                                   'image_noise_std': report['config']['image_noise_std'],
                                   'command': command,
                                   'evaluated_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
    card.metrics['closed_loop_laps'] = float(first['laps_mean'])
    Path(path).write_text(json.dumps(card.to_dict(), indent=2) + '\n')
    return path


# ----------------------------------------------------------------------------------------- output

def _fmt(value, digits=3):
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def format_report(report):
    """Plain-text table of an evaluation report: one row per scene, then one per episode."""
    m = report['model']
    cfg = report['config']
    lines = [f"model: {m.get('name')}  core: {m.get('core')}  liquid neurons: {m.get('liquid_neurons')}  "
             f"parameters: {m.get('parameters')}{'  (UNTRAINED)' if m.get('untrained') else ''}",
             f"laps: {cfg['laps']:g}  seeds: {cfg['seeds']}  image noise std: {cfg['image_noise_std']:g}  "
             f"time limit: {cfg['max_seconds'] or cfg['seconds_per_lap'] * cfg['laps']:g} s"]
    head = ('scene', 'episodes', 'completion %', 'mean |off| m', 'max |off| m', 'departures',
            'collisions', 'off-road', 'speed m/s', 'smooth', 'interventions', 'step p50 us')
    rows = []
    for name, s in report['scenes'].items():
        rows.append((name, s['episodes'], _fmt(s['lap_completion_pct'], 1),
                     _fmt(s['mean_abs_lateral_offset_m']), _fmt(s['max_abs_lateral_offset_m']),
                     s['lane_departures'], s['collisions'], s['off_road_ends'],
                     _fmt(s['mean_speed_mps'], 2), _fmt(s['smoothness_mean_abs_dw_dt'], 2),
                     f"{s['filter_interventions']} ({100 * s['filter_intervention_rate']:.1f}%)"
                     if s['filter_steps'] else '-',
                     _fmt(s['step_time_us']['p50'], 0)))
    lines.append(_table(head, rows))
    from liquid_controller.evaluation.statistics import format_ci
    for name, s in report['scenes'].items():
        if 'lap_completion_ci' not in s:
            continue
        bound = ', '.join(f'{t} {n}' for t, n in s['filter_rows_by_type'].items() if n) or 'none'
        lines.append(f"{name}: completion {format_ci(s['lap_completion_ci'], 1)} % (95% t-interval over "
                     f"episodes); binding filter rows (steps): {bound}")
    head2 = ('scene', 'seed', 'laps', 'end', 'sim s', 'wall s', 'departures', 'mean |off| m')
    rows2 = [(e['scene'], e['seed'], _fmt(e['laps'], 2), e['end_reason'], _fmt(e['duration_s'], 1),
              _fmt(e['wall_s'], 1), e['lane_departures'], _fmt(e['mean_abs_lateral_offset_m']))
             for e in report['episodes']]
    lines.append(_table(head2, rows2))
    sp = report['speed']
    if sp['sim_seconds_per_wall_second']:
        lines.append(f"speed: {sp['sim_s']:.1f} sim s in {sp['wall_s']:.1f} wall s = "
                     f"{sp['sim_seconds_per_wall_second']:.2f} sim s per wall s")
    return '\n'.join(lines)


def _table(head, rows):
    """Fixed-width text table."""
    cells = [tuple(str(c) for c in head)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    out = ['  '.join(c.ljust(w) for c, w in zip(cells[0], widths)),
           '  '.join('-' * w for w in widths)]
    out += ['  '.join(c.ljust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    return '\n'.join(out)
