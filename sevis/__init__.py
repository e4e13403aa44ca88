"""sevis: see what Squeeze-and-Excitation and Spatial Group-wise Enhance layers do.

    import sevis
    model = sevis.load_model("se_resnet50")
    x = sevis.preprocess(model, [sevis.decode_image(open("cat.jpg", "rb").read())])
    with sevis.capture(model) as cap:
        logits = model(x)
    cap.excitations["SE_5_2"]  # (1, 2048)
"""

from .analysis import Analysis, Failure, ImageResult, analyse
from .archive import LabelledFile, read_zip
from .attention import AttentionLayer, find_attention, register_attention
from .capture import Capture, capture
from .errors import ArchiveError, CheckpointError, ImageError, UnknownModelError, WeightsUnavailableError
from .images import decode_image, model_view, normalise, preprocess
from .models import ModelInfo, list_models, list_weights_files, load_model, model_info, weights_dir
from .sge import SpatialGroupEnhance
from .stats import ALL, ExcitationStats, MaskStats, mask_summary, predicted_labels

__version__ = "0.1.0"

__all__ = [
    "ALL",
    "Analysis",
    "ArchiveError",
    "AttentionLayer",
    "Capture",
    "CheckpointError",
    "ExcitationStats",
    "Failure",
    "ImageError",
    "ImageResult",
    "LabelledFile",
    "MaskStats",
    "ModelInfo",
    "SpatialGroupEnhance",
    "UnknownModelError",
    "WeightsUnavailableError",
    "analyse",
    "capture",
    "decode_image",
    "find_attention",
    "list_models",
    "list_weights_files",
    "load_model",
    "mask_summary",
    "model_info",
    "model_view",
    "normalise",
    "predicted_labels",
    "preprocess",
    "read_zip",
    "register_attention",
    "weights_dir",
]
