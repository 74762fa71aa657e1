"""Vision core: detection, alignment, CLIP classifier, embedders, model files.

Knows nothing of Qt, of the kiosk or of people's records. Heavy libraries (torch,
open_clip, onnxruntime) are imported when a model is loaded, not when a module is
imported.
"""

import os

# OpenCV reads these when it is first imported (always after this package):
# - its own decoder limit, a second line of defence behind models.io.read_image's;
# - its logging, which otherwise prints a dozen warnings to the terminal for every
#   failed camera open and every truncated image, where our own message says it once.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**27))
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
