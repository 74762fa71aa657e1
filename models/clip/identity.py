"""Which CLIP model a tower is: enough to rebuild it, and to check it is the same one.

A recognizer bundle records the identity of the image tower it was trained on; caches of
image features and exported ONNX towers are keyed by it.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch


OPENAI_WEIGHTS = "clip_rn50_openai"


Pretrained = Literal["openai", "none"]


UNTRAINED_WARNING = (
    "WARNING: this recognizer stands on an UNTRAINED CLIP image tower "
    "(pretrained = 'none'): it recognizes nobody reliably. Put RN50.pt in the model "
    "directory (`kiosk models fetch clip_rn50_openai`), then set [clip] pretrained = "
    "'openai' (and train a bundle again with --pretrained openai)."
)


def warn_untrained() -> None:
    print(f"\n{'!' * 78}\n{UNTRAINED_WARNING}\n{'!' * 78}\n", file=sys.stderr)


@dataclass(frozen=True)
class ClipIdentity:
    """Which CLIP model this is: enough to rebuild it and to check it is the same."""

    model: str  # open_clip config name, e.g. "RN50"
    pretrained: Pretrained
    init_seed: int  # the torch seed an untrained model was built from
    weights_sha256: str  # the weights file (openai), or "" for an untrained model
    image_tower_sha256: str  # digest of the image tower's parameters as built here

    @property
    def key(self) -> str:
        """Short key for caches of image features and of the exported ONNX tower."""
        return self.image_tower_sha256[:16]


def tensor_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's parameters and buffers, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
