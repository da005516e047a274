"""Open-set arm (b): a tiny random Stable-Diffusion-style pipeline, built offline and reloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synthequiv.generation.openset import (
    OpenSetConfig,
    build_prompts,
    load_text_to_image,
    sample_pretrained,
    to_dataset_format,
)
from synthequiv.utils import SynthequivError

CLASSES = ["cat", "maple_tree"]


def build_tiny_pipeline(path: Path) -> Path:
    """Save a randomly initialised SD-style pipeline (native 32 px) to `path`; no download.

    Tokenizer: a CLIP BPE vocab of printable ASCII characters (plus their end-of-word
    variants) and no merges, written to disk and read back like a real tokenizer folder.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = [chr(i) for i in range(33, 127)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({c: len(vocab) + i for i, c in enumerate(chars)})
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(chars)})
    tok_dir = path.parent / f"{path.name}_vocab"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=77)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(  # 2 blocks → latent 16 px ↔ image 32 px
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    with torch.no_grad():  # a few prompt tokens among 77 barely move a random UNet: amplify them
        for name, module in unet.named_modules():
            if name.endswith("attn2"):  # cross-attention
                module.to_out[0].weight.mul_(10.0)
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # kernels this small gain nothing from threads, and on a busy shared CPU the thread pool's
    # spin-waits make each call ~10x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = build_tiny_pipeline(tmp_path_factory.mktemp("t2i") / "tiny-sd")
    yield path, load_text_to_image(str(path))
    torch.set_num_threads(threads)


def _cfg(path: Path, **kw) -> OpenSetConfig:
    return OpenSetConfig(kind="pretrained", model=str(path), num_inference_steps=2, **kw)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.int() - b.int()).abs().max())


class _Recorder:
    """Delegates to a pipeline and records the prompts it was called with."""

    def __init__(self, pipe):
        self.pipe, self.prompts = pipe, []

    def __call__(self, prompts, **kw):
        self.prompts += list(prompts)
        return self.pipe(prompts, **kw)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("out_shape", [(1, 8, 8), (3, 28, 28)])
def test_shape_dtype_and_label_order(tiny, out_shape):
    path, pipe = tiny
    labels = torch.tensor([0, 1, 1, 0, 1, 0])  # 2 classes × 3 images, interleaved
    rec = _Recorder(pipe)
    images = sample_pretrained(
        rec, CLASSES, labels, _cfg(path, batch_size=3), out_shape, progress=False
    )
    assert images.shape == (6, *out_shape) and images.dtype == torch.uint8
    assert images.float().std() > 0  # not a constant (e.g. black) image
    assert rec.prompts == build_prompts(CLASSES, labels, "a photo of a {class_name}")
    # image i is made from index i and label i: re-making it alone gives the same image
    for i in (0, 1):
        alone = sample_pretrained(
            pipe, CLASSES, labels[i : i + 1], _cfg(path), out_shape, progress=False, index_offset=i
        )
        assert _max_diff(alone[0], images[i]) <= 1


def test_prompt_changes_image(tiny):
    """Same index (same noise), other class name → another image: the prompt is really used."""
    path, pipe = tiny
    cats = sample_pretrained(
        pipe, CLASSES, torch.tensor([0, 0]), _cfg(path), (3, 28, 28), progress=False
    )
    trees = sample_pretrained(
        pipe, CLASSES, torch.tensor([1, 1]), _cfg(path), (3, 28, 28), progress=False
    )
    assert _max_diff(cats[0], trees[0]) > 10 and _max_diff(cats[1], trees[1]) > 10


def test_batch_size_and_sharding_do_not_change_images(tiny):
    path, pipe = tiny
    labels, shape = torch.tensor([0, 0, 1, 1]), (3, 28, 28)

    def run(labels, batch_size, **kw):
        cfg = _cfg(path, batch_size=batch_size, seed=kw.pop("seed", 0))
        return sample_pretrained(pipe, CLASSES, labels, cfg, shape, progress=False, **kw)

    four = run(labels, 4)
    # shards [0] | [1, 2, 3], each call padded to 4 rows: bit-identical to one call
    shards = torch.cat([run(labels[:1], 4), run(labels[1:], 4, index_offset=1)])
    assert torch.equal(shards, four)
    # other batch size: same noise per image; other kernel shapes may cross a rounding edge
    one = run(labels, 1)
    assert _max_diff(one, four) <= 1 and (one != four).float().mean() < 0.01
    assert _max_diff(run(labels, 4, seed=1), four) > 10  # the seed matters
    assert _max_diff(four[0], four[1]) > 10  # same class, other index → other image


