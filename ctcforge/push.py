"""Uploading a language repo to the Hugging Face Hub.

What goes is an allowlist, never "everything minus a denylist": a repo folder collects
checkpoints, pickles, caches and sometimes secrets, and a forgotten denylist entry would
publish them. Before anything is sent the card's YAML is parsed back with huggingface_hub
and every file to upload is scanned for a Hub token. The upload itself is one commit, so a
failure leaves nothing half-done on the Hub and a rerun sends the same operations.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable, Iterator

import httpx2
import yaml
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError
from huggingface_hub.utils import validate_repo_id

from ctcforge import __version__
from ctcforge.export import EXPORT_DIR, EXPORT_FILES
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import (CONFIG_FILE, KENLM_EXTENSIONS, PREPROCESSOR_FILE, RUNTIME_FOLDER,
                                         TOKENIZER_FILES, TRAINING_RUN_FILE, check_weight_files, eval_file_names,
                                         has_weights, trained_weights_folder)
from ctcforge.runtime.vocabulary import check_labels

CARD = "README.md"
LOGIN_FIX = "log in with `hf auth login` or set HF_TOKEN to a token with write access"

# ---------------------------------------------------------------------------- the allowlist

WEIGHT_GLOBS = ("*.safetensors", "*.safetensors.index.json")
# A language adapter's tensors (MMS), which from_pretrained(..., target_lang=...) loads over
# the full weights; with --adapter-only they go and the full weights stay home.
ADAPTER_GLOB = "adapter.*.safetensors"
CONFIG_FILES = {CONFIG_FILE, PREPROCESSOR_FILE, "generation_config.json"}
TOKENIZER_FILES = set(TOKENIZER_FILES)
EVAL_OUTPUT_GLOBS = tuple(vars(eval_file_names("*")).values())
ROOT_FILES = CONFIG_FILES | TOKENIZER_FILES | {
    "alphabet.json", CARD, "language_profile.json",
    "trainer_state.json", "training_hyperparameters.json",
    # What the repo was fine-tuned from and the run that trained it (its command, steps and
    # versions): the card quotes both, and `ctcforge card` on a clone rebuilds from them.
    "base_model.json", "training_run.json",
    "all_results.json", "train_results.json", "eval_results.json",
    ".gitattributes", ".gitignore", ".ctcforge-answers.yml",
}
# The repo's two scripts (training and eval.py) sit at the root, their runtime in its folder.
ROOT_GLOBS = WEIGHT_GLOBS + EVAL_OUTPUT_GLOBS + ("*.py", "requirements*.txt")
CHECKPOINT_GLOB = "checkpoint-*"
# A checkpoint folder, when asked for, carries a loadable model and its trainer state only.
CHECKPOINT_GLOBS = WEIGHT_GLOBS + tuple(sorted(CONFIG_FILES | TOKENIZER_FILES)) + ("trainer_state.json",)
CARD_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".svg"}


@dataclass(frozen=True)
class FolderRule:
    globs: tuple[str, ...]
    any_depth: bool  # False: only files directly inside the folder


FOLDER_RULES = {
    # pyctcdecode's layout (`ctcforge lm` writes lm.binary); `*.bin` here is a KenLM
    # binary too, not a pickle.
    "language_model": FolderRule((*(f"*{extension}" for extension in KENLM_EXTENSIONS), "unigrams.txt",
                                  "attrs.json"), any_depth=False),
    "tests": FolderRule(("*.py",), any_depth=True),
    RUNTIME_FOLDER: FolderRule(("*.py",), any_depth=False),
    "eval": FolderRule(EVAL_OUTPUT_GLOBS, any_depth=True),  # eval/greedy, eval/lm
    "lm_tuning": FolderRule(("*",), any_depth=True),  # wer_grid.csv, wer_heatmap.png, best.json
    EXPORT_DIR: FolderRule(EXPORT_FILES, any_depth=False),  # `ctcforge export`: model.onnx, tokens.txt, ...
}

# ---------------------------------------------------------------------------- never, by reason
# Checked before the allowlist, so no allow rule can let one of these through, and so the
# dry run can say why each file stayed home.

SECRETS = "secrets and token stores (.env, token, *.token, .huggingface/, .cache/)"
GIT = "git internals (.git/)"
CACHES = "caches (__pycache__/, .pytest_cache/)"
LOGS = "training logs (runs/, wandb/)"
TRAINING_STATE = "optimizer, scheduler and RNG states, training_args.bin"
PICKLES = "pickled weights (*.pt, *.pth, *.pkl, *.bin outside language_model/)"
CHECKPOINTS = "checkpoint folders (add --include-checkpoints)"
SYMLINKED_FOLDERS = "symlinked folders (not followed)"
NOT_ALLOWED = "not in the allowlist"
FULL_WEIGHTS = "the full model weights (--adapter-only)"

TRAINING_STATE_NAMES = {"optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "training_args.bin"}
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def _is_secret(parts: tuple[str, ...]) -> bool:
    name = parts[-1]
    return (name == ".env" or name.startswith(".env.") or name == "token" or name.endswith(".token")
            or any(part in (".huggingface", ".cache") for part in parts[:-1]))


def _is_pickle(parts: tuple[str, ...]) -> bool:
    suffix = Path(parts[-1]).suffix
    return suffix in PICKLE_SUFFIXES or (suffix == ".bin" and parts[:-1] != ("language_model",))


NEVER_RULES: tuple[tuple[str, Callable[[tuple[str, ...]], bool]], ...] = (
    (SECRETS, _is_secret),
    (GIT, lambda parts: ".git" in parts[:-1]),
    (CACHES, lambda parts: any(part in ("__pycache__", ".pytest_cache") for part in parts[:-1])),
    (LOGS, lambda parts: any(part in ("runs", "wandb") for part in parts[:-1])),
    (TRAINING_STATE, lambda parts: parts[-1] in TRAINING_STATE_NAMES or parts[-1].startswith("rng_state")),
    (PICKLES, _is_pickle),
)


def _matches(name: str, globs: tuple[str, ...] | set[str]) -> bool:
    return any(fnmatchcase(name, glob) for glob in globs)


def is_allowed(parts: tuple[str, ...], card_images: set[str]) -> bool:
    """Whether a repo-relative path is on the allowlist (the never rules, and whether
    checkpoints were asked for, aside)."""
    name = parts[-1]
    if "/".join(parts) in card_images:
        return True
    if len(parts) == 1:
        return name in ROOT_FILES or _matches(name, ROOT_GLOBS)
    if fnmatchcase(parts[0], CHECKPOINT_GLOB):
        return len(parts) == 2 and _matches(name, CHECKPOINT_GLOBS)
    rule = FOLDER_RULES.get(parts[0])
    return rule is not None and (rule.any_depth or len(parts) == 2) and _matches(name, rule.globs)


def exclusion_reason(parts: tuple[str, ...], include_checkpoints: bool, card_images: set[str]) -> str | None:
    """Why a repo-relative path stays home, or None when it is uploaded."""
    for reason, applies in NEVER_RULES:
        if applies(parts):
            return reason
    if fnmatchcase(parts[0], CHECKPOINT_GLOB) and len(parts) > 1 and not include_checkpoints:
        return CHECKPOINTS
    return None if is_allowed(parts, card_images) else NOT_ALLOWED


# ---------------------------------------------------------------------------- the card's images

MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
HTML_IMAGE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


def card_images(repo: Path) -> set[str]:
    """Repo-relative paths of the local images README.md shows; a link to an image that is not
    a file inside the repo is refused, since the card would show it broken on the Hub."""
    card = repo / CARD
    if not card.is_file():
        return set()
    text = card.read_text(encoding="utf-8")
    found = set()
    for link in MARKDOWN_IMAGE.findall(text) + HTML_IMAGE.findall(text):
        target = re.split(r"[?#]", link, maxsplit=1)[0]
        if re.match(r"[a-zA-Z][\w+.-]*:", link) or not target:  # http(s):, data: and the like
            continue
        if Path(target).suffix.lower() not in CARD_IMAGE_SUFFIXES:
            continue
        local = (repo / target.lstrip("/")).resolve()
        if not (local.is_relative_to(repo.resolve()) and local.is_file()):
            raise CtcforgeError(f"{card}: shows image {link!r}, which is not a file inside the repo; "
                                "add the image to the repo or remove the link")
        found.add(local.relative_to(repo.resolve()).as_posix())
    return found


# ---------------------------------------------------------------------------- what goes

@dataclass
class UploadPlan:
    repo: Path
    files: list[Path]  # repo-relative, sorted
    left_out: Counter = field(default_factory=Counter)  # reason -> number of files

    def size(self, path: Path) -> int:
        return (self.repo / path).stat().st_size


def plan_upload(repo_dir: Path, include_checkpoints: bool = False) -> UploadPlan:
    """Every file under repo_dir, sorted into what goes and what stays home (counted by reason)."""
    repo = Path(repo_dir)
    if not repo.is_dir():
        raise CtcforgeError(f"{repo}: no such folder; pass the folder `ctcforge new` made")
    images = card_images(repo)
    plan = UploadPlan(repo, [])
    for folder, dirnames, filenames in os.walk(repo):
        here = Path(folder)
        # os.walk does not descend symlinked folders; count them so the dry run says so.
        if linked := sum((here / name).is_symlink() for name in dirnames):
            plan.left_out[SYMLINKED_FOLDERS] += linked
        for name in filenames:
            relative = (here / name).relative_to(repo)
            reason = exclusion_reason(relative.parts, include_checkpoints, images)
            if reason:
                plan.left_out[reason] += 1
            else:
                _check_link_stays_inside(repo, relative)
                plan.files.append(relative)
    plan.files.sort(key=Path.as_posix)
    return plan


def _check_link_stays_inside(repo: Path, relative: Path) -> None:
    """A symlink to a file outside the repo would upload something the repo does not hold."""
    path = repo / relative
    if not path.is_symlink():
        return
    target = path.resolve()
    if not (target.is_relative_to(repo.resolve()) and target.is_file()):
        raise CtcforgeError(f"{path}: a symlink to {target}, which is not a file inside the repo; "
                            "copy the file into the repo instead of linking it")


def adapter_only(plan: UploadPlan) -> UploadPlan:
    """--adapter-only: the language adapters go and the full weights stay home, for a user
    who has the base model; pipeline() from the Hub then cannot load the repo alone."""
    root_weights = [path for path in plan.files if len(path.parts) == 1 and _matches(path.name, WEIGHT_GLOBS)]
    full = [path for path in root_weights if not fnmatchcase(path.name, ADAPTER_GLOB)]
    if len(full) == len(root_weights):
        raise CtcforgeError(f"{plan.repo}: --adapter-only, but it holds no {ADAPTER_GLOB}: train an adapter "
                            "model first (a repo stamped from facebook/mms-1b-all), or push without --adapter-only")
    plan.files = [path for path in plan.files if path not in full]
    plan.left_out[FULL_WEIGHTS] += len(full)
    return plan


def files_to_upload(repo_dir: Path, include_checkpoints: bool = False) -> list[Path]:
    return plan_upload(repo_dir, include_checkpoints).files


def check_weights(plan: UploadPlan) -> None:
    """A model repo without its model is no use on the Hub: refuse, saying where the weights
    are (training with --output_dir elsewhere leaves them there) or that training comes first.
    There is no way round this: a repo that is not trained has nothing to publish yet."""
    if any(len(path.parts) == 1 and _matches(path.name, WEIGHT_GLOBS) for path in plan.files):
        return
    repo = plan.repo
    if has_weights(repo):  # pickled weights only, which the never rules keep home
        raise CtcforgeError(f"{repo}: its weights are pickles (pytorch_model.bin), which push never uploads; "
                            "load the model and save it again with save_pretrained, which writes model.safetensors")
    # The repo holds none, so a folder found here is the run's output_dir.
    trained_in = trained_weights_folder(repo)
    if trained_in is not None:
        raise CtcforgeError(f"{repo}: no weights to push; the trained model is in {trained_in} "
                            f"({TRAINING_RUN_FILE}): copy them into the repo or train with --output_dir ./")
    raise CtcforgeError(f"{repo}: no weights to push: train first with python run_speech_recognition_ctc.py "
                        "(see README.md, Training)")


def check_loadable(repo: Path) -> None:
    """What goes loads as eval.py loads it: every weights file readable to its end
    (`repo_files.check_weight_files`), and a label for every output of config.json and an
    output for every label (`vocabulary.check_labels`), or pipeline() would decode every
    clip into shifted letters. An adapter model's labels are its adapters' business."""
    from transformers import AutoTokenizer

    check_weight_files(repo)
    config = json.loads((repo / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("adapter_attn_dim"):
        return
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(repo))
    except (OSError, ValueError) as exc:
        raise CtcforgeError(f"{repo}: its tokenizer does not load ({one_line(exc)}); stamp it again with "
                            "`ctcforge update`") from None
    check_labels(tokenizer, int(config["vocab_size"]), str(repo), every_token=True)


# ---------------------------------------------------------------------------- token scan
# User access tokens are `hf_` and 34 letters and digits; organisation API tokens, from before
# user tokens, were `api_org_` and 34. Thirty or more catches both, and shortened pastes. Two
# patterns, each with a literal prefix, scan about ten times faster than one alternation.
TOKEN_PATTERNS = (re.compile(rb"hf_[A-Za-z0-9]{30,}"), re.compile(rb"api_org_[A-Za-z0-9]{30,}"))
SCAN_CHUNK = 16 * 2**20
# A token cut by a chunk boundary is found whole in the next chunk, which starts this far back.
SCAN_OVERLAP = 64


@dataclass(frozen=True)
class TokenHit:
    offset: int  # byte offset in the file
    line: int
    token: bytes

    def masked(self) -> str:
        """The prefix and two characters: enough to recognise which token, useless to anyone else."""
        prefix = b"api_org_" if self.token.startswith(b"api_org_") else b"hf_"
        shown = self.token[:len(prefix) + 2].decode("ascii")
        return f"{shown}... ({len(self.token)} characters)"


def find_token(path: Path) -> TokenHit | None:
    """The first Hub token in a file, read as bytes in chunks. Every file is scanned whole,
    weights included: safetensors headers carry free-form metadata, and the upload reads each
    file to hash it anyway, so the scan (over 1 GB/s) costs no more than that."""
    offset, line, tail = 0, 1, b""
    with open(path, "rb") as stream:
        while chunk := stream.read(SCAN_CHUNK):
            window = tail + chunk
            start = offset - len(tail)
            hits = [match for pattern in TOKEN_PATTERNS if (match := pattern.search(window))]
            if hits:
                first = min(hits, key=lambda match: match.start())
                # `line` counts the newlines before the chunk, the tail's included.
                newlines = window[:first.start()].count(b"\n") - tail.count(b"\n")
                return TokenHit(start + first.start(), line + newlines, first.group())
            line += chunk.count(b"\n")
            offset += len(chunk)
            tail = window[-SCAN_OVERLAP:]
    return None


def scan_for_tokens(repo_dir: Path, files: list[Path]) -> None:
    """Refuses the upload if any file to be sent holds a Hub token; the token is never printed."""
    for relative in files:
        hit = find_token(Path(repo_dir) / relative)
        if hit:
            raise CtcforgeError(
                f"{Path(repo_dir) / relative}: line {hit.line} (byte {hit.offset}) holds a Hugging Face "
                f"token ({hit.masked()}); "
                "remove it (and revoke it at https://huggingface.co/settings/tokens), then push again")


def mask_tokens(text: str) -> str:
    """Hub error messages are echoed to the user; make sure none of them echoes a token."""
    for pattern in TOKEN_PATTERNS:
        text = re.sub(pattern.pattern.decode("ascii"),
                      lambda match: TokenHit(0, 0, match.group().encode("ascii")).masked(), text)
    return text


# ---------------------------------------------------------------------------- card check

def check_card(repo_dir: Path) -> ModelCard:
    """The card as the Hub will read it: huggingface_hub must parse its YAML (model-index
    included), and it must name a language and a license, which the Hub files the model under.
    Eval results are not required: a freshly stamped repo has none yet."""
    path = Path(repo_dir) / CARD
    fix = f"fix it or rebuild it with `ctcforge card {repo_dir}`"
    if not path.is_file():
        raise CtcforgeError(f"{path}: missing; the model card must go with the model, {fix}")
    try:
        card = ModelCard(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise CtcforgeError(f"{path}: the YAML front matter does not parse ({one_line(exc)}); "
                            f"{fix}") from None
    missing = [key for key in ("language", "license") if not getattr(card.data, key, None)]
    if missing:
        raise CtcforgeError(f"{path}: the YAML front matter has no {' or '.join(missing)}; {fix}")
    return card


def one_line(exc: BaseException, limit: int = 200) -> str:
    # Masked before it is cut short: a cut could leave a token too short to be recognised.
    text = mask_tokens(" ".join(str(exc).split())) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------- push

def human_size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


def describe_plan(plan: UploadPlan) -> list[str]:
    """The dry run's report: each file with its size, then what was left out, by reason."""
    lines = [f"{human_size(plan.size(path)):>10}  {path.as_posix()}" for path in plan.files]
    total = sum(plan.size(path) for path in plan.files)
    lines.append(f"{len(plan.files)} files, {human_size(total)}")
    for reason, count in sorted(plan.left_out.items()):
        lines.append(f"left out: {count} {'file' if count == 1 else 'files'}: {reason}")
    return lines


