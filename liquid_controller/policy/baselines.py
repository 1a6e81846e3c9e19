"""Baseline cores compared against the liquid policy: an LSTM and a feed-forward PilotNet-like CNN.

Both sit behind the same interface as the liquid core inside ``DrivingPolicy`` (state tensor in and
out, per-step elapsed time), so training, the runtime Controller and evaluation treat every model
alike:

- ``LSTMCore``: the same conv head features as the liquid policy go into one ``nn.LSTM`` layer. The
  elapsed time of each step is appended to its input (clipped), the usual way to give a discrete-time
  RNN irregular sampling; the liquid cells instead use it in their dynamics. State = [h, c].
- ``FeedForwardCNN``: PilotNet-like, no recurrent state (state size 0), larger than the liquid policy.
"""
import torch
from torch import nn

from liquid_controller.policy.perception import PilotNetHead

# Elapsed times above this many seconds are fed to the LSTM as this value: a gap of seconds means
# "stale", and unbounded inputs would saturate the gates unpredictably.
LSTM_DT_CLIP_S = 1.0


class LSTMCore(nn.Module):
    """One LSTM layer over (features, dt); the hidden vector h is the latent the readouts use.

    State layout (B, 2*hidden_size): hidden h in [0, H), cell c in [H, 2H). ``dt_clip``: elapsed
    times above it (in the units the caller feeds) enter the LSTM as ``dt_clip``.
    """

    def __init__(self, input_size: int, hidden_size: int, dt_clip: float = LSTM_DT_CLIP_S):
        super().__init__()
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.dt_clip = float(dt_clip)
        self.lstm = nn.LSTM(self.input_size + 1, self.hidden_size, batch_first=True)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    @property
    def latent_size(self) -> int:
        return self.hidden_size

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Zero state (B, 2H) on the module's device and dtype."""
        p = self.lstm.weight_ih_l0
        return torch.zeros(batch_size, self.state_size, dtype=p.dtype, device=p.device)

    def forward(self, x: torch.Tensor, timespans: torch.Tensor, state: torch.Tensor):
        """x (B, T, F), timespans (B, T), state (B, 2H) -> (h per step (B, T, H), state (B, 2H))."""
        dt = timespans.clamp(max=self.dt_clip).unsqueeze(-1)        # (B, T, 1)
        inputs = torch.cat([x, dt.to(x.dtype)], dim=-1)             # (B, T, F+1)
        h0, c0 = state.split(self.hidden_size, dim=1)               # (B, H) each
        out, (h, c) = self.lstm(inputs, (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))
        return out, torch.cat([h[0], c[0]], dim=1)                  # (B, T, H), (B, 2H)

    def step(self, x: torch.Tensor, state: torch.Tensor, dt: torch.Tensor):
        """x (B, F), state (B, 2H), dt (B,) -> (h (B, H), state (B, 2H)); same maths as forward."""
        out, state = self.forward(x.unsqueeze(1), dt.unsqueeze(1), state)
        return out[:, 0], state

    def neuron_groups(self) -> dict:
        """Labelled index lists into the state."""
        h = self.hidden_size
        return {'hidden': list(range(h)), 'cell': list(range(h, 2 * h))}


class FeedForwardCNN(nn.Module):
    """PilotNet-like image + IMU network with no memory: state size 0, elapsed time ignored.

    The 10 features of the last fully connected layer are the latent the readouts use.
    """

    def __init__(self, image_channels: int, image_height: int, image_width: int, extra_size: int,
                 normalization: str = 'per_image'):
        super().__init__()
        self.net = PilotNetHead(image_channels, image_height, image_width, extra_size, normalization)

    state_size = 0

    @property
    def latent_size(self) -> int:
        return self.net.output_size

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Empty state (B, 0): keeps the interface of the recurrent cores."""
        p = self.net.fc[0].weight
        return torch.zeros(batch_size, 0, dtype=p.dtype, device=p.device)

    def forward(self, images: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) in [0, 1], extra (N, E) -> latent (N, 10)."""
        return self.net(images, extra)

    def neuron_groups(self) -> dict:
        """No recurrent state, so nothing to label."""
        return {}
