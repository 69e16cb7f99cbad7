"""Code shared by the fixture scripts: make_fixtures.py, make_traces.py and bench/make_full_size.py.

  * FIXTURES, REPO, REQUIREMENTS, MODELS_DIR: the paths the scripts share.
  * set_environment(): the environment variables that must be set before `tokenizers`/`transformers` are imported.
  * check_versions(): exit unless the packages pinned in Fixtures/requirements.txt are installed at those versions.
  * setup_torch(): quiet transformers' logging and, for reproducible outputs, make torch deterministic and
    single-threaded.
  * PREFIX_TOKENS, sorted_parameters(), init_mean_std(): the seeded-weight rules the scripts have in common (the
    parameter order, and the values of cls/register/mask tokens, DINOv3 layer scales and norm weights).
  * write_dinov3_preprocessor(): preprocessor_config.json as DINOv3ViTImageProcessor writes it.
  * chmod_outputs(): undo the 0600 mode safetensors gives its files.

Only the standard library is imported at module level, so that a script can import this module, set the
environment and check the pinned versions before torch, transformers or tokenizers is imported. Scripts in
Fixtures/ import it directly (their directory is sys.path[0]); bench/make_full_size.py puts Fixtures/ on sys.path
first.
"""

import importlib.metadata as md
import json
import os
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent
REPO = FIXTURES.parent
REQUIREMENTS = FIXTURES / "requirements.txt"
MODELS_DIR = FIXTURES / "models"


def set_environment(single_threaded_tokenizers=True):
    """Quiet, offline transformers; with single_threaded_tokenizers, also keep `tokenizers` (BPE training,
    encoding) single-threaded and deterministic. Call before `tokenizers` or `transformers` is imported."""
    if single_threaded_tokenizers:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def check_versions(script, outputs):
    """Exit unless every package pinned in requirements.txt is installed at exactly that version.

    script names the calling script and outputs what it writes, for the message (e.g. "make_traces.py", "traces").
    """
    problems = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, want = line.partition("==")
        if not sep:
            problems.append(f"requirements.txt line {line!r} is not an exact '==' pin")
            continue
        name, want = name.strip(), want.strip()
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            problems.append(f"{name}: not installed (need {want})")
            continue
        if have.split("+", 1)[0] != want:
            problems.append(f"{name}: installed {have}, pinned {want}")
    if problems:
        sys.exit(
            f"{script}: the installed packages do not match Fixtures/requirements.txt, so the {outputs}\n"
            "would not be reproducible:\n  " + "\n  ".join(problems) + "\n"
            "Create a venv with `pip install -r Fixtures/requirements.txt` (or use /work/venv-ref) and rerun."
        )


def setup_torch(deterministic=True):
    """Errors only from transformers' logging, no progress bars; with deterministic, torch uses deterministic
    algorithms on one thread."""
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------------------------------
# Seeded random weights
# --------------------------------------------------------------------------------------------------------------------
PREFIX_TOKENS = ("cls_token", "register_tokens", "mask_token")


def sorted_parameters(model):
    """(leaf name, owning module, parameter) for every parameter, in sorted name order (the order the random values
    are drawn in). Tied parameters appear once, so filling them in place keeps the tie."""
    modules = dict(model.named_modules())
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        module_name, _, leaf = name.rpartition(".")
        yield leaf, modules[module_name], p


def init_mean_std(leaf, module):
    """(mean, std) of the normal distribution for the parameters every script fills alike: cls/register/mask tokens
    N(0, 0.5), DINOv3 layer scales (lambda1) 0.1 + N(0, 0.05), norm weights 1 + N(0, 0.1). None for the others
    (Linear/Conv/embedding weights, biases), whose std each script chooses."""
    if leaf in PREFIX_TOKENS:
        return 0.0, 0.5
    if leaf == "lambda1":
        return 0.1, 0.05
    if "norm" in type(module).__name__.lower() and leaf == "weight":
        return 1.0, 0.1
    return None


# --------------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------------
def write_dinov3_preprocessor(out_dir, height, width):
    """Write out_dir/preprocessor_config.json, byte-for-byte what
    DINOv3ViTImageProcessor(size={"height": height, "width": width}).save_pretrained() writes (ImageNet mean/std),
    without needing torchvision and Pillow. Returns the text written."""
    config = {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "DINOv3ViTImageProcessor",
        "image_std": [0.229, 0.224, 0.225],
        "resample": 2,
        "rescale_factor": 1 / 255,
        "size": {"height": height, "width": width},
    }
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    (out_dir / "preprocessor_config.json").write_text(text, encoding="utf-8")
    return text


def chmod_outputs(*roots):
    """Every file below the roots 0644 and every directory 0755 (safetensors creates its files 0600)."""
    for root in roots:
        for p in root.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
