"""Vision core: detection, alignment, CLIP classifier, embedders, model files.

Knows nothing of Qt or of people's records. Heavy libraries (torch, open_clip,
onnxruntime) are imported when a model is loaded, not when a module is imported.
"""

# Files read as photos wherever a folder of them is taken (OpenCV reads them all).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}
)