def commit_operations(plan: UploadPlan) -> list[CommitOperationAdd]:
    return [CommitOperationAdd(path_in_repo=path.as_posix(), path_or_fileobj=str(plan.repo / path))
            for path in plan.files]


def check_repo_id(repo_id: str) -> None:
    """ORG/NAME, always: a bare NAME would land in whichever account the token belongs to."""
    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise CtcforgeError("--repo-id must be ORG/NAME (letters, digits, '-', '_', '.'), "
                            "e.g. my-org/wav2vec2-hy-AM")


def check_hub_reachable_and_logged_in(api) -> None:
    if constants.is_offline_mode():
        raise CtcforgeError(unreachable_message("HF_HUB_OFFLINE is set"))
    if not (getattr(api, "token", None) or get_token()):
        raise CtcforgeError(f"not logged in to the Hugging Face Hub: {LOGIN_FIX}")


def unreachable_message(why: str) -> str:
    return (f"the Hugging Face Hub is unreachable ({why}); nothing was sent. "
            "Check the network, or rehearse with --dry-run, which works offline")


def push(repo_dir: Path, repo_id: str, private: bool = False, dry_run: bool = False,
         include_checkpoints: bool = False, api: HfApi | None = None,
         say: Callable[[str], None] = print, adapters_only: bool = False) -> UploadPlan:
    """Uploads repo_dir's allowlisted files to repo_id in one commit (creating the repo if
    needed). Every check runs before the Hub is contacted; a dry run stops after them."""
    check_repo_id(repo_id)
    plan = plan_upload(repo_dir, include_checkpoints)
    check_weights(plan)
    if adapters_only:
        plan = adapter_only(plan)
    check_card(plan.repo)
    scan_for_tokens(plan.repo, plan.files)
    check_loadable(plan.repo)
    if dry_run:
        for line in describe_plan(plan):
            say(line)
        say(f"dry run: nothing sent; these files would go to {repo_id}")
        return plan
    api = api or HfApi()
    check_hub_reachable_and_logged_in(api)
    operations = commit_operations(plan)
    with hub_errors(repo_id):
        say(f"creating {repo_id} on the Hub unless it exists ({'private' if private else 'public'})")
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        say(f"uploading {len(operations)} files as one commit to {repo_id} "
            f"(unchanged files are skipped by the Hub)")
        info = api.create_commit(repo_id, operations, repo_type="model",
                                 commit_message=f"Upload with ctcforge {__version__}")
    say(f"pushed: {getattr(info, 'commit_url', None) or f'https://huggingface.co/{repo_id}'}")
    return plan


@contextmanager
def hub_errors(repo_id: str) -> Iterator[None]:
    """Turns what huggingface_hub raises into one line the user can act on. The upload is a
    single commit, so whatever failed, the Hub holds no part of this push."""
    try:
        yield
    # OfflineModeIsEnabled is a ConnectionError; httpx2 raises TransportError subclasses.
    except (ConnectionError, httpx2.TransportError) as exc:
        raise CtcforgeError(unreachable_message(one_line(exc, 120))) from None
    except LocalTokenNotFoundError:
        raise CtcforgeError(f"not logged in to the Hugging Face Hub: {LOGIN_FIX}") from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (401, 403):
            raise CtcforgeError(f"the Hub refused the token for {repo_id} (HTTP {status}); "
                                f"{LOGIN_FIX}") from None
        raise CtcforgeError(f"the Hub refused the push to {repo_id} ({one_line(exc)}); "
                            "nothing was committed, push again to retry") from None
