"""The one speech dataset loader shared by training, evaluation and ctcforge.

This file is copied unchanged into every generated repo, next to
`run_speech_recognition_ctc.py` and `eval.py`, so that training and evaluation read a
dataset the same way. It depends only on the standard library, `datasets` and `numpy`.

`load_speech_dataset(name, config, split)` accepts:

- a Common Voice release folder, `name/config/{train,dev,test,validated,...}.tsv` with the
  clips in `name/config/clips/`, or the locale folder itself;
- an OpenSLR-style folder: `line_index.tsv` (`id<TAB>transcript`) and audio files named
  by id anywhere below it. Such sets ship no test split, so one is cut here: see
  `self_split_ids`;
- an audiofolder: `metadata.csv` or `metadata.jsonl` with a `file_name` column, either
  directly in the folder (the "train" split) or in one sub-folder per split;
- a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`;
- anything else is taken as a Hub dataset id and given to `datasets.load_dataset`.

For the local formats `config` names an optional sub-folder (the Common Voice locale).
A split may be a sum such as `train+dev`; the parts are concatenated in order.
Every format comes back as a `datasets.Dataset` with two columns: `audio`, left
undecoded (path and/or bytes), and the text column under its original name. Every caller
decodes a cell with `decode_audio`, so every caller hears the same mono samples.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import random
from typing import Callable, NamedTuple

import datasets
import numpy as np

SELF_SPLIT_SEED = 42
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl")
OPENSLR_INDEX = "line_index.tsv"
OPENSLR_TEXT_COLUMN = "sentence"
OPENSLR_SPLITS = ("train", "test", "validated")
# Split names of the Hub's Common Voice datasets -> the release folder's file names.
HUB_SPLIT_NAMES = {"validation": "dev"}
# TSV files of a Common Voice release that are not splits of clips.
NOT_SPLITS = ("clip_durations", "validated_sentences", "unvalidated_sentences", "reported")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
SHOWN_LINES = 5  # malformed lines named in a warning; the rest are counted

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset that cannot be read as asked, phrased so the message names the fix."""


def load_speech_dataset(
    name: str,
    config: str | None,
    split: str,
    *,
    text_column: str = "sentence",
    sampling_rate: int = 16000,
) -> datasets.Dataset:
    """The `split` of dataset `name` with a mono `audio` column and the text column."""
    if is_local_path(name):
        root = dataset_root(name, config)
        read_split = local_split_reader(root, text_column)
        parts = [read_split(part.strip()) for part in split.split("+")]
        dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    else:
        if hub_is_off():
            raise DatasetError(f"{name}: no such folder, and the Hub is off (HF_HUB_OFFLINE or "
                               "HF_DATASETS_OFFLINE is set), so it cannot be a Hub dataset either")
        # `datasets` understands split sums such as "train+validation" itself.
        dataset = datasets.load_dataset(name, config, split=split)
    require_columns(dataset.column_names, ["audio", text_column], f"{name} ({split})")
    dataset = dataset.select_columns(["audio", text_column])
    return dataset.cast_column("audio", datasets.Audio(sampling_rate=sampling_rate, decode=False))


class DecodedAudio(NamedTuple):
    samples: np.ndarray  # mono float32
    declared_seconds: float | None  # the duration the file's header declares, if any


def decode_audio(cell: dict, sampling_rate: int) -> DecodedAudio:
    """One undecoded `audio` cell (path and/or bytes) as mono float32 samples at
    `sampling_rate`. Decoding goes through `datasets` (torchcodec), which resamples; the
    channels are averaged here, since torchcodec's own down-mix to one channel adds them
    and scales by 1/sqrt(2) instead. Raises what the decoder raises for a broken file."""
    decoder = datasets.Audio(sampling_rate=sampling_rate).decode_example(cell)
    samples = decoder.get_all_samples().data.numpy()
    mono = samples.mean(axis=0, dtype=np.float32) if samples.ndim == 2 else samples.astype(np.float32)
    return DecodedAudio(mono, decoder.metadata.duration_seconds_from_header)


