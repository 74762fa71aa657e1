"""CLIP RN50 as a face classifier: frozen image tower, per-person text embeddings.

Recognition runs the image tower alone (torch, or its ONNX export over onnxruntime), then
centres the features with the training mean stored in the bundle, normalises them and
compares them with the precomputed per-person text embeddings; the softmax over people
is compared with the reject threshold.

torch and open_clip are imported only when a model is built, so importing this module
is cheap; the ONNX backend needs neither once the tower has been exported.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from models import registry
from models.align import CLIP_SIZE, align_for_clip
from models.detector import Face
from models.recognizer import Prediction, decide
from models.runtime import create_session

if TYPE_CHECKING:
    import torch

    from models.bundle import RecognizerBundle

OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
OPENAI_WEIGHTS = "clip_rn50_openai"
Pretrained = Literal["openai", "none"]
Backend = Literal["torch", "onnx"]

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


def build_clip(
    model_name: str, pretrained: Pretrained, model_dir: Path | None, init_seed: int = 0
) -> tuple[Any, ClipIdentity]:
    """An open_clip CLIP model in float32 eval mode, and its identity.

    ``openai`` loads ``RN50.pt`` from the model directory (never downloads); ``none``
    builds the architecture with weights drawn from ``init_seed``.
    """
    try:
        import open_clip
        import torch
    except ImportError as error:
        raise registry.ModelError(
            f"building CLIP's image tower needs torch and open_clip, which this installation "
            f"leaves out ({error.name} is missing; the door bundle has neither). Fix: run the "
            "same once with a full installation (kiosk-full, or packaging/install.sh): it "
            "exports the ONNX tower, which is then used without torch"
        ) from error

    if pretrained == "openai":
        if model_dir is None:
            raise registry.ModelError("a model directory is needed for the openai weights")
        spec = registry.spec(OPENAI_WEIGHTS)
        path = registry.model_path(OPENAI_WEIGHTS, model_dir)
        try:
            archive = torch.jit.load(str(path), map_location="cpu")
            state = archive.state_dict()
        except (RuntimeError, OSError) as error:
            raise registry.ModelError(
                f"cannot read {path} as a TorchScript archive: {error}"
            ) from error
        model = open_clip.model.build_model_from_openai_state_dict(state).float().eval()
        weights_sha = spec.sha256
    elif pretrained == "none":
        if model_name not in open_clip.list_models():
            raise registry.ModelError(f"unknown open_clip model config {model_name!r}")
        with torch.random.fork_rng():
            torch.manual_seed(init_seed)
            model = open_clip.create_model(model_name, pretrained=None).float().eval()
        weights_sha = ""
    else:
        raise registry.ModelError(f"unknown pretrained tag {pretrained!r}: use openai or none")
    model.lock_image_tower()
    identity = ClipIdentity(
        model=model_name,
        pretrained=pretrained,
        init_seed=init_seed,
        weights_sha256=weights_sha,
        image_tower_sha256=tensor_digest(model.visual),
    )
    return model, identity


def tokenize(model_name: str, prompts: Sequence[str]) -> NDArray[np.int64]:
    import open_clip

    tokens = open_clip.get_tokenizer(model_name)(list(prompts))
    return np.asarray(tokens.numpy(), dtype=np.int64)


def prompt_length(tokens: NDArray[np.int64]) -> int:
    """Tokens up to and including the longest prompt's end-of-text token."""
    return int(tokens.argmax(axis=1).max()) + 1


