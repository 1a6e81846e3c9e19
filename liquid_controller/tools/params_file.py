"""The `--params-file` option shared by the commands that run the Controller offline.

replay, evaluate, compare and explain run the Controller with the controller node's parameters, read
from the same YAML file the node takes (`ros2 run ... --ros-args --params-file FILE`), so that offline
results are what the robot would do with that file. Default: the package's config/controller.yaml.
"""


def add_params_file_argument(parser):
    """Add ``--params-file FILE`` to ``parser``."""
    parser.add_argument('--params-file', metavar='FILE', default=None,
                        help="the controller node's parameter file (default: the package's "
                             'config/controller.yaml); the Controller runs with these settings')


def settings_from_args(args):
    """The :class:`~liquid_controller.runtime.settings.Settings` of ``args.params_file`` (InputError
    naming the file and the bad key or value)."""
    from liquid_controller.runtime.settings import load_settings
    return load_settings(args.params_file)
