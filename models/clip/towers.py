"""CLIP's frozen image tower: built from open_clip (RN50.pt or untrained), in torch eager mode
or exported to ONNX and run by onnxruntime (no torch needed then).

torch and open_clip are imported only when a model is built, so importing this module is
cheap; the ONNX tower needs neither once it has been exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from models import registry
from models.align import CLIP_SIZE
from models.errors import ModelError
from models.io import atomic_path, remove_stale_temps
from models.runtime import create_session

if TYPE_CHECKING:
    pass
from models.clip.identity import OPENAI_WEIGHTS, ClipIdentity, Pretrained, tensor_digest

OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)


OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


Backend = Literal["torch", "onnx"]


def open_clip_name(model: str) -> str:
    """open_clip's name for ``[clip] model``: a config name such as ``RN50``, or the path of
    an open_clip model config (a ``.json`` file), registered here under its file's stem."""
    if not model.endswith(".json"):
        return model
    import open_clip

    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(f"the open_clip model config {path} does not exist")
    open_clip.add_model_config(path)
    return path.stem


def build_clip(
    model_name: str, pretrained: Pretrained, model_dir: Path | None, init_seed: int = 0
) -> tuple[Any, ClipIdentity]:
    """An open_clip CLIP model in float32 eval mode, and its identity.

    ``openai`` loads ``RN50.pt`` from the model directory (never downloads); ``none``
    builds the architecture with weights drawn from ``init_seed``. ``model_name`` may be a
    config's path (:func:`open_clip_name`).
    """
    try:
        import open_clip
        import torch
    except ImportError as error:
        raise ModelError(
            f"building CLIP's image tower needs torch and open_clip, which this installation "
            f"leaves out ({error.name} is missing; the door bundle has neither). Fix: run the "
            "same once with a full installation (kiosk-full, or packaging/install.sh): it "
            "exports the ONNX tower, which is then used without torch"
        ) from error

    if pretrained == "openai":
        if model_dir is None:
            raise ModelError("a model directory is needed for the openai weights")
        spec = registry.spec(OPENAI_WEIGHTS)
        path = registry.model_path(OPENAI_WEIGHTS, model_dir)
        try:
            archive = torch.jit.load(str(path), map_location="cpu")
            state = archive.state_dict()
        except (RuntimeError, OSError) as error:
            raise ModelError(f"cannot read {path} as a TorchScript archive: {error}") from error
        model = open_clip.model.build_model_from_openai_state_dict(state).float().eval()
        weights_sha = spec.sha256
    elif pretrained == "none":
        config_name = open_clip_name(model_name)
        if config_name not in open_clip.list_models():
            raise ModelError(f"unknown open_clip model config {model_name!r}")
        with torch.random.fork_rng():
            torch.manual_seed(init_seed)
            model = open_clip.create_model(config_name, pretrained=None).float().eval()
        weights_sha = ""
    else:
        raise ModelError(f"unknown pretrained tag {pretrained!r}: use openai or none")
    model.lock_image_tower()
    identity = ClipIdentity(
        model=model_name,
        pretrained=pretrained,
        init_seed=init_seed,
        weights_sha256=weights_sha,
        image_tower_sha256=tensor_digest(model.visual),
    )
    return model, identity


def to_blob(crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """BGR 224x224 crops -> the (N, 3, 224, 224) float input of CLIP's image tower."""
    batch = np.stack(crops)
    if batch.shape[1:] != (CLIP_SIZE, CLIP_SIZE, 3):
        raise ValueError(f"expected {CLIP_SIZE}x{CLIP_SIZE} BGR crops, got {batch.shape[1:]}")
    rgb = batch[..., ::-1].astype(np.float32) / 255.0
    blob = (rgb - OPENAI_MEAN) / OPENAI_STD
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))


class TorchImageTower:
    """The frozen image tower in torch eager mode."""

    backend: Backend = "torch"

    precision: str = "fp32"

    def __init__(self, visual: Any) -> None:
        self.visual = visual.eval()
        self.providers = ["torch-cpu"]
        self.dim = int(visual.output_dim)

    def encode(self, blob: NDArray[np.float32]) -> NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            return np.asarray(self.visual(torch.from_numpy(blob)).numpy(), dtype=np.float32)


class OnnxImageTower:
    """The image tower exported to ONNX, run by onnxruntime (no torch needed);
    ``precision`` says whether ``path`` is the fp32 export or its int8 quantization."""

    backend: Backend = "onnx"

    def __init__(
        self, path: Path, device: str = "auto", threads: int = 0, precision: str = "fp32"
    ) -> None:
        self.path = path
        self.precision = precision
        self._session = create_session(path, device=device, threads=threads)
        self._input = self._session.get_inputs()[0].name
        self.providers = list(self._session.get_providers())
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def encode(self, blob: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(self._session.run(None, {self._input: blob})[0], dtype=np.float32)


class ImageTower(Protocol):
    """What encodes CLIP's image input: :class:`TorchImageTower`, :class:`OnnxImageTower`,
    or a wrapper of one (e.g. one that remembers the features of crops it has seen)."""

    @property
    def providers(self) -> list[str]: ...

    @property
    def dim(self) -> int: ...

    @property
    def precision(self) -> str: ...

    def encode(self, blob: NDArray[np.float32]) -> NDArray[np.float32]: ...


def export_image_tower(visual: Any, path: Path) -> Path:
    """Export the image tower to ONNX (dynamic batch), atomically (no temporary file is
    left when the export fails; those of a killed export are removed by the next).

    torch 2.14's default exporter is the dynamo one, which needs onnxscript (not
    installed, not needed): the TorchScript exporter (``dynamo=False``) handles RN50.
    """
    import warnings

    import torch

    remove_stale_temps(path.parent)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # RN50's attention pool traces shape checks as constants: expected, harmless.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            visual.eval(),
            (torch.zeros(1, 3, CLIP_SIZE, CLIP_SIZE),),
            str(tmp),
            input_names=["image"],
            output_names=["features"],
            dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def encode_crops(
    tower: ImageTower, crops: Sequence[NDArray[np.uint8]], batch_size: int = 16
) -> NDArray[np.float32]:
    """Raw image features of BGR 224x224 crops, in batches."""
    out = [
        tower.encode(to_blob(crops[start : start + batch_size]))
        for start in range(0, len(crops), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def normalise_rows(x: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def rebuild_image_tower(identity: ClipIdentity, model_dir: Path | None) -> Any:
    """The image tower a bundle was trained with; refuses a different one."""
    model, rebuilt = build_clip(
        identity.model, identity.pretrained, model_dir, init_seed=identity.init_seed
    )
    if rebuilt.image_tower_sha256 != identity.image_tower_sha256:
        raise ModelError(
            f"the {identity.model} ({identity.pretrained}) image tower built here differs from "
            f"the one the bundle was trained with (sha256 {rebuilt.image_tower_sha256[:16]}, "
            f"bundle {identity.image_tower_sha256[:16]}); a different torch/open_clip "
            "version or weights file. Fix: train the bundle again on this machine."
        )
    return model.visual