def dataset_id(name: str, config: str | None, split: str) -> str:
    """The name eval.py gives its result files, as in the 2022 robust-speech-event eval.py:
    the Hub id's parts (or a local folder's base name), the config and the split, joined by "_".
    """
    parts = [os.path.basename(os.path.normpath(name))] if is_local_path(name) else name.split("/")
    return "_".join(parts + [part for part in (config, split) if part])


def is_local_path(name: str) -> bool:
    """True for an existing folder, False for a name that can be a Hub id.

    A Hub id is `dataset` or `owner/dataset`. A name that starts like a path, has more
    parts than that or names a file is a folder the user mistyped: it raises
    `DatasetError` here rather than failing later as a download.
    """
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return True
    if os.path.isfile(expanded) and expanded.lower().endswith(ARCHIVE_SUFFIXES):
        raise DatasetError(f"{name} is an archive; extract it first (tar -xf {name}, or unzip) "
                           "and pass the folder it holds")
    if os.path.exists(expanded):
        raise DatasetError(f"{name} is not a folder")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise DatasetError(f"{name}: no such folder")
    return False


def hub_is_off() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def dataset_root(name: str, config: str | None) -> str:
    """The folder that holds the data: `name/config` when it exists, else `name` itself.

    A config that names neither a sub-folder nor `name` itself is refused rather than
    ignored: a release root lacking the locale, or the folder of another locale.
    """
    folder = os.path.abspath(os.path.expanduser(name))
    if not config or os.path.basename(folder) == config:
        return folder
    if os.path.isdir(os.path.join(folder, config)):
        return os.path.abspath(os.path.join(folder, config))
    locales = sorted(entry.name for entry in os.scandir(folder)
                     if entry.is_dir() and os.path.isdir(os.path.join(entry.path, "clips")))
    if locales:
        raise DatasetError(f"{name} has no locale {config}; its locales: {', '.join(locales)}")
    if os.path.isdir(os.path.join(folder, "clips")):
        raise DatasetError(f"{name} is the folder of one locale ({os.path.basename(folder)}), not of "
                           f"--config {config}; pass the release folder or the {config} folder")
    return folder  # other formats (OpenSLR, audiofolder, save_to_disk) take no config


def local_split_reader(root: str, text_column: str) -> Callable[[str], datasets.Dataset]:
    """The function reading one split of `root`, chosen by the files `root` holds.

    The most specific marker is tried first: an OpenSLR folder or an audiofolder may well
    keep its audio in a `clips/` folder too, which alone marks a Common Voice folder.
    """
    if any(os.path.isfile(os.path.join(root, f)) for f in ("dataset_dict.json", "state.json")):
        return functools.partial(read_saved_dataset, root)
    if os.path.isfile(os.path.join(root, OPENSLR_INDEX)):
        return functools.partial(read_openslr, root, text_column=text_column)
    if find_audiofolder_metadata(root) or any(
        find_audiofolder_metadata(entry.path) for entry in os.scandir(root) if entry.is_dir()
    ):
        return functools.partial(read_audiofolder, root, text_column=text_column)
    if os.path.isdir(os.path.join(root, "clips")):
        return functools.partial(read_common_voice, root, text_column=text_column)
    raise DatasetError(
        f"{root} holds no dataset this loader can read; looked for dataset_dict.json or state.json"
        f" (save_to_disk), clips/ beside SPLIT.tsv files (Common Voice), {OPENSLR_INDEX} (OpenSLR),"
        f" and {' or '.join(AUDIOFOLDER_METADATA)} in the folder or a split sub-folder (audiofolder)"
    )


def read_saved_dataset(root: str, split: str) -> datasets.Dataset:
    """One split of a `DatasetDict.save_to_disk` folder; a saved `Dataset` has no splits,
    so it is returned whole whatever split was asked for."""
    saved = datasets.load_from_disk(root)
    if isinstance(saved, datasets.Dataset):
        return saved
    if split not in saved:
        raise DatasetError(f"{root} has no split {split!r}; its splits: {', '.join(saved)}")
    return saved[split]