def test_empty_labels(tiny):
    path, pipe = tiny
    images = sample_pretrained(
        pipe, CLASSES, torch.zeros(0, dtype=torch.int64), _cfg(path), (1, 8, 8)
    )
    assert images.shape == (0, 1, 8, 8) and images.dtype == torch.uint8


# ----------------------------------------------------------------------------- prompts / format


def test_prompts_contain_class_names():
    prompts = build_prompts(CLASSES, torch.tensor([1, 0, 1]), "a photo of a {class_name}, blurry")
    assert prompts == [
        "a photo of a maple tree, blurry",
        "a photo of a cat, blurry",
        "a photo of a maple tree, blurry",
    ]
    with pytest.raises(SynthequivError, match="class_name"):
        build_prompts(CLASSES, torch.tensor([0]), "a photo of a thing")
    with pytest.raises(SynthequivError, match="labels"):
        build_prompts(CLASSES, torch.tensor([2]), "{class_name}")


def test_to_dataset_format_crop_resize_gray():
    rgb = torch.zeros(1, 3, 4, 8)
    rgb[:, 0] = 1.0  # pure red, wider than tall
    rgb[..., :2] = 0.0  # black side bands: removed by the centre crop to a square
    rgb[..., 6:] = 0.0
    gray = to_dataset_format(rgb, (1, 2, 2))
    assert gray.shape == (1, 1, 2, 2) and gray.dtype == torch.uint8
    assert torch.all(gray == 76)  # round(0.299 · 255)
    color = to_dataset_format(rgb, (3, 4, 4))
    assert torch.all(color[:, 0] == 255) and torch.all(color[:, 1:] == 0)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("/definitely/not/here/sd", "folder not found"),
        ("./no-such-model-folder", "folder not found"),
        ("nobody-xyz/no-such-model", "download it to a folder"),  # hub-id shaped, not cached
    ],
)
def test_missing_model_offline_is_one_line_error(monkeypatch, tmp_path, model, says):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at call time: no network attempt, no hang
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SynthequivError) as info:
        load_text_to_image(model)
    message = str(info.value)
    assert "\n" not in message and model in message and says in message


def test_folder_without_pipeline_is_error(tmp_path):
    with pytest.raises(SynthequivError, match="model_index.json"):
        load_text_to_image(str(tmp_path))


def test_half_precision_on_cpu_is_error(tiny):
    with pytest.raises(SynthequivError, match="CUDA"):
        load_text_to_image(str(tiny[0]), device="cpu", dtype="float16")


@pytest.mark.parametrize(
    "bad",
    [
        {"guidance_scale": -0.5},
        {"num_inference_steps": 0},
        {"num_inference_steps": -3},
        {"batch_size": 0},
        {"batch_size": -1},
        {"kind": "nope"},
        {"model": ""},
        {"kind": "source"},
        {"prompt_template": "no placeholder"},
        {"image_size_px": -8},
    ],
)
def test_config_validation(bad):
    kw = {"kind": "pretrained", "model": "some/model"} | bad
    with pytest.raises(SynthequivError):
        OpenSetConfig(**kw)


def test_config_defaults_are_valid():
    OpenSetConfig()
    OpenSetConfig(kind="pretrained", model="x", guidance_scale=0.0)


def test_open_set_source_holding_the_study_test_images_is_refused(tmp_path, digits):
    """openset.kind=source pointed at data that contains the study's hold-out test images
    would train the open-set generator on the test set: refused before any training."""
    import numpy as np

    from synthequiv import config as C
    from synthequiv.orchestration.study import run_study
    from synthequiv.utils import SynthequivError

    npz = tmp_path / "same.npz"
    np.savez(npz, images=digits.images[:, 0].numpy(), labels=digits.labels.numpy())
    cfg = C.resolve("quick", None, ["openset.kind=source", f"openset.source=npz:{npz}",
                                     "grid.replicates=1", "device=cpu"])
    with pytest.raises(SynthequivError, match=r"contains 1297 of the study's 1297 test images"):
        run_study(cfg, tmp_path / "run", progress=False)
    assert not list((tmp_path / "run").glob("generators/*/checkpoint.pt"))