def make_text_encoder(model: Any, context: int, trainable_layers: int) -> Any:
    """A :class:`torch.nn.Module` that encodes prompts through CLIP's text tower.

    Exact shortcuts, verified against ``open_clip``'s ``encode_text`` in the tests:
    the transformer is causal and pooled at the end-of-text token, so positions after
    the longest prompt never influence the output: the context is cut to ``context``
    tokens (77 -> 13 for the default prompt, ~5x cheaper), and the last block is computed
    at the end-of-text position only (:func:`_block_at_eot`). The prompts are fixed, so the
    bottom, frozen blocks are run once (:meth:`prefix`) and training steps run only the
    top ``trainable_layers`` blocks on those cached activations.
    """
    import torch
    from torch import nn

    class TruncatedTextEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            blocks = list(model.transformer.resblocks)
            if not 0 <= trainable_layers <= len(blocks):
                raise ValueError(f"trainable_layers must be in [0, {len(blocks)}]")
            if not model.transformer.batch_first:
                raise ValueError("expected a batch-first open_clip text transformer")
            if model.text_pool_type != "argmax":
                raise ValueError("expected a text tower pooled at the end-of-text token")
            split = len(blocks) - trainable_layers
            self.context = context
            self.token_embedding = model.token_embedding
            self.positional_embedding = model.positional_embedding
            self.frozen_blocks = nn.ModuleList(blocks[:split])
            self.blocks = nn.ModuleList(blocks[split:])
            self.ln_final = model.ln_final
            self.text_projection = model.text_projection
            self.register_buffer("attn_mask", model.attn_mask[:context, :context].clone())
            for module in (self.token_embedding, self.frozen_blocks):
                module.requires_grad_(False)
            self.positional_embedding.requires_grad_(False)

        def prefix(self, tokens: torch.Tensor) -> torch.Tensor:
            """Activations entering the trainable blocks (no gradient)."""
            tokens = tokens[:, : self.context]
            with torch.no_grad():
                x = self.token_embedding(tokens) + self.positional_embedding[: self.context]
                for block in self.frozen_blocks:
                    x = block(x, attn_mask=self.attn_mask)
            return x

        def head(self, prefix: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
            """Text embeddings (unnormalised) from prefix activations and EOT positions."""
            x = prefix
            rows = torch.arange(x.shape[0])
            if len(self.blocks) == 0:
                return self.ln_final(x[rows, eot]) @ self.text_projection
            for block in self.blocks[:-1]:
                x = block(x, attn_mask=self.attn_mask)
            return self.ln_final(_block_at_eot(self.blocks[-1], x, eot)) @ self.text_projection

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            tokens = tokens[:, : self.context]
            return self.head(self.prefix(tokens), tokens.argmax(dim=-1))

    return TruncatedTextEncoder()


def _block_at_eot(block: Any, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
    """The output of a residual attention block at the end-of-text position only.

    Pooling reads one position, so the last block needs queries, attention output and MLP
    for that position alone (keys and values still come from every position up to it):
    about 4x less work than the whole block, and the same numbers.
    """
    import torch
    import torch.nn.functional as F

    attn = block.attn
    batch, length, width = x.shape
    heads = attn.num_heads
    rows = torch.arange(batch)
    y = block.ln_1(x)
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    q = F.linear(y[rows, eot], weight[:width], bias[:width]).view(batch, heads, 1, -1)
    k = F.linear(y, weight[width : 2 * width], bias[width : 2 * width])
    v = F.linear(y, weight[2 * width :], bias[2 * width :])
    k = k.view(batch, length, heads, -1).transpose(1, 2)
    v = v.view(batch, length, heads, -1).transpose(1, 2)
    visible = torch.arange(length)[None, :] <= eot[:, None]  # causal: up to the EOT token
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None, None, :])
    z = x[rows, eot] + block.ls_1(attn.out_proj(out.reshape(batch, width)))
    return z + block.ls_2(block.mlp(block.ln_2(z)))


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

    def __init__(self, visual: Any) -> None:
        self.visual = visual.eval()
        self.providers = ["torch-cpu"]
        self.dim = int(visual.output_dim)

    def encode(self, blob: NDArray[np.float32]) -> NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            return np.asarray(self.visual(torch.from_numpy(blob)).numpy(), dtype=np.float32)


