"""The one speech dataset loader shared by training, evaluation and ctcforge.

Used by the training script and eval.py. It depends only on the standard library, `datasets` and `numpy`.

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

Durations without decoding: `with_durations=True` adds a third column, `duration`, the
seconds a Common Voice release lists for each clip (`clip_durations.tsv`, or `times.txt`
before 16.1; see `read_clip_durations`), None where it lists none. `filter_by_duration`
then drops clips outside `--min/--max_duration_in_seconds` from that column alone, so a
dropped clip's file is never opened, and the same column gives length grouping its lengths.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import random
import re
from typing import Callable, NamedTuple

import datasets
import numpy as np

from .errors import CtcforgeError

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
DURATION_COLUMN = "duration"
# Common Voice lists each clip's duration in clip_durations.tsv since 16.1 (header
# `clip<TAB>duration[ms]`; the cv-dataset docs call the first column `filename`), and in
# times.txt before that (lines "`path/to/clip.mp3` = 4321"). Both are written by
# common-voice/mp3-duration-reporter, which writes 0 for a clip it could not read.
CLIP_DURATIONS = "clip_durations.tsv"
CLIP_DURATIONS_NAME_COLUMNS = ("clip", "filename")
CLIP_DURATIONS_MS_COLUMN = "duration[ms]"
TIMES_TXT = "times.txt"
TIMES_TXT_LINE = re.compile(r"^`(?P<path>.+)` = (?P<ms>\d+)$")

logger = logging.getLogger(__name__)


def load_speech_dataset(
    name: str,
    config: str | None,
    split: str,
    *,
    text_column: str = "sentence",
    sampling_rate: int = 16000,
    with_durations: bool = False,
) -> datasets.Dataset:
    """The `split` of dataset `name` with a mono `audio` column and the text column; with
    `with_durations`, also a `duration` column (seconds as the release lists them, None
    where unknown: every clip of a format that lists no durations)."""
    root = None
    if is_local_path(name):
        root = dataset_root(name, config)
        read_split = local_split_reader(root, text_column)
        parts = [read_split(part.strip()) for part in split.split("+")]
        dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    else:
        if hub_is_off():
            raise CtcforgeError(f"{name}: no such folder, and the Hub is off (HF_HUB_OFFLINE or "
                               "HF_DATASETS_OFFLINE is set), so it cannot be a Hub dataset either")
        # `datasets` understands split sums such as "train+validation" itself.
        dataset = datasets.load_dataset(name, config, split=split)
    require_columns(dataset.column_names, ["audio", text_column], f"{name} ({split})")
    # A `duration` column a dataset brings along is dropped here with the other extra
    # columns: its unit and origin are unknown, and only a release's own list is trusted.
    dataset = dataset.select_columns(["audio", text_column])
    if with_durations:
        seconds = listed_durations(root, dataset) if root else [None] * len(dataset)
        dataset = dataset.add_column(DURATION_COLUMN, seconds, feature=datasets.Value("float64"))
    return dataset.cast_column("audio", datasets.Audio(sampling_rate=sampling_rate, decode=False))


class DurationFilter(NamedTuple):
    dataset: datasets.Dataset  # the clips kept
    too_short: int
    too_long: int
    unknown: int  # kept, but with no listed duration: the caller measures them by decoding


def filter_by_duration(dataset: datasets.Dataset, min_seconds: float | None = None,
                       max_seconds: float | None = None) -> DurationFilter:
    """The clips of `dataset` whose listed `duration` lies within [min_seconds, max_seconds].

    Only the duration column is read, never the audio, so a clip listed as too long is
    dropped as too long even when its file is damaged or missing. A clip without a listed
    duration is kept and counted as unknown; the caller decides by decoding it.
    """
    if DURATION_COLUMN not in dataset.column_names:
        raise CtcforgeError(f"the dataset has no column {DURATION_COLUMN} (its columns: "
                           f"{', '.join(dataset.column_names)}); load it with load_speech_dataset(..., "
                           "with_durations=True)")
    # Arrow nulls become NaN, which compares False both ways and so is neither too short
    # nor too long.
    seconds = column_values(dataset, DURATION_COLUMN).to_numpy().astype(np.float64)
    too_short = seconds < min_seconds if min_seconds is not None else np.zeros(len(seconds), dtype=bool)
    too_long = seconds > max_seconds if max_seconds is not None else np.zeros(len(seconds), dtype=bool)
    keep = ~(too_short | too_long)
    kept = dataset if keep.all() else dataset.select(np.flatnonzero(keep))
    return DurationFilter(kept, int(too_short.sum()), int(too_long.sum()), int(np.isnan(seconds[keep]).sum()))


def listed_durations(root: str, dataset: datasets.Dataset) -> list[float | None]:
    """Each row's listed duration: the clips of a Common Voice locale folder `root` are
    looked up by file name in its duration list; other formats list none."""
    if local_split_reader(root, "").func is not read_common_voice:
        return [None] * len(dataset)
    durations = read_clip_durations(root)
    if durations is None:
        warn_no_durations(root)
        return [None] * len(dataset)
    clips = os.path.join(root, "clips")
    # The audio column still holds the plain paths the reader wrote (it is cast after this).
    return [durations.get(os.path.basename(path)) if os.path.dirname(path) == clips else None
            for path in column_values(dataset, "audio").to_pylist()]


def column_values(dataset: datasets.Dataset, column: str):
    """One column as an Arrow array in the dataset's row order (after any select or
    shuffle), without touching the other columns."""
    return dataset.with_format("arrow")[column]


_warned_no_durations: set[str] = set()


def warn_no_durations(root: str) -> None:
    """Said once per folder: every split of a locale reads the same (absent) list."""
    if root not in _warned_no_durations:
        _warned_no_durations.add(root)
        logger.warning(f"{root} has no {CLIP_DURATIONS} (nor {TIMES_TXT}); clip durations are unknown and "
                       "must be measured by decoding each clip")


def read_clip_durations(root: str) -> dict[str, float | None] | None:
    """Seconds by clip file name from a Common Voice locale folder's `clip_durations.tsv`
    (or `times.txt`, before 16.1); None when the folder has neither. A clip listed as 0 ms
    (what the duration reporter writes for a clip it could not read) is None: unknown.

    Each file is read once per process however many splits ask: a large locale lists a
    million clips.
    """
    for name, parse in ((CLIP_DURATIONS, parse_clip_durations_tsv), (TIMES_TXT, parse_times_txt)):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            stat = os.stat(path)
            return _read_durations_once(path, stat.st_mtime_ns, stat.st_size, parse)
    return None


@functools.lru_cache(maxsize=4)
def _read_durations_once(path: str, mtime_ns: int, size: int,
                         parse: Callable[[str], dict[str, float | None]]) -> dict[str, float | None]:
    # mtime and size are in the key so that a file rewritten in place is read again.
    return parse(path)


def parse_clip_durations_tsv(path: str) -> dict[str, float | None]:
    durations: dict[str, float | None] = {}
    malformed = []
    with open(path, encoding="utf-8-sig", newline="") as tsv:
        reader = csv.reader(tsv, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        names = [column for column in CLIP_DURATIONS_NAME_COLUMNS if column in header]
        if not names or CLIP_DURATIONS_MS_COLUMN not in header:
            raise CtcforgeError(f"{path} has the columns {', '.join(header) or 'none'}, not clip and "
                               f"{CLIP_DURATIONS_MS_COLUMN}; fix its header, or delete it to measure durations "
                               "by decoding")
        name_field, ms_field = header.index(names[0]), header.index(CLIP_DURATIONS_MS_COLUMN)
        for fields in reader:
            if fields == [] or fields == [""]:
                continue
            if len(fields) != len(header) or not fields[ms_field].isdigit():
                malformed.append(reader.line_num)
                continue
            milliseconds = int(fields[ms_field])
            durations[fields[name_field]] = milliseconds / 1000 if milliseconds else None
    warn_unread_durations(path, malformed, len(durations), f"CLIP<TAB>MILLISECONDS under its {len(header)} columns")
    return durations


def parse_times_txt(path: str) -> dict[str, float | None]:
    durations: dict[str, float | None] = {}
    malformed = []
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            match = TIMES_TXT_LINE.match(line)
            if match is None:
                malformed.append(number)
                continue
            # The reporter wrote the path it was given (the bundler's clips folder), so
            # only the file name is the clip's.
            milliseconds = int(match["ms"])
            durations[os.path.basename(match["path"])] = milliseconds / 1000 if milliseconds else None
    warn_unread_durations(path, malformed, len(durations), "`PATH` = MILLISECONDS")
    return durations


def warn_unread_durations(path: str, malformed: list[int], read: int, form: str) -> None:
    """The lines of a duration list that were not read; their clips' durations are unknown."""
    if malformed:
        logger.warning(f"skipped {len(malformed)} of {len(malformed) + read} rows of {path} that are not {form} "
                       f"(their clips' durations are unknown): line {first_few(map(str, malformed))}")


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
    `CtcforgeError` here rather than failing later as a download.
    """
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return True
    if os.path.isfile(expanded) and expanded.lower().endswith(ARCHIVE_SUFFIXES):
        raise CtcforgeError(f"{name} is an archive; extract it first (tar -xf {name}, or unzip) "
                           "and pass the folder it holds")
    if os.path.exists(expanded):
        raise CtcforgeError(f"{name} is not a folder")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CtcforgeError(f"{name}: no such folder")
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
        raise CtcforgeError(f"{name} has no locale {config}; its locales: {', '.join(locales)}")
    if os.path.isdir(os.path.join(folder, "clips")):
        raise CtcforgeError(f"{name} is the folder of one locale ({os.path.basename(folder)}), not of "
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
    raise CtcforgeError(
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
        raise CtcforgeError(f"{root} has no split {split!r}; its splits: {', '.join(saved)}")
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
            raise CtcforgeError(f"{root} is from a delta release (cv-corpus-V-delta-DATE), which holds only the "
                               "clips added since the last release and no train/dev/test splits; use the full "
                               "release")
        available = sorted(f[: -len(".tsv")] for f in os.listdir(root) if f.endswith(".tsv"))
        available = [name for name in available if name not in NOT_SPLITS]
        raise CtcforgeError(f"{root} has no {split}.tsv; its splits: {', '.join(available) or 'none'}")
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
        raise CtcforgeError(f"{manifest} lists no clips"
                           + (" it can read (every row malformed, see above)" if malformed else " (header only)")
                           + f"; choose another split than {split!r}")
    return datasets.Dataset.from_dict({"audio": paths, text_column: texts})


def warn_malformed(manifest: str, malformed: list[tuple[int, int]], expected: int, rows: int) -> None:
    shown = first_few(f"line {line} has {count}" for line, count in malformed)
    logger.warning(f"skipped {len(malformed)} of {rows} rows of {manifest} whose field count is not the "
                   f"header's {expected} (a tab inside a sentence, or a cut line): {shown}")


def first_few(items) -> str:
    """The first SHOWN_LINES items joined, and how many more there are."""
    items = list(items)
    more = f" and {len(items) - SHOWN_LINES} more" if len(items) > SHOWN_LINES else ""
    return ", ".join(items[:SHOWN_LINES]) + more


def read_openslr(root: str, split: str, text_column: str) -> datasets.Dataset:
    """An OpenSLR folder: transcripts in `line_index.tsv`, audio files named by id."""
    require_columns([OPENSLR_TEXT_COLUMN], [text_column], os.path.join(root, OPENSLR_INDEX))
    transcripts = read_line_index(os.path.join(root, OPENSLR_INDEX))
    audio_files = find_audio_files(root)
    missing = [clip_id for clip_id in transcripts if clip_id not in audio_files]
    if missing:
        raise CtcforgeError(
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
                raise CtcforgeError(f"{path}, line {number}: expected id<TAB>transcript")
            if fields[0] in transcripts:
                raise CtcforgeError(f"{path}, line {number}: id {fields[0]} appears twice")
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
                raise CtcforgeError(f"two audio files for id {clip_id}: {found[clip_id]} and {path}")
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
        raise CtcforgeError(f"OpenSLR folders have the splits {', '.join(OPENSLR_SPLITS)}, not {split!r}")
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
        raise CtcforgeError(
            f"{root} has no {split}/metadata.csv or {split}/metadata.jsonl"
            + (" (a metadata file directly in the folder is the 'train' split)" if split != "train" else "")
        )
    rows = read_metadata_rows(manifest)
    if not rows:
        raise CtcforgeError(f"{manifest} lists no files")
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
        raise CtcforgeError(f"{manifest} names {name!r}, which lies outside {root}; refusing to read it")
    return path


def require_columns(found: list[str], needed: list[str], where: str) -> None:
    missing = [column for column in needed if column not in found]
    if missing:
        raise CtcforgeError(
            f"{where} has no column {', '.join(missing)}; its columns: {', '.join(found) or 'none'}"
        )
