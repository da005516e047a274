"""Open-set arm (b): synthetic images from a pretrained text-to-image diffusers pipeline.

A pipeline such as Stable Diffusion is loaded with `DiffusionPipeline.from_pretrained(path_or_id)`
and prompted with one class-name prompt per requested image ("a photo of a {class_name}").
It generates at its own resolution; each image is then centre-cropped to the dataset's aspect
ratio, resized (antialiased) to the dataset's H×W and converted to its channels (1 → luma "L",
3 → RGB), giving the project's uint8 [N, C, H, W] format.

Per-sample seeding (STYLE 10): image i gets its own CPU `torch.Generator`,
`sampling.sample_rng(cfg.seed, index_offset + i)` (the closed-set arm's scheme), so its noise
does not depend on the batch size, device or sharding. Every pipeline call has exactly
`batch_size` rows (the last one padded), so for a given batch size image i is bit-identical
however the indices are sharded; across batch sizes it is equal up to kernel rounding
(≤ 1 uint8 level) — a black-box pipeline cannot be blocked row-wise like sampling.py's UNet.

The other open-set kinds ("pool": the project's generator trained on the whole pool, "source":
trained on another data source) are handled by the generator stage; only "pretrained" lives here.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from synthequiv.generation.config import OPENSET_KINDS, OpenSetConfig  # noqa: F401
from synthequiv.generation.sampling import sample_rng
from synthequiv.utils import SynthequivError, resolve_device

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ----------------------------------------------------------------------------- prompts / seeds


def build_prompts(class_names: list[str], labels: torch.Tensor, template: str) -> list[str]:
    """One prompt per label, in label order: template.format(class_name=<name, '_' → ' '>)."""
    if "{class_name}" not in template:
        raise SynthequivError(f"prompt template must contain '{{class_name}}', got '{template}'")
    labels = _check_labels(labels, len(class_names))
    names = [str(n).replace("_", " ") for n in class_names]
    try:
        per_class = [template.format(class_name=n) for n in names]
    except (KeyError, IndexError, ValueError) as exc:
        raise SynthequivError(f"bad prompt template '{template}': {exc!r}") from exc
    return [per_class[y] for y in labels.tolist()]


def _check_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise SynthequivError(
            f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise SynthequivError(
            f"labels must lie in [0, {num_classes}), got {int(labels.min())}..{int(labels.max())}"
        )
    return labels.cpu()


# ----------------------------------------------------------------------------- loading


def load_text_to_image(model: str, device="cpu", dtype: str = "auto"):
    """Load a diffusers text-to-image pipeline from a local folder or a hub id, on `device`.

    dtype "auto": float32 on CPU; bfloat16 on CUDA where supported, else float16. Half
    precision on CPU is refused. A hub id is looked up in the local cache first; the network
    is tried only when that fails and HF_HUB_OFFLINE is not set (read at call time).
    """
    dev = resolve_device(str(device))
    torch_dtype = _resolve_dtype(dtype, dev)
    pipe = _from_pretrained(str(model), torch_dtype)
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _resolve_dtype(dtype: str, dev: torch.device) -> torch.dtype:
    if dtype == "auto":
        if dev.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in _DTYPES:
        raise SynthequivError(f"dtype must be auto or one of {tuple(_DTYPES)}, got '{dtype}'")
    if dtype != "float32" and dev.type != "cuda":
        raise SynthequivError(f"dtype {dtype} needs a CUDA device (got {dev}); use float32 on CPU")
    return _DTYPES[dtype]


def _from_pretrained(model: str, torch_dtype: torch.dtype):
    try:
        from diffusers import DiffusionPipeline
    except ImportError as exc:
        raise SynthequivError(f"the open-set pretrained arm needs diffusers: {exc}") from exc
    if not model:
        raise SynthequivError("no text-to-image model given (a local folder or a hub id)")
    has_accelerate = importlib.util.find_spec("accelerate") is not None
    kw = {"torch_dtype": torch_dtype, "low_cpu_mem_usage": has_accelerate}
    local = Path(model).expanduser()
    if local.exists():
        if not (local / "model_index.json").is_file():
            raise SynthequivError(
                f"{local} is not a diffusers pipeline folder (no model_index.json)"
            )
        return _try_load(DiffusionPipeline, str(local), kw, f"cannot load the pipeline in {local}")
    if _looks_like_path(model):
        raise SynthequivError(
            f"text-to-image model folder not found: {model} "
            "(pass a diffusers pipeline folder, or a hub id 'org/name')"
        )
    hint = (
        f"'{model}' is not a local folder and could not be loaded from the Hugging Face cache"
        f"{'' if _offline() else ' or Hub'}; download it to a folder (e.g. `hf download {model} "
        f"--local-dir DIR` on a machine with network) and pass that folder"
    )
    try:
        return _quiet_from_pretrained(DiffusionPipeline, model, local_files_only=True, **kw)
    except Exception as exc:  # not cached: go online below, or report one line
        if _offline():
            raise SynthequivError(f"{hint} (HF_HUB_OFFLINE is set: the Hub was not tried)") from exc
    return _try_load(DiffusionPipeline, model, kw, hint)


def _try_load(cls, model: str, kw: dict, what: str):
    # diffusers/huggingface_hub/transformers raise many unrelated types (OSError, ValueError,
    # EntryNotFoundError, httpx errors, ImportError for a missing component library): the user
    # needs one line saying what was tried, with the original kept as __cause__.
    try:
        return _quiet_from_pretrained(cls, model, **kw)
    except Exception as exc:
        raise SynthequivError(f"{what} ({type(exc).__name__}: {_first_line(exc)})") from exc


def _quiet_from_pretrained(cls, model: str, **kw):
    # recent diffusers renamed torch_dtype → dtype and warn; older ones know only torch_dtype
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*torch_dtype.*deprecated", category=FutureWarning
        )
        return cls.from_pretrained(model, **kw)


def _looks_like_path(model: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything else with a separator is meant as a path."""
    return (
        model.startswith(("/", ".", "~"))
        or "\\" in model
        or model.count("/") > 1
        or model.endswith("/")
    )


