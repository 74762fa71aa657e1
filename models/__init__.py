"""Vision core: detection, alignment, CLIP classifier, embedders, model files.

Knows nothing of Qt, of the kiosk or of people's records. Heavy libraries (torch,
open_clip, onnxruntime) are imported when a model is loaded, not when a module is
imported.
"""