class OnnxImageTower:
    """The image tower exported to ONNX, run by onnxruntime (no torch needed)."""

    backend: Backend = "onnx"

    def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
        self.path = path
        self._session = create_session(path, device=device, threads=threads)
        self._input = self._session.get_inputs()[0].name
        self.providers = list(self._session.get_providers())
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def encode(self, blob: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(self._session.run(None, {self._input: blob})[0], dtype=np.float32)


ImageTower = TorchImageTower | OnnxImageTower


def export_image_tower(visual: Any, path: Path) -> Path:
    """Export the image tower to ONNX (dynamic batch), atomically.

    torch 2.14's default exporter is the dynamo one, which needs onnxscript (not
    installed, not needed): the TorchScript exporter (``dynamo=False``) handles RN50.
    """
    import os
    import tempfile
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # RN50's attention pool traces shape checks as constants: expected, harmless.
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                visual.eval(),
                (torch.zeros(1, 3, CLIP_SIZE, CLIP_SIZE),),
                tmp,
                input_names=["image"],
                output_names=["features"],
                dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def class_probabilities(
    features: NDArray[np.float32],
    feature_mean: NDArray[np.float32],
    text_embeddings: NDArray[np.float32],
    logit_scale: float,
) -> NDArray[np.float32]:
    """Softmax over people of the centred, normalised image features (N, people)."""
    image = normalise_rows(features - feature_mean)
    logits = logit_scale * image @ text_embeddings.T
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


class ClipRecognizer:
    """A :class:`models.recognizer.Recognizer` over a trained bundle."""

    def __init__(
        self, bundle: RecognizerBundle, tower: ImageTower, threshold: float | None = None
    ) -> None:
        self.bundle = bundle
        self.tower = tower
        self._threshold = bundle.settings.threshold if threshold is None else threshold
        self.text_embeddings = normalise_rows(bundle.text_embeddings)

    @classmethod
    def load(
        cls,
        bundle_path: Path,
        model_dir: Path | None,
        backend: Backend = "onnx",
        threshold: float | None = None,
        device: str = "auto",
        threads: int = 0,
    ) -> ClipRecognizer:
        """Load a bundle with its image tower; the ONNX tower is exported once and cached
        next to the bundle, after which recognition needs no torch."""
        from models.bundle import load_bundle

        bundle = load_bundle(bundle_path)
        if bundle.identity.pretrained == "none":
            warn_untrained()
        tower: ImageTower
        onnx_path = onnx_tower_path(bundle_path, bundle.identity)
        if backend == "onnx" and onnx_path.is_file():
            tower = OnnxImageTower(onnx_path, device=device, threads=threads)
        else:
            visual = rebuild_image_tower(bundle.identity, model_dir)
            if backend == "onnx":
                export_image_tower(visual, onnx_path)
                tower = OnnxImageTower(onnx_path, device=device, threads=threads)
            else:
                tower = TorchImageTower(visual)
        return cls(bundle, tower, threshold)

    @property
    def people(self) -> Sequence[str]:
        return self.bundle.people

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def providers(self) -> list[str]:
        return self.tower.providers

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return align_for_clip(image, face.kps, self.bundle.settings.align_margin)

    def probabilities(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        features = encode_crops(self.tower, crops)
        return class_probabilities(
            features, self.bundle.feature_mean, self.text_embeddings, self.bundle.logit_scale
        )

    def predict(self, crops: Sequence[NDArray[np.uint8]]) -> list[Prediction]:
        if not crops:
            return []
        probs = self.probabilities(crops)
        return [decide(row, self.bundle.people, self._threshold) for row in probs]


class ClipFaceEmbedder:
    """CLIP's frozen image tower as the embedder of a zero-shot gallery (no training):
    faces aligned to 224 with the ArcFace template, as the people store keeps them;
    features L2-normalised."""

    crop_size = CLIP_SIZE

    def __init__(self, tower: ImageTower, key: str) -> None:
        self.tower = tower
        self.key = key
        self.dim = tower.dim

    @classmethod
    def load(
        cls,
        model_name: str,
        pretrained: Pretrained,
        model_dir: Path | None,
        cache_dir: Path,
        *,
        device: str = "auto",
        threads: int = 0,
    ) -> ClipFaceEmbedder:
        """The ONNX image tower, exported once (with torch) into ``cache_dir``; after that
        neither torch nor the weights file is needed.

        The cached file is named by the weights' sha256 (openai) or by the model and
        seed (an untrained tower, for tests and timings only)."""
        path = cls.tower_path(model_name, pretrained, cache_dir)
        if pretrained == "none":
            warn_untrained()
        if not path.is_file():
            model, _ = build_clip(model_name, pretrained, model_dir)
            export_image_tower(model.visual, path)
        key = f"clip:{model_name}:{pretrained}:{cls._version(model_name, pretrained)}"
        return cls(OnnxImageTower(path, device=device, threads=threads), key)

    @staticmethod
    def _version(model_name: str, pretrained: Pretrained) -> str:
        if pretrained == "none":
            return "seed0"  # build_clip's default init_seed
        if model_name != "RN50":
            raise registry.ModelError(f"no openai weights for {model_name}: use RN50")
        return registry.spec(OPENAI_WEIGHTS).sha256[:16]

    @classmethod
    def tower_path(cls, model_name: str, pretrained: Pretrained, cache_dir: Path) -> Path:
        version = cls._version(model_name, pretrained)
        return cache_dir / f"clip-{model_name}-{pretrained}-{version}.onnx"

    @property
    def providers(self) -> list[str]:
        return self.tower.providers

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return align_for_clip(image, face.kps)

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], batch_size: int = 32
    ) -> NDArray[np.float32]:
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise_rows(encode_crops(self.tower, crops, batch_size=batch_size))


def onnx_tower_path(bundle_path: Path, identity: ClipIdentity) -> Path:
    return bundle_path.with_name(f"{bundle_path.name}.tower-{identity.key}.onnx")


def rebuild_image_tower(identity: ClipIdentity, model_dir: Path | None) -> Any:
    """The image tower a bundle was trained with; refuses a different one."""
    model, rebuilt = build_clip(
        identity.model, identity.pretrained, model_dir, init_seed=identity.init_seed
    )
    if rebuilt.image_tower_sha256 != identity.image_tower_sha256:
        raise registry.ModelError(
            f"the {identity.model} ({identity.pretrained}) image tower built here differs from "
            f"the one the bundle was trained with (sha256 {rebuilt.image_tower_sha256[:16]}, "
            f"bundle {identity.image_tower_sha256[:16]}); a different torch/open_clip "
            "version or weights file. Fix: train the bundle again on this machine."
        )
    return model.visual
