"""Vision core: detection, alignment, CLIP classifier, embedders, model files.

Knows nothing of Qt, of the kiosk or of people's records. Heavy libraries (torch,
open_clip, onnxruntime) are imported when a model is loaded, not when a module is
imported.
"""

import os

# OpenCV reads these when it is first imported (always after this package):
# - its own decoder limit, a second line of defence behind models.io.read_image's;
# - its logging, which otherwise prints warnings and errors to the terminal for every
#   failed camera open, every retry and every truncated image ("Camera index out of
#   range", "can't open camera by index"), where our own message says it once. FATAL
#   keeps only what comes before a crash.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**27))
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