def _offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ----------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_pretrained(
    pipe,
    class_names: list[str],
    labels: torch.Tensor,
    cfg: OpenSetConfig,
    out_shape: tuple[int, int, int],
    device="cpu",
    progress: bool = True,
    index_offset: int = 0,
) -> torch.Tensor:
    """Images for `labels` (one per label, same order) → uint8 [N, C, H, W] on the CPU.

    out_shape: (C, H, W) of the dataset, C ∈ {1, 3}. Image i uses the generator of global
    index `index_offset + i`, so shards [0, k) and [k, N) with index_offset=k equal one call.
    """
    channels, height, width = _check_shape(out_shape)
    prompts = build_prompts(class_names, labels, cfg.prompt_template)
    dev = resolve_device(str(device))
    if dev.type != "cuda" and getattr(pipe, "dtype", torch.float32) in (
        torch.float16,
        torch.bfloat16,
    ):
        raise SynthequivError(
            f"pipeline is in {pipe.dtype}, which needs CUDA; load it with device='{dev}'"
        )
    pipe.to(dev)
    starts = range(0, len(prompts), cfg.batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="open-set sampling", unit="batch")
    out = [torch.zeros(0, channels, height, width, dtype=torch.uint8)]
    for start in starts:
        batch = prompts[start : start + cfg.batch_size]
        gens = [sample_rng(cfg.seed, index_offset + start + j) for j in range(len(batch))]
        # pad to exactly batch_size rows (throw-away rows on negative indices): kernels pick
        # their rounding by shape, so with one shape image i is bit-identical however the
        # indices are sharded (across batch sizes: same noise, equal up to rounding)
        pad = cfg.batch_size - len(batch)
        batch += batch[-1:] * pad
        gens += [sample_rng(cfg.seed, -1 - j) for j in range(pad)]
        rgb = _call_pipe(pipe, batch, gens, cfg)[: cfg.batch_size - pad]  # [B, 3, h, w] in [0, 1]
        out.append(to_dataset_format(rgb, (channels, height, width)))
    return torch.cat(out)


def _call_pipe(
    pipe, prompts: list[str], gens: list[torch.Generator], cfg: OpenSetConfig
) -> torch.Tensor:
    kw = {
        "num_inference_steps": cfg.num_inference_steps,
        "guidance_scale": cfg.guidance_scale,
        "generator": gens,
        "output_type": "np",
    }
    if (
        cfg.negative_prompt
    ):  # only pipelines that take one get it; a str would not match a list prompt
        kw["negative_prompt"] = [cfg.negative_prompt] * len(prompts)
    if cfg.image_size_px:
        kw["height"] = kw["width"] = cfg.image_size_px
    result = pipe(prompts, **kw)
    flagged = getattr(result, "nsfw_content_detected", None) or []
    if any(bool(f) for f in flagged):  # SD's safety checker returns those images black
        warnings.warn(
            f"{sum(map(bool, flagged))}/{len(prompts)} images blacked out by the "
            "pipeline's safety checker",
            stacklevel=2,
        )
    images = np.asarray(result.images, dtype=np.float32)  # [B, h, w, 3]
    if images.ndim != 4 or images.shape[0] != len(prompts) or images.shape[-1] not in (1, 3, 4):
        raise SynthequivError(
            f"pipeline returned images of shape {images.shape}, expected [B, h, w, 3]"
        )
    rgb = torch.from_numpy(images[..., :3] if images.shape[-1] != 1 else images.repeat(3, -1))
    return torch.nan_to_num(rgb.permute(0, 3, 1, 2)).clamp(0, 1)


def to_dataset_format(rgb: torch.Tensor, out_shape: tuple[int, int, int]) -> torch.Tensor:
    """[B, 3, h, w] float in [0, 1] → uint8 [B, C, H, W]: centre-crop to H/W aspect, antialiased
    bilinear resize, luma for C = 1 (PIL 'L' weights 0.299, 0.587, 0.114)."""
    channels, height, width = _check_shape(out_shape)
    h, w = rgb.shape[-2:]
    if h * width != w * height:  # crop the longer side so the resize keeps the aspect ratio
        ch, cw = min(h, round(w * height / width)), min(w, round(h * width / height))
        top, left = (h - ch) // 2, (w - cw) // 2
        rgb = rgb[..., top : top + ch, left : left + cw]
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(1, 3, 1, 1)
        rgb = (rgb * weights).sum(1, keepdim=True)
    if tuple(rgb.shape[-2:]) != (height, width):
        rgb = F.interpolate(
            rgb, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def _check_shape(out_shape) -> tuple[int, int, int]:
    if len(tuple(out_shape)) != 3:
        raise SynthequivError(f"out_shape must be (C, H, W), got {tuple(out_shape)}")
    channels, height, width = (int(v) for v in out_shape)
    if channels not in (1, 3) or height <= 0 or width <= 0:
        raise SynthequivError(f"out_shape must be (1 or 3, H > 0, W > 0), got {tuple(out_shape)}")
    return channels, height, width
