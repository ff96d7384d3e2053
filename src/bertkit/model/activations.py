"""The activation functions a config may name, by name."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from bertkit.config import ACTIVATIONS as ACTIVATION_NAMES

# The function of each name the config accepts, in its order: a name added there and not here fails at import.
_GELU_TANH = functools.partial(F.gelu, approximate="tanh")
ACTIVATIONS = dict(zip(ACTIVATION_NAMES, (F.gelu, _GELU_TANH, _GELU_TANH, F.relu), strict=True))
FIRST_TOKEN_ACTIVATIONS = {"tanh": torch.tanh, "gelu": F.gelu, "relu": F.relu}
