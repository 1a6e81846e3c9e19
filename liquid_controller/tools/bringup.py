"""`liquid-controller bringup`: start the nodes of launch/bringup.launch.py without the launch packages.

    liquid-controller bringup --sim mujoco [--params-file config/controller.yaml] [--model NAME]
    liquid-controller bringup --sim none --remap cmd_vel:=/diff_drive/cmd_vel

Starts the installed executables (sim_node for mujoco, controller_node) with the same parameter files,
brings the controller to `active` through its lifecycle change_state service, and runs until Ctrl-C,
which stops every node cleanly (the controller publishes a zero command on the way out).

The nodes' output is shown prefixed `[sim_node]` / `[controller]`. A failure ends the command at once
with one line `liquid-controller bringup: error: ...` on stderr and exit code 1: a missing params file,
a node that exits (named, with its exit code and the error it printed last, e.g. a parameter out of
range), or a refused transition (with the controller's logged reason).
"""
import signal
import time

from liquid_controller.tools import fail


def register(sub):
    """Add the `bringup` subcommand."""
    p = sub.add_parser('bringup', help='start sim_node + controller_node (ros2-launch-free bringup)')
    p.add_argument('--sim', choices=['mujoco', 'none'], default='mujoco',
                   help='mujoco: embedded simulator + controller; none: controller only (a robot)')
    p.add_argument('--params-file', default=None, help='controller parameters (default config/controller.yaml)')
    p.add_argument('--model', default='', help='model name in models/ or path to NAME.json')
    p.add_argument('--namespace', default='', help='namespace of the nodes')
    p.add_argument('--scene', default='summer', help='MuJoCo scene (--sim mujoco)')
    p.add_argument('--use-sim-time', choices=['auto', 'true', 'false'], default='auto',
                   help='nodes use /clock time: auto = true with --sim mujoco, false with --sim none')
    p.add_argument('--remap', action='append', default=[], metavar='FROM:=TO',
                   help='topic remap applied to every node (repeatable)')
    p.add_argument('--timeout', type=float, default=60.0, help='seconds to wait for the controller')
    p.add_argument('--duration', type=float, default=0.0, help='stop after this many seconds (0: Ctrl-C)')
    p.set_defaults(func=run)


def _parse_remaps(items):
    remaps = {}
    for item in items:
        if ':=' not in item:
            raise ValueError(f'--remap {item!r}: expected FROM:=TO')
        src, dst = item.split(':=', 1)
        remaps[src] = dst
    return remaps


class _Interrupted(Exception):
    """Ctrl-C / SIGTERM while the controller was being brought up."""


def run(args):
    """Start, activate, wait for Ctrl-C (or --duration), stop."""
    from liquid_controller.ros.lifecycle_client import LifecycleError, bring_up
    from liquid_controller.ros.processes import start_bringup
    use_sim_time = None if args.use_sim_time == 'auto' else args.use_sim_time == 'true'
    try:
        bringup = start_bringup(sim=args.sim, params_file=args.params_file, model=args.model,
                                namespace=args.namespace, use_sim_time=use_sim_time, scene=args.scene,
                                remaps=_parse_remaps(args.remap))
    except (FileNotFoundError, ValueError) as exc:  # params file, executables: nothing started
        return fail('bringup', exc)
    stop = {'flag': False}

    def on_signal(signum, frame):
        stop['flag'] = True
    previous = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    code, error = 0, None
    try:
        names = ', '.join(n.name for n in bringup.nodes)
        print(f'started {names}; bringing {bringup.controller_name} to active ...', flush=True)

        def check():  # run while waiting: stop at once when a node exits or on Ctrl-C
            if stop['flag']:
                raise _Interrupted
            bringup.check_alive()
        # explain: the controller's logged reason for a refused transition
        bring_up(bringup.controller_name, timeout=args.timeout, check=check,
                 explain=bringup.controller_errors)
        print(f'{bringup.controller_name} is active. Ctrl-C stops everything.', flush=True)
        t_end = time.monotonic() + args.duration if args.duration > 0 else float('inf')
        while not stop['flag'] and time.monotonic() < t_end:
            bringup.check_alive()
            time.sleep(0.2)
    except _Interrupted:
        error = 'interrupted before the controller was active'
        code = 130
    except (LifecycleError, RuntimeError) as exc:
        error, code = exc, 1
    finally:
        # after an error the other nodes' shutdown output is not shown: the error is the last line
        codes = bringup.stop(quiet=code != 0)
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        print(f'stopped: {codes}', flush=True)
    if error:
        fail('bringup', error)
    return code
