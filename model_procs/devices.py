"""The device a model is configured for, checked on this machine before anything is built: funasr would quietly
fall back to the CPU for a `cuda` it cannot find, and a model that asked for a GPU should say it has none."""

from __future__ import annotations

import re

from wire.model_config import DEVICE_PATTERN

DEVICE = re.compile(DEVICE_PATTERN)


class DeviceUnavailable(Exception):
    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint


def check_device(device: str) -> None:
    """Raise DeviceUnavailable naming `device` when this machine has no such device."""
    import torch

    match = DEVICE.match(device)
    if match is None:
        raise DeviceUnavailable(f"device '{device}' is not one this server runs models on",
                                "set device to cpu, cuda or cuda:<index>")
    if match[1] == "cpu":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match[3] or 0)
    if index >= count:
        found = f"{count} CUDA device{'s' if count != 1 else ''}" + (f" (cuda:0 to cuda:{count - 1})" if count else "")
        raise DeviceUnavailable(f"device '{device}' does not exist on this machine: it has {found}",
                                "set device to cpu" + (" or to one of its CUDA devices" if count else "")
                                + " in the model's config")