def read_common_voice(root: str, split: str, text_column: str) -> datasets.Dataset:
    """`root/SPLIT.tsv` of a Common Voice locale folder, audio from `root/clips/`."""
    manifest = os.path.join(root, f"{split}.tsv")
    if split in HUB_SPLIT_NAMES and not os.path.isfile(manifest):
        # The Hub's Common Voice called dev "validation", and upstream's training script
        # defaults to train+validation: such command lines keep working on a release folder.
        local = HUB_SPLIT_NAMES[split]
        logger.warning(f"split {split!r}: reading {local}.tsv, Common Voice's name for it")
        manifest = os.path.join(root, f"{local}.tsv")
    if not os.path.isfile(manifest):
        if "-delta-" in root:
            raise DatasetError(f"{root} is from a delta release (cv-corpus-V-delta-DATE), which holds only the "
                               "clips added since the last release and no train/dev/test splits; use the full "
                               "release")
        available = sorted(f[: -len(".tsv")] for f in os.listdir(root) if f.endswith(".tsv"))
        available = [name for name in available if name not in NOT_SPLITS]
        raise DatasetError(f"{root} has no {split}.tsv; its splits: {', '.join(available) or 'none'}")
    paths, texts, malformed = [], [], []
    with open(manifest, encoding="utf-8-sig", newline="") as tsv:
        # Sentences contain quote marks; Common Voice does not quote fields at all.
        reader = csv.reader(tsv, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        require_columns(header, ["path", text_column], manifest)
        path_field, text_field = header.index("path"), header.index(text_column)
        for fields in reader:
            if fields == [] or fields == [""]:
                continue  # a blank line, as a trailing newline leaves
            if len(fields) != len(header):
                # Too few fields would shift or lose columns; too many means a tab inside a
                # field (a sentence), which would cut the reference. Neither row can be trusted.
                malformed.append((reader.line_num, len(fields)))
                continue
            paths.append(path_inside(root, os.path.join(root, "clips"), fields[path_field], manifest))
            texts.append(fields[text_field])
    if malformed:
        warn_malformed(manifest, malformed, len(header), len(paths) + len(malformed))
    if not paths:
        raise DatasetError(f"{manifest} lists no clips"
                           + (" it can read (every row malformed, see above)" if malformed else " (header only)")
                           + f"; choose another split than {split!r}")
    return datasets.Dataset.from_dict({"audio": paths, text_column: texts})


def warn_malformed(manifest: str, malformed: list[tuple[int, int]], expected: int, rows: int) -> None:
    shown = ", ".join(f"line {line} has {count}" for line, count in malformed[:SHOWN_LINES])
    more = f" and {len(malformed) - SHOWN_LINES} more" if len(malformed) > SHOWN_LINES else ""
    logger.warning(f"skipped {len(malformed)} of {rows} rows of {manifest} whose field count is not the "
                   f"header's {expected} (a tab inside a sentence, or a cut line): {shown}{more}")


def read_openslr(root: str, split: str, text_column: str) -> datasets.Dataset:
    """An OpenSLR folder: transcripts in `line_index.tsv`, audio files named by id."""
    require_columns([OPENSLR_TEXT_COLUMN], [text_column], os.path.join(root, OPENSLR_INDEX))
    transcripts = read_line_index(os.path.join(root, OPENSLR_INDEX))
    audio_files = find_audio_files(root)
    missing = [clip_id for clip_id in transcripts if clip_id not in audio_files]
    if missing:
        raise DatasetError(
            f"{len(missing)} ids in {OPENSLR_INDEX} have no audio file ({', '.join(AUDIO_EXTENSIONS)})"
            f" under {root}, e.g. {', '.join(missing[:3])}"
        )
    ids = self_split_ids(list(transcripts), split)
    return datasets.Dataset.from_dict(
        {"audio": [audio_files[i] for i in ids], text_column: [transcripts[i] for i in ids]}
    )


def read_line_index(path: str) -> dict[str, str]:
    """`id<TAB>transcript` lines. The transcript is taken from the last field, so that
    lines carrying an extra (e.g. empty) field between the two read the same."""
    transcripts = {}
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 2:
                raise DatasetError(f"{path}, line {number}: expected id<TAB>transcript")
            if fields[0] in transcripts:
                raise DatasetError(f"{path}, line {number}: id {fields[0]} appears twice")
            transcripts[fields[0]] = fields[-1]
    return transcripts


def find_audio_files(root: str) -> dict[str, str]:
    """Audio files below `root`, by file name without extension (one walk of the tree)."""
    found: dict[str, str] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()  # a fixed walk order makes the duplicate error below reproducible
        for file in sorted(files):
            clip_id, extension = os.path.splitext(file)
            if extension.lower() not in AUDIO_EXTENSIONS:
                continue
            path = os.path.join(folder, file)
            if clip_id in found:
                raise DatasetError(f"two audio files for id {clip_id}: {found[clip_id]} and {path}")
            found[clip_id] = path
    return found


def self_split_ids(ids: list[str], split: str) -> list[str]:
    """The ids of `split` in a set that ships without splits.

    The ids are sorted, shuffled with `random.Random(42)`, and the last tenth (rounded
    up, so even a tiny set has a test clip) is "test"; the rest is "train" and
    "validated" is every clip. Sorting first makes the split independent of file order,
    so training and evaluation, on any machine, cut the same test set.
    """
    if split not in OPENSLR_SPLITS:
        raise DatasetError(f"OpenSLR folders have the splits {', '.join(OPENSLR_SPLITS)}, not {split!r}")
    shuffled = sorted(ids)
    random.Random(SELF_SPLIT_SEED).shuffle(shuffled)
    test_size = (len(shuffled) + 9) // 10
    if split == "test":
        return shuffled[len(shuffled) - test_size :]
    if split == "train":
        return shuffled[: len(shuffled) - test_size]
    return shuffled


def find_audiofolder_metadata(folder: str) -> str | None:
    for file in AUDIOFOLDER_METADATA:
        if os.path.isfile(os.path.join(folder, file)):
            return os.path.join(folder, file)
    return None


def read_audiofolder(root: str, split: str, text_column: str) -> datasets.Dataset:
    """An audiofolder split: `root/SPLIT/metadata.*`, or `root/metadata.*` as "train"
    (the convention of `datasets`' own audiofolder loader)."""
    manifest = find_audiofolder_metadata(os.path.join(root, split))
    if manifest is None and split == "train":
        manifest = find_audiofolder_metadata(root)
    if manifest is None:
        raise DatasetError(
            f"{root} has no {split}/metadata.csv or {split}/metadata.jsonl"
            + (" (a metadata file directly in the folder is the 'train' split)" if split != "train" else "")
        )
    rows = read_metadata_rows(manifest)
    if not rows:
        raise DatasetError(f"{manifest} lists no files")
    require_columns(list(rows[0]), ["file_name", text_column], manifest)
    # file_name is relative to the folder of the metadata file.
    folder = os.path.dirname(manifest)
    paths = [path_inside(root, folder, row["file_name"], manifest) for row in rows]
    return datasets.Dataset.from_dict({"audio": paths, text_column: [row.get(text_column) for row in rows]})


def read_metadata_rows(path: str) -> list[dict]:
    # Manifests are read as "utf-8-sig": a byte order mark, as spreadsheet programs write
    # at the start of a CSV, would otherwise become part of the first column's name.
    with open(path, encoding="utf-8-sig", newline="") as file:
        if path.endswith(".csv"):
            return list(csv.DictReader(file))
        return [json.loads(line) for line in file if line.strip()]


def path_inside(root: str, folder: str, name: str, manifest: str) -> str:
    """The file `name` of a manifest, relative to `folder`, as an absolute path; refused
    when it lies outside the dataset folder `root`.

    The check is on the normalised path, not on symlinks resolved: a manifest must not
    reach outside the dataset with `..` or an absolute path, while a `clips/` folder that
    is a symlink to another disk is a deliberate choice of the dataset's owner.
    """
    path = os.path.normpath(os.path.join(folder, name))
    if os.path.commonpath([root, path]) != root:
        raise DatasetError(f"{manifest} names {name!r}, which lies outside {root}; refusing to read it")
    return path


def require_columns(found: list[str], needed: list[str], where: str) -> None:
    missing = [column for column in needed if column not in found]
    if missing:
        raise DatasetError(
            f"{where} has no column {', '.join(missing)}; its columns: {', '.join(found) or 'none'}"
        )
