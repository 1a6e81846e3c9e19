"""`liquid-controller bench sim`: speed of the ROS-free simulator closed loop.

Measures, in one run on this machine: the real-time factor of the expert driving the default world
(64x128 camera rendered every frame at 30 Hz, physics at 500 Hz, IMU 200 Hz) and of the same loop
without rendering; the camera render time per frame; raw MuJoCo physics steps per second. Target:
real-time factor >= 3 with rendering.
"""
import os
import time

TARGET_RTF = 3.0


def _closed_loop(world, scene, seconds):
    """Wall seconds to drive ``seconds`` of simulated time with the expert (reset excluded)."""
    from liquid_controller.sim import ExpertDriver
    world.reset(scene, seed=0)
    expert = ExpertDriver(world.track)
    truth = world.last_truth
    frames = int(round(seconds * world.config.camera_rate_hz))
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(frames):
        truth = world.step(expert.command(truth)).truth
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall, cpu, frames / world.config.camera_rate_hz


def run(args):
    """Run the suite; ``args.quick`` shortens it to a smoke run."""
    import mujoco

    from liquid_controller.sim import DrivingWorld, WorldConfig, select_gl_backend
    quick = bool(getattr(args, 'quick', False))
    seconds = 10.0 if quick else 60.0
    scene = 'summer'
    results = {'scene': scene, 'gl_backend': select_gl_backend(), 'sim_seconds': seconds,
               'target_rtf': TARGET_RTF}

    world = DrivingWorld(WorldConfig())
    config = world.config
    results['config'] = {'camera': f'{config.camera_height}x{config.camera_width}',
                         'camera_rate_hz': config.camera_rate_hz,
                         'physics_rate_hz': config.physics_rate_hz, 'imu_rate_hz': config.imu_rate_hz}
    results['load_average_1min_before'] = os.getloadavg()[0]
    results['cpu_count'] = os.cpu_count()
    wall, cpu, simulated = _closed_loop(world, scene, seconds)
    # rtf: simulated / wall seconds (what a user sees, includes waiting for a busy CPU);
    # cpu_rtf: simulated / CPU seconds of this process (llvmpipe threads included): the speed on an
    # otherwise idle core.
    results['closed_loop_rendered'] = {'wall_s': wall, 'cpu_s': cpu, 'rtf': simulated / wall,
                                       'cpu_rtf': simulated / cpu}

    # Camera render alone, same world and scene (mid-lap view).
    renderer, data = world._renderer, world.data
    n = 50 if quick else 300
    renderer.render(data)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        renderer.render(data)
    results['render_ms_per_frame'] = 1000 * (time.perf_counter() - start) / n
    results['render_cpu_ms_per_frame'] = 1000 * (time.process_time() - cpu) / n
    world.close()

    # The largest supported camera (144x256), same loop.
    large = DrivingWorld(WorldConfig(camera_height=144, camera_width=256))
    wall, cpu, simulated = _closed_loop(large, scene, seconds / 2)
    results['closed_loop_rendered_144x256'] = {'wall_s': wall, 'cpu_s': cpu, 'rtf': simulated / wall,
                                               'cpu_rtf': simulated / cpu}
    large.close()

    blind = DrivingWorld(WorldConfig(render=False))
    wall, cpu, simulated = _closed_loop(blind, scene, seconds)
    results['closed_loop_no_render'] = {'wall_s': wall, 'cpu_s': cpu, 'rtf': simulated / wall,
                                        'cpu_rtf': simulated / cpu}

    # Raw physics: mj_step on the compiled model, rover driving straight.
    model, data = blind.model, mujoco.MjData(blind.model)
    mujoco.mj_resetData(model, data)
    data.qpos[0:3] = (0.0, -5.0, 0.05)
    data.ctrl[:] = 10.0
    steps = 5000 if quick else 50000
    start = time.perf_counter()
    mujoco.mj_step(model, data, nstep=steps)
    results['physics_steps_per_s'] = steps / (time.perf_counter() - start)

    per_frame = 1.0 / config.camera_rate_hz
    rendered = results['closed_loop_rendered']
    rendered['ms_per_frame'] = 1000 * per_frame / rendered['rtf']
    rendered['render_share'] = results['render_ms_per_frame'] / rendered['ms_per_frame']
    results['meets_target'] = bool(rendered['rtf'] >= TARGET_RTF)
    results['rtf_ratio_to_target'] = rendered['rtf'] / TARGET_RTF
    results['load_average_1min_after'] = os.getloadavg()[0]
    return results


def format_table(results):
    """A small text table of the results."""
    r = results
    c = r['config']
    rows = [
        ('GL backend', r['gl_backend']),
        ('camera / physics / IMU', f"{c['camera']} @ {c['camera_rate_hz']:g} Hz / "
                                   f"{c['physics_rate_hz']:g} Hz / {c['imu_rate_hz']:g} Hz"),
        ('closed loop, rendered: real-time factor',
         f"{r['closed_loop_rendered']['rtf']:.2f}x (target >= {r['target_rtf']:g}x: "
         f"{'met' if r['meets_target'] else 'NOT met'})"),
        ('closed loop, rendered: CPU-time real-time factor',
         f"{r['closed_loop_rendered']['cpu_rtf']:.2f}x (speed on an idle core)"),
        ('closed loop, rendered: ms per frame', f"{r['closed_loop_rendered']['ms_per_frame']:.2f}"),
        ('render ms per frame (wall, CPU)', f"{r['render_ms_per_frame']:.2f}, "
                                            f"{r['render_cpu_ms_per_frame']:.2f} "
                                f"({100 * r['closed_loop_rendered']['render_share']:.0f}% of a frame)"),
        ('closed loop, rendered 144x256: real-time factor',
         f"{r['closed_loop_rendered_144x256']['rtf']:.2f}x"),
        ('closed loop, no render: real-time factor', f"{r['closed_loop_no_render']['rtf']:.1f}x"),
        ('raw physics steps per second', f"{r['physics_steps_per_s']:,.0f}"),
        ('machine load (1 min avg before, after)',
         f"{r['load_average_1min_before']:.2f}, {r['load_average_1min_after']:.2f} "
         f"on {r['cpu_count']} cores"),
    ]
    width = max(len(k) for k, _ in rows)
    return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)
