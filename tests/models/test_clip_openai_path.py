"""The code that loads the real RN50.pt, run end to end without the file.

No CLIP weights can be had on these machines, so the test makes a stand-in in OpenAI's
own format: a TorchScript archive traced from an untrained ``RN50-quickgelu`` (OpenAI's
activation), with fp16 weights and the three extra entries OpenAI's archives carry
(``input_resolution``, ``context_length``, ``vocab_size``). ``torch.jit.trace`` keeps the
module's state-dict keys, and open_clip's CLIP uses OpenAI's key names, so the archive
has the real file's layout. A test manifest gives it its own sha256 and a download
address on a 127.0.0.1 server; from there on it is the product's path, unchanged:
fetch, verify, ``torch.jit.load`` + ``build_model_from_openai_state_dict``, training,
ONNX export and recognition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models import registry
from models.clip.classifier import ClipRecognizer
from models.clip.identity import OPENAI_WEIGHTS
from models.clip.towers import OPENAI_MEAN, OPENAI_STD, build_clip, encode_crops, to_blob
from models.errors import ModelError
from models.io import read_image, scan_people
from tests.helpers import serve_folder, train_settings


def _openai_format_archive(path: Path) -> None:
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("RN50-quickgelu", pretrained=None).eval()
    for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(model, name):  # open_clip keeps these as plain attributes; OpenAI as entries
            delattr(model, name)
        model.register_buffer(name, torch.tensor(value))
    # OpenAI's text mask is a constant of the traced graph, not a state entry.
    mask = model._buffers.pop("attn_mask")
    model.attn_mask = mask
    image = torch.zeros(1, 3, 224, 224)
    text = torch.zeros(1, 77, dtype=torch.long)
    with torch.no_grad():
        traced = torch.jit.trace(model, (image, text), check_trace=False)
    traced.half()  # OpenAI ships its weights in float16
    torch.jit.save(traced, str(path))


@pytest.fixture(scope="module")
def openai_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hub")
    _openai_format_archive(folder / "RN50.pt")
    return folder / "RN50.pt"


def test_preprocessing_matches_open_clip_for_the_openai_tag(shared: Callable[..., Path]) -> None:
    """Our blob (BGR crop -> RGB, /255, OpenAI mean and std) is open_clip's own transform
    for RN50/openai, which resizes the shortest side to 224 (bicubic) and centre-crops: the
    identity on our 224 x 224 aligned crops."""
    import open_clip
    from PIL import Image

    cfg = open_clip.get_pretrained_cfg("RN50", "openai")
    assert np.allclose(cfg["mean"], OPENAI_MEAN) and np.allclose(cfg["std"], OPENAI_STD)
    assert cfg["quick_gelu"] is True and cfg["interpolation"] == "bicubic"
    transform = open_clip.image_transform(
        224,
        is_train=False,
        mean=cfg["mean"],
        std=cfg["std"],
        interpolation=cfg["interpolation"],
        resize_mode=cfg["resize_mode"],
    )
    crop = read_image(shared("faces", "portraits", "newton.png"))[:224, 200:424]
    theirs = transform(Image.fromarray(np.ascontiguousarray(crop[..., ::-1]))).numpy()
    ours = to_blob([crop])[0]
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert np.abs(ours - theirs).max() < 1e-5


@pytest.mark.slow
def test_fetch_verify_load_train_export_and_recognize_an_openai_archive(
    openai_archive: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shared: Callable[..., Path],
) -> None:
    from models.clip.bundle import load_bundle, save_bundle
    from models.detector import FaceDetector
    from models.train.bundle import train_recognizer

    # ORL's close-ups need the training input size (config [train] detector_input_size).
    detector = FaceDetector.from_name("scrfd_2.5g", shared("models"), input_size=320)

    digest = registry.sha256_file(openai_archive)
    manifest = registry.load_manifest()
    model_dir = tmp_path / "models"
    with serve_folder(openai_archive.parent) as base:
        manifest[OPENAI_WEIGHTS] = dataclasses.replace(
            manifest[OPENAI_WEIGHTS], url=f"{base}/RN50.pt", sha256=digest, size=None
        )
        monkeypatch.setattr(registry, "load_manifest", lambda: manifest)
        fetched = registry.fetch(OPENAI_WEIGHTS, model_dir)
    assert fetched == model_dir / "RN50.pt" and registry.sha256_file(fetched) == digest
    (result,) = registry.verify_all(model_dir, [OPENAI_WEIGHTS])
    assert result.status == "ok"

    model, identity = build_clip("RN50", "openai", model_dir)
    assert identity.pretrained == "openai" and identity.weights_sha256 == digest
    assert model.visual.output_dim == 1024 and model.context_length == 77

    people, skipped = scan_people(shared("faces", "att_orl"))
    people = {name: files[:4] for name, files in sorted(people.items())[:3]}
    settings = train_settings(epochs=1, min_images=2, device="cpu")
    bundle, report = train_recognizer(
        people,
        detector,
        "RN50",
        "openai",
        model_dir,
        settings,
        skipped=skipped,  # type: ignore[arg-type]
    )
    assert report["people"] == 3 and report["pretrained"] == "openai"
    assert bundle.models[OPENAI_WEIGHTS]["sha256"] == digest
    path = save_bundle(bundle, tmp_path / "people.bundle")
    assert load_bundle(path).identity == identity

    onnx = ClipRecognizer.load(path, model_dir, backend="onnx")
    torch_tower = ClipRecognizer.load(path, model_dir, backend="torch")
    photo = read_image(people[bundle.people[0]][-1])
    face = detector.detect(photo, mode="largest")[0]
    crop = onnx.align(photo, face)
    a, b = encode_crops(onnx.tower, [crop]), encode_crops(torch_tower.tower, [crop])
    assert np.abs(a - b).max() <= 1e-3 * float(np.abs(b).max())
    (prediction,) = onnx.predict([crop])
    assert prediction.best in bundle.people and 0.0 < prediction.confidence <= 1.0

    # A file that is not the one the manifest names is refused by its checksum.
    data = bytearray(fetched.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fetched.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt or a different version"):
        build_clip("RN50", "openai", model_dir)
