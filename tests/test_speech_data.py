"""ctcforge/speech_data.py: the four local formats load to the same two decoded columns, split
sums, the OpenSLR self-split, the errors that name their fix, and eval.py's dataset ids.

The data is one synthesised Common Voice release (12 Armenian clips), from whose clips an
OpenSLR folder, two audiofolders and two `save_to_disk` folders are derived once per module.
"""

import csv
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
from conftest import SPEECH_TOOLS, ffmpeg, read_tsv

from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.speech_data import (dataset_id, decode_audio, filter_by_duration, is_local_path,
                                          load_speech_dataset, self_split_ids)
from ctcforge.synth import synthesize

CLIPS = 12
CV_SPLITS = ["train", "dev", "test", "validated"]
RATE = 16000
# mp3 encoder delay and padding make a decoded clip a few hundredths of a second longer or
# shorter than the same clip converted to wav by ffmpeg.
DURATION_TOLERANCE_S = 0.1


@dataclass
class Data:
    """The folders of every format, all holding (some of) the same clips."""

    work: Path
    cv: Path  # the release: cv/hy-AM/{train,dev,test,validated}.tsv and clips/
    ids: dict[str, list[str]]  # Common Voice split -> clip ids in TSV order
    sentence: dict[str, str]  # clip id -> sentence
    seconds: dict[str, float]  # clip id -> duration of its wav
    folders: dict[str, Path] = field(default_factory=dict)

    @property
    def locale(self) -> Path:
        return self.cv / "hy-AM"

    def id_of(self, sentence: str) -> str:
        (clip_id,) = [i for i, s in self.sentence.items() if s == sentence]
        return clip_id


def to_wav(source: Path, target: Path, *options: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-i", source, *options, target)


def write_metadata_csv(folder: Path, rows: list[dict], encoding: str = "utf-8") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", encoding=encoding, newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_line_index(folder: Path, lines: list[str]) -> None:
    (folder / "line_index.tsv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    if not SPEECH_TOOLS:
        pytest.skip("espeak-ng or ffmpeg not installed (./setup.sh)")
    work = tmp_path_factory.mktemp("speech_data")
    locale = synthesize("hy-AM", work / "cv", CLIPS, seed=0, progress=False)
    rows = {split: read_tsv(locale / f"{split}.tsv")[1] for split in CV_SPLITS}
    ids = {split: [Path(row["path"]).stem for row in rows[split]] for split in CV_SPLITS}
    sentence = {Path(row["path"]).stem: row["sentence"] for row in rows["validated"]}
    assert len(sentence) == CLIPS and len(set(sentence.values())) == CLIPS, "rows are told apart by sentence"
    assert all(ids[split] for split in ("train", "dev", "test"))
    mp3 = {clip_id: locale / "clips" / f"{clip_id}.mp3" for clip_id in sentence}

    # OpenSLR: line_index.tsv beside a sub-folder of wavs (22.05 kHz, so decoding resamples).
    openslr = work / "openslr"
    for clip_id in sentence:
        to_wav(mp3[clip_id], openslr / "wavs" / f"{clip_id}.wav", "-ar", "22050", "-ac", "1")
    write_line_index(openslr, [f"{i}\t{sentence[i]}" for i in ids["validated"]])
    seconds = {i: soundfile.info(str(openslr / "wavs" / f"{i}.wav")).duration for i in sentence}

    # An audiofolder with metadata.csv at the top (the "train" split) and an extra column.
    audiofolder = work / "audiofolder"
    (audiofolder / "clips").mkdir(parents=True)
    for clip_id in ids["validated"]:
        shutil.copy(mp3[clip_id], audiofolder / "clips" / f"{clip_id}.mp3")
    write_metadata_csv(audiofolder, [{"file_name": f"clips/{i}.mp3", "sentence": sentence[i], "speaker": "s1"}
                                     for i in ids["validated"]])

    # An audiofolder with one sub-folder per split, file names relative to each metadata file.
    split_folder = work / "audiofolder-splits"
    for split in ("train", "test"):
        (split_folder / split).mkdir(parents=True)
        for clip_id in ids[split]:
            shutil.copy(mp3[clip_id], split_folder / split / f"{clip_id}.mp3")
        write_metadata_csv(split_folder / split, [{"file_name": f"{i}.mp3", "sentence": sentence[i]}
                                                  for i in ids[split]])

    # save_to_disk: a DatasetDict of two Common Voice splits, and a lone Dataset, with an extra
    # column each, as the Hub's Common Voice sets have (the loader must drop it).
    train = load_speech_dataset(str(work / "cv"), "hy-AM", "train")
    train = train.add_column("locale", ["hy-AM"] * len(train))
    dev = load_speech_dataset(str(work / "cv"), "hy-AM", "dev")
    dev = dev.add_column("locale", ["hy-AM"] * len(dev))
    datasets.DatasetDict({"train": train, "dev": dev}).save_to_disk(str(work / "saved-dict"))
    train.save_to_disk(str(work / "saved-dataset"))

    return Data(work, work / "cv", ids, sentence, seconds, {
        "cv": work / "cv", "locale": locale, "openslr": openslr, "audiofolder": audiofolder,
        "audiofolder-splits": split_folder, "saved-dict": work / "saved-dict", "saved-dataset": work / "saved-dataset",
    })


def decoded(dataset: datasets.Dataset, row: int) -> tuple[np.ndarray, int]:
    """(1 x samples, sampling rate) of one row's audio, as every caller decodes it: the cell
    is left undecoded, and `decode_audio` decodes it at the column's rate, in mono."""
    rate = dataset.features["audio"].sampling_rate
    return decode_audio(dataset[row]["audio"], rate).samples[None, :], rate


def sentences(dataset: datasets.Dataset) -> list[str]:
    return list(dataset["sentence"])


def paths(dataset: datasets.Dataset) -> list[str]:
    """The audio file of each row, read without decoding."""
    return [cell["path"] for cell in dataset.cast_column("audio", datasets.Audio(decode=False))["audio"]]


# ------------------------------------------------------------------ every format, same columns


# (folder, config, split, the Common Voice split whose clips come back, in order?)
FORMATS = [
    ("cv", "hy-AM", "train", "train", True),
    ("locale", None, "dev", "dev", True),  # the locale folder itself, no config
    ("cv", "hy-AM", "validated", "validated", True),
    ("openslr", None, "validated", "validated", False),  # self-split order is shuffled
    ("audiofolder", None, "train", "validated", True),
    ("audiofolder-splits", None, "test", "test", True),
    ("saved-dict", None, "dev", "dev", True),
    ("saved-dataset", None, "test", "train", True),  # a lone Dataset has no splits: all of it
]


@pytest.mark.parametrize("folder, config, split, clips, ordered", FORMATS,
                         ids=[f"{f}-{s}" for f, _, s, _, _ in FORMATS])
def test_format_loads_to_audio_and_text_decoded_at_16k_mono(data, folder, config, split, clips, ordered):
    dataset = load_speech_dataset(str(data.folders[folder]), config, split)
    assert isinstance(dataset, datasets.Dataset)
    assert dataset.column_names == ["audio", "sentence"]
    got = [data.id_of(s) for s in sentences(dataset)]
    expected = data.ids[clips]
    assert (got if ordered else sorted(got)) == (expected if ordered else sorted(expected))
    for row, clip_id in enumerate(got):
        array, rate = decoded(dataset, row)
        assert rate == RATE
        assert array.ndim == 2 and array.shape[0] == 1, array.shape
        assert array.dtype == np.float32 and np.isfinite(array).all()
        assert np.abs(array).max() > 0.01, f"{clip_id} decodes to silence"
        assert abs(array.shape[1] / RATE - data.seconds[clip_id]) < DURATION_TOLERANCE_S, clip_id


def test_other_sampling_rate_is_honoured(data):
    dataset = load_speech_dataset(str(data.cv), "hy-AM", "dev", sampling_rate=8000)
    array, rate = decoded(dataset, 0)
    assert rate == 8000 and array.shape[0] == 1
    assert abs(array.shape[1] / 8000 - data.seconds[data.ids["dev"][0]]) < DURATION_TOLERANCE_S


def test_44k_stereo_wav_decodes_to_16k_mono_mixing_both_channels(tmp_path):
    # Left: 440 Hz at 0.5, right: 1000 Hz at 0.3. A mono mix keeps both tones in that ratio;
    # a decoder that kept one channel would lose the other tone.
    seconds, source_rate = 1.5, 44100
    t = np.arange(int(seconds * source_rate)) / source_rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)], axis=1)
    folder = tmp_path / "stereo"
    folder.mkdir()
    soundfile.write(str(folder / "tone.wav"), stereo, source_rate)
    info = soundfile.info(str(folder / "tone.wav"))
    assert (info.samplerate, info.channels) == (44100, 2)
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "tone.wav", "sentence": "a tone"}) + "\n",
                                           encoding="utf-8")

    dataset = load_speech_dataset(str(folder), None, "train")
    assert dataset.column_names == ["audio", "sentence"] and sentences(dataset) == ["a tone"]
    array, rate = decoded(dataset, 0)
    assert rate == RATE and array.shape[0] == 1
    assert abs(array.shape[1] - seconds * RATE) <= 0.01 * seconds * RATE
    spectrum = np.abs(np.fft.rfft(array[0]))
    frequencies = np.fft.rfftfreq(array.shape[1], 1 / RATE)

    def level(hz):
        return spectrum[np.abs(frequencies - hz) < 5].max()

    assert abs(frequencies[np.argmax(spectrum)] - 440) < 2  # resampled, not relabelled
    assert level(1000) / level(440) == pytest.approx(0.3 / 0.5, rel=0.05)
    assert level(2000) < 0.01 * level(440)


# ------------------------------------------------------------------ split sums


# (folder, config, the sum as written, its parts)
SUMS = [
    ("cv", "hy-AM", "train+dev", ["train", "dev"]),
    ("cv", "hy-AM", "test + dev + train", ["test", "dev", "train"]),
    ("openslr", None, "train+test", ["train", "test"]),
    ("audiofolder-splits", None, "train+test", ["train", "test"]),
    ("saved-dict", None, "dev+train", ["dev", "train"]),
]


@pytest.mark.parametrize("folder, config, split, parts", SUMS, ids=[f"{f}:{s}" for f, _, s, _ in SUMS])
def test_split_sum_concatenates_its_parts_in_order(data, folder, config, split, parts):
    name = str(data.folders[folder])
    loaded = [load_speech_dataset(name, config, part) for part in parts]
    total = load_speech_dataset(name, config, split)
    assert all(len(part) > 0 for part in loaded)
    assert len(total) == sum(len(part) for part in loaded)
    assert sentences(total) == [s for part in loaded for s in sentences(part)]
    assert total.column_names == ["audio", "sentence"]
    assert decoded(total, len(total) - 1)[1] == RATE


# ------------------------------------------------------------------ OpenSLR self-split


def openslr_ids(folder: Path, split: str) -> list[str]:
    return [Path(p).stem for p in paths(load_speech_dataset(str(folder), None, split))]


def test_openslr_test_split_is_a_tenth_rounded_up_and_disjoint_from_train(data):
    train, test, everything = (openslr_ids(data.folders["openslr"], s) for s in ("train", "test", "validated"))
    assert len(test) == math.ceil(CLIPS / 10) == 2
    assert len(train) == CLIPS - len(test)
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(everything) == sorted(data.ids["validated"])
    # Each row's transcript is its own clip's.
    dataset = load_speech_dataset(str(data.folders["openslr"]), None, "test")
    assert [data.sentence[Path(p).stem] for p in paths(dataset)] == sentences(dataset)


def test_openslr_split_ignores_line_order_and_file_layout(data, tmp_path):
    original = data.folders["openslr"]
    lines = (original / "line_index.tsv").read_text(encoding="utf-8").splitlines()
    # Reversed lines, one with an empty middle field (as some OpenSLR sets write), a blank
    # line, and the wavs spread over nested folders under clips/ (which must not make the
    # folder look like a Common Voice release).
    reordered = tmp_path / "reordered"
    for number, wav in enumerate(sorted((original / "wavs").iterdir())):
        target = reordered / "clips" / f"speaker{number % 3}" / wav.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, target)
    rewritten = list(reversed(lines))
    clip_id, text = rewritten[0].split("\t")
    rewritten[0] = f"{clip_id}\t\t{text}"
    write_line_index(reordered, rewritten[:5] + [""] + rewritten[5:])
    for split in ("train", "test"):
        assert openslr_ids(reordered, split) == openslr_ids(original, split), split
    dataset = load_speech_dataset(str(reordered), None, "validated")
    assert data.sentence[clip_id] in sentences(dataset)


@pytest.mark.parametrize("size, test_size", [(1, 1), (9, 1), (10, 1), (11, 2), (12, 2), (99, 10), (100, 10),
                                             (101, 11)])
def test_self_split_sizes(size, test_size):
    ids = [f"clip{i:04d}" for i in range(size)]
    train, test = self_split_ids(ids, "train"), self_split_ids(ids, "test")
    assert len(test) == test_size and len(train) == size - test_size
    assert sorted(train + test) == sorted(self_split_ids(ids, "validated")) == ids
    assert self_split_ids(list(reversed(ids)), "test") == test


# ------------------------------------------------------------------ errors that name the fix


# Manifests naming a file outside the dataset folder. {tmp} is the test's tmp_path; every
# named file exists, so the location alone is what is refused. Common Voice paths are relative
# to clips/, so it takes two `..` to leave the locale folder (`../x.mp3` is the locale folder's).
ESCAPES = [
    ("common-voice", "../../outside.mp3"),
    ("common-voice", "../../../outside.mp3"),
    ("common-voice", "{tmp}/outside.mp3"),
    ("audiofolder", "../outside.mp3"),
    ("audiofolder", "{tmp}/outside.mp3"),
    ("audiofolder", "{tmp}/af-evil/clip.mp3"),  # a sibling whose name merely starts like the folder
]


@pytest.mark.parametrize("kind, name", ESCAPES, ids=[f"{k}:{n}" for k, n in ESCAPES])
def test_manifest_path_outside_the_folder_is_refused(data, tmp_path, kind, name):
    clip = data.locale / "clips" / f"{data.ids['train'][0]}.mp3"
    name = name.format(tmp=tmp_path)
    if kind == "common-voice":
        folder, config = tmp_path / "cv", "hy-AM"
        files = folder / config / "clips"
        files.mkdir(parents=True)
        (folder / config / "train.tsv").write_text(f"path\tsentence\n{clip.name}\tfine\n{name}\tescaped\n",
                                                   encoding="utf-8")
    else:
        folder = files = tmp_path / "af"
        config = None
        folder.mkdir()
        write_metadata_csv(folder, [{"file_name": clip.name, "sentence": "fine"},
                                    {"file_name": name, "sentence": "escaped"}])
    shutil.copy(clip, files / clip.name)
    outside = Path(os.path.normpath(files / name))
    outside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, outside)
    with pytest.raises(CtcforgeError, match=re.escape(repr(name)) + ".*outside"):
        load_speech_dataset(str(folder), config, "train")


def test_manifest_path_that_stays_inside_is_read(data, tmp_path):
    clip = data.locale / "clips" / f"{data.ids['train'][0]}.mp3"
    folder = tmp_path / "af"
    (folder / "audio").mkdir(parents=True)
    shutil.copy(clip, folder / "audio" / "clip.mp3")
    write_metadata_csv(folder, [{"file_name": "audio/../audio/clip.mp3", "sentence": "fine"},
                                {"file_name": str(folder / "audio" / "clip.mp3"), "sentence": "absolute"}])
    dataset = load_speech_dataset(str(folder), None, "train")
    assert paths(dataset) == [str(folder / "audio" / "clip.mp3")] * 2
    assert decoded(dataset, 0)[1] == RATE


def test_folder_with_no_known_format_lists_what_was_looked_for(tmp_path):
    folder = tmp_path / "nothing"
    (folder / "audio").mkdir(parents=True)
    (folder / "notes.txt").write_text("no manifest here\n", encoding="utf-8")
    (folder / "audio" / "x.tsv").write_text("path\tsentence\n", encoding="utf-8")
    with pytest.raises(CtcforgeError) as error:
        load_speech_dataset(str(folder), None, "train")
    message = str(error.value)
    assert str(folder) in message
    for looked_for in ("Common Voice", "OpenSLR", "audiofolder", "save_to_disk", "line_index.tsv",
                       "metadata.csv", "clips/", "dataset_dict.json"):
        assert looked_for in message, looked_for


# (folder, config, the columns the error must list)
TEXT_COLUMNS = [
    ("cv", "hy-AM", ["client_id", "path", "sentence", "locale"]),
    ("openslr", None, ["sentence"]),
    ("audiofolder", None, ["file_name", "sentence", "speaker"]),
    ("saved-dict", None, ["audio", "sentence", "locale"]),
    ("saved-dataset", None, ["audio", "sentence", "locale"]),
]


@pytest.mark.parametrize("folder, config, columns", TEXT_COLUMNS, ids=[f for f, _, _ in TEXT_COLUMNS])
def test_missing_text_column_lists_the_columns_found(data, folder, config, columns):
    with pytest.raises(CtcforgeError) as error:
        load_speech_dataset(str(data.folders[folder]), config, "train", text_column="transcription")
    listed = re.search(r"no column transcription; its columns: (.*)$", str(error.value))
    assert listed, str(error.value)
    assert set(columns) <= set(listed.group(1).split(", ")), str(error.value)


def test_other_text_column_is_read(data, tmp_path):
    folder = tmp_path / "af"
    folder.mkdir()
    clip_id = data.ids["dev"][0]
    shutil.copy(data.locale / "clips" / f"{clip_id}.mp3", folder / "a.mp3")
    write_metadata_csv(folder, [{"file_name": "a.mp3", "transcription": data.sentence[clip_id]}])
    dataset = load_speech_dataset(str(folder), None, "train", text_column="transcription")
    assert dataset.column_names == ["audio", "transcription"]
    assert list(dataset["transcription"]) == [data.sentence[clip_id]]


# (folder, config, split asked for, how the error names the missing split, the splits it must list)
SPLITS = [
    ("cv", "hy-AM", "devel", "no devel.tsv", ["train", "dev", "test", "validated"]),
    ("saved-dict", None, "validation", "no split 'validation'", ["train", "dev"]),
    ("openslr", None, "dev", "not 'dev'", ["train", "test", "validated"]),
    ("cv", "hy-AM", "train+devel", "no devel.tsv", ["train", "dev", "test", "validated"]),
]


def test_hub_split_name_validation_reads_common_voice_dev(data, caplog):
    """Upstream's default train+validation, as the Hub's Common Voice named dev."""
    folder = str(data.folders["cv"])
    dev = load_speech_dataset(folder, "hy-AM", "dev")
    with caplog.at_level("WARNING"):
        validation = load_speech_dataset(folder, "hy-AM", "validation")
    assert validation["sentence"] == dev["sentence"] and len(dev) > 0
    assert "reading dev.tsv" in caplog.text


@pytest.mark.parametrize("folder, config, split, missing, available", SPLITS,
                         ids=[f"{f}:{s}" for f, _, s, _, _ in SPLITS])
def test_missing_split_lists_the_available_splits(data, folder, config, split, missing, available):
    with pytest.raises(CtcforgeError) as error:
        load_speech_dataset(str(data.folders[folder]), config, split)
    message = str(error.value)
    assert missing in message, message
    listed = re.search(r"(?:its splits:|have the splits) ([\w, ]+?)(?:, not|$)", message)
    assert listed, message
    assert set(listed.group(1).split(", ")) == set(available), message


def test_missing_audiofolder_split_says_where_it_looked(data):
    with pytest.raises(CtcforgeError, match=r"no dev/metadata\.csv or dev/metadata\.jsonl"):
        load_speech_dataset(str(data.folders["audiofolder-splits"]), None, "dev")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
@pytest.mark.parametrize("kind", ["metadata.csv", "metadata.jsonl", "line_index.tsv", "common-voice"])
def test_manifest_with_or_without_byte_order_mark(data, tmp_path, kind, encoding):
    clip_id = data.ids["test"][0]
    source, text = data.folders["openslr"] / "wavs" / f"{clip_id}.wav", data.sentence[clip_id]
    folder, config = tmp_path / "set", None
    folder.mkdir()
    if kind == "common-voice":
        (folder / "clips").mkdir()
        shutil.copy(source, folder / "clips" / source.name)
        (folder / "train.tsv").write_text(f"path\tsentence\n{source.name}\t{text}\n", encoding=encoding)
    elif kind == "line_index.tsv":
        shutil.copy(source, folder / source.name)
        (folder / kind).write_text(f"{clip_id}\t{text}\n", encoding=encoding)
    else:
        shutil.copy(source, folder / source.name)
        manifest = (f"file_name,sentence\n{source.name},{text}\n" if kind == "metadata.csv"
                    else json.dumps({"file_name": source.name, "sentence": text}, ensure_ascii=False) + "\n")
        (folder / kind).write_text(manifest, encoding=encoding)
    split = "validated" if kind == "line_index.tsv" else "train"
    dataset = load_speech_dataset(str(folder), config, split)
    assert sentences(dataset) == [text]
    assert [Path(p).name for p in paths(dataset)] == [source.name]


def test_openslr_manifest_errors(data, tmp_path):
    folder = tmp_path / "slr"
    folder.mkdir()
    wav = data.folders["openslr"] / "wavs" / f"{data.ids['train'][0]}.wav"
    shutil.copy(wav, folder / "a.wav")
    cases = [
        (["a\tone", "b\ttwo"], r"1 ids in line_index\.tsv have no audio file.*e\.g\. b"),
        (["a\tone", "a\tagain"], r"line 2: id a appears twice"),
        (["a\tone", "no-tab-here"], r"line 2: expected id<TAB>transcript"),
    ]
    for lines, message in cases:
        write_line_index(folder, lines)
        with pytest.raises(CtcforgeError, match=message):
            load_speech_dataset(str(folder), None, "validated")
    write_line_index(folder, ["a\tone"])
    (folder / "nested").mkdir()
    shutil.copy(wav, folder / "nested" / "a.flac")
    with pytest.raises(CtcforgeError, match=r"two audio files for id a"):
        load_speech_dataset(str(folder), None, "validated")


@pytest.mark.parametrize("name", ["./no-such-folder", "/no/such/folder", "~/no-such-folder-ctcforge",
                                  "owner/name/extra", "file.txt"])
def test_name_that_is_no_folder_and_no_hub_id_is_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("not a dataset\n", encoding="utf-8")
    expected = f"{name} is not a folder" if name == "file.txt" else f"{name}: no such folder"
    with pytest.raises(CtcforgeError, match=re.escape(expected)):
        load_speech_dataset(name, None, "test")


@pytest.mark.parametrize("archive", ["cv-corpus-20.0-hy-AM.tar.gz", "release.tgz", "release.zip"])
def test_an_archive_is_refused_with_extract_it_first(tmp_path, monkeypatch, archive):
    monkeypatch.chdir(tmp_path)
    (tmp_path / archive).write_bytes(b"\x1f\x8b not really")
    with pytest.raises(CtcforgeError, match="is an archive; extract it first"):
        load_speech_dataset(archive, "hy-AM", "train")


def test_a_hub_name_with_the_hub_off_is_no_such_folder_before_any_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("went to the Hub"))
    with pytest.raises(CtcforgeError, match="cv-corpus/hy-AM: no such folder, and the Hub is off"):
        load_speech_dataset("cv-corpus/hy-AM", None, "train")


@pytest.mark.parametrize("name", ["common_voice", "mozilla-foundation/common_voice_8_0"])
def test_hub_ids_are_not_local(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert is_local_path(name) is False


def test_config_names_a_sub_folder_or_falls_back_to_the_folder(data):
    # With a config that is no sub-folder, the folder itself is read (a locale folder given whole).
    assert sentences(load_speech_dataset(str(data.locale), "hy-AM", "dev")) == [
        data.sentence[i] for i in data.ids["dev"]]
    with pytest.raises(CtcforgeError, match="has no locale ja; its locales: hy-AM$"):
        load_speech_dataset(str(data.cv), "ja", "dev")


def test_a_config_naming_another_locale_than_the_locale_folder_is_refused(data):
    with pytest.raises(CtcforgeError, match=r"is the folder of one locale \(hy-AM\), not of --config ka"):
        load_speech_dataset(str(data.locale), "ka", "dev")


def copy_locale(data, tmp_path) -> Path:
    locale = tmp_path / "cv" / "hy-AM"
    shutil.copytree(data.locale, locale, symlinks=True)
    return locale


def test_malformed_tsv_rows_are_skipped_counted_and_named(data, tmp_path, caplog):
    """A row with a field too few, and one with a tab inside its sentence (which would cut
    the reference), are left out and named; the other rows read whole."""
    locale = copy_locale(data, tmp_path)
    lines = (locale / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, first, second, *rest = lines
    short = "\t".join(first.split("\t")[:-1])
    fields = second.split("\t")
    fields[header.split("\t").index("sentence")] += "\tcut here"
    (locale / "train.tsv").write_text("\n".join([header, short, "\t".join(fields), *rest]) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        train = load_speech_dataset(str(locale), None, "train")
    assert sentences(train) == [data.sentence[i] for i in data.ids["train"][2:]]
    assert f"skipped 2 of {len(lines) - 1} rows of {locale / 'train.tsv'}" in caplog.text
    expected = len(header.split("\t"))
    assert f"line 2 has {expected - 1}, line 3 has {expected + 1}" in caplog.text


def test_a_delta_release_is_refused_as_having_no_splits(data, tmp_path):
    locale = tmp_path / "cv-corpus-20.0-delta-2024-12-06" / "hy-AM"
    shutil.copytree(data.locale, locale, symlinks=True)
    for split in ("train", "dev", "test"):
        (locale / f"{split}.tsv").unlink()
    with pytest.raises(CtcforgeError, match=r"is from a delta release .* no train/dev/test splits; use the full"):
        load_speech_dataset(str(locale.parent), "hy-AM", "train")


def test_a_header_only_split_is_refused_naming_it(data, tmp_path):
    locale = copy_locale(data, tmp_path)
    header = (locale / "dev.tsv").read_text(encoding="utf-8").splitlines()[0]
    (locale / "dev.tsv").write_text(header + "\n", encoding="utf-8")
    with pytest.raises(CtcforgeError, match=r"dev\.tsv lists no clips \(header only\); choose another split"):
        load_speech_dataset(str(locale), None, "dev")


def test_listed_splits_leave_out_files_that_are_not_splits(data, tmp_path):
    locale = copy_locale(data, tmp_path)
    for name in ("clip_durations", "validated_sentences"):
        (locale / f"{name}.tsv").write_text("header\n", encoding="utf-8")
    with pytest.raises(CtcforgeError) as error:
        load_speech_dataset(str(locale), None, "other")
    assert str(error.value).endswith("its splits: dev, test, train, validated")


# ------------------------------------------------------------------ dataset_id


# (name, config, split, id); {tmp} is the test's tmp_path.
DATASET_IDS = [
    ("mozilla-foundation/common_voice_8_0", "ja", "test", "mozilla-foundation_common_voice_8_0_ja_test"),
    ("mozilla-foundation/common_voice_8_0", None, "test", "mozilla-foundation_common_voice_8_0_test"),
    ("google/fleurs", "km_kh", "validation", "google_fleurs_km_kh_validation"),
    ("{tmp}/data/cv-corpus-17.0/", "hy-AM", "test", "cv-corpus-17.0_hy-AM_test"),
    ("{tmp}/data/cv-corpus-17.0", "hy-AM", "test", "cv-corpus-17.0_hy-AM_test"),
    ("{tmp}/data/cv-corpus-17.0/hy-AM", None, "train+dev", "hy-AM_train+dev"),
]


@pytest.mark.parametrize("name, config, split, expected", DATASET_IDS, ids=[e for _, _, _, e in DATASET_IDS])
def test_dataset_id(tmp_path, name, config, split, expected):
    (tmp_path / "data" / "cv-corpus-17.0" / "hy-AM").mkdir(parents=True)
    assert dataset_id(name.format(tmp=tmp_path), config, split) == expected


# ------------------------------------------------------------------ durations without decoding


CV_COLUMNS = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
              "gender", "accents", "variant", "locale", "segment"]  # the 13 columns since 17.0


def write_listed_release(root: Path, splits: dict[str, list[str]], locale: str = "hy-AM") -> Path:
    """A Common Voice locale folder in today's layout whose clips are named CLIP_ID.mp3 and hold
    bytes that are no audio at all: these tests must never need to decode them."""
    folder = root / "cv-corpus-25.0-2026-03-09" / locale
    (folder / "clips").mkdir(parents=True)
    for split, clip_ids in splits.items():
        rows = ["\t".join(CV_COLUMNS)]
        for clip_id in clip_ids:
            fields = dict.fromkeys(CV_COLUMNS, "")
            fields.update(client_id="c1", path=f"{clip_id}.mp3", sentence=f"sentence {clip_id}", locale=locale)
            rows.append("\t".join(fields[column] for column in CV_COLUMNS))
            (folder / "clips" / f"{clip_id}.mp3").write_bytes(b"not an mp3 " + clip_id.encode())
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def write_clip_durations(folder: Path, milliseconds: dict[str, int], header: str = "clip\tduration[ms]") -> None:
    lines = [header] + [f"{clip_id}.mp3\t{ms}" for clip_id, ms in milliseconds.items()]
    (folder / "clip_durations.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def durations_of(dataset: datasets.Dataset) -> dict[str, float | None]:
    return {sentence.split()[-1]: seconds for sentence, seconds in zip(dataset["sentence"], dataset["duration"])}


@pytest.fixture
def listed(tmp_path) -> Path:
    folder = write_listed_release(tmp_path, {"train": ["a", "b", "c", "d"], "dev": ["e", "f"]})
    # d is listed as 0 ms, what the duration reporter writes for a clip it could not read;
    # f is not listed at all.
    write_clip_durations(folder, {"a": 1500, "b": 60000, "c": 250, "d": 0, "e": 4321})
    return folder


def test_the_default_is_still_two_columns_and_durations_add_a_third(listed):
    assert load_speech_dataset(str(listed), None, "train").column_names == ["audio", "sentence"]
    dataset = load_speech_dataset(str(listed.parent), "hy-AM", "train+dev", with_durations=True)
    assert dataset.column_names == ["audio", "sentence", "duration"]
    assert durations_of(dataset) == {"a": 1.5, "b": 60.0, "c": 0.25, "d": None, "e": 4.321, "f": None}
    assert dataset.features["audio"].decode is False


def test_the_duration_list_is_read_once_for_every_split(listed, monkeypatch):
    from ctcforge.runtime import speech_data

    reads = []
    parse = speech_data.parse_clip_durations_tsv
    monkeypatch.setattr(speech_data, "parse_clip_durations_tsv", lambda path: reads.append(path) or parse(path))
    load_speech_dataset(str(listed), None, "train+dev", with_durations=True)
    load_speech_dataset(str(listed), None, "dev", with_durations=True)
    assert reads == [str(listed / "clip_durations.tsv")]
    # A list rewritten in place is read again.
    write_clip_durations(listed, {"e": 1000, "f": 2000, "a": 1, "b": 2, "c": 3, "d": 4, "g": 5})
    assert durations_of(load_speech_dataset(str(listed), None, "dev", with_durations=True)) == {"e": 1.0, "f": 2.0}
    assert len(reads) == 2


def test_a_clip_listed_as_too_long_is_dropped_without_its_file_being_read(listed, monkeypatch):
    """b is listed as 60 s and its file is damaged: it goes as too long, and neither the
    decoder nor open() ever sees a clip."""
    (listed / "clips" / "b.mp3").write_bytes(os.urandom(64))
    opened = []
    real_open = open

    def watching_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a clip was decoded")

    monkeypatch.setattr("builtins.open", watching_open)
    monkeypatch.setattr(datasets.Audio, "decode_example", no_decoding)
    dataset = load_speech_dataset(str(listed), None, "train", with_durations=True)
    kept = filter_by_duration(dataset, min_seconds=0.5, max_seconds=20.0)
    assert (kept.too_short, kept.too_long, kept.unknown) == (1, 1, 1)
    assert list(kept.dataset["sentence"]) == ["sentence a", "sentence d"]
    assert not [path for path in opened if "clips" in path], opened


def test_the_filter_follows_the_rows_of_a_shuffled_or_selected_dataset(listed):
    dataset = load_speech_dataset(str(listed), None, "train", with_durations=True).select([3, 1, 0, 2])
    kept = filter_by_duration(dataset, max_seconds=2.0)
    assert list(kept.dataset["sentence"]) == ["sentence d", "sentence a", "sentence c"]
    unbounded = filter_by_duration(dataset)
    assert (unbounded.too_short, unbounded.too_long, unbounded.unknown) == (0, 0, 1)
    assert len(unbounded.dataset) == 4


def test_the_filter_asks_for_the_duration_column(listed):
    with pytest.raises(CtcforgeError, match=r"has no column duration .*; load it with "
                                           r"load_speech_dataset\(\.\.\., with_durations=True\)$"):
        filter_by_duration(load_speech_dataset(str(listed), None, "train"), max_seconds=1.0)


def test_older_releases_list_durations_in_times_txt(tmp_path, caplog):
    """Before 16.1 the reporter wrote times.txt: the path it was given, backquoted, " = " and
    milliseconds."""
    folder = write_listed_release(tmp_path, {"train": ["a", "b", "c"]})
    (folder / "times.txt").write_text(
        "`/bundler/cv-corpus-15.0-2023-09-08/hy-AM/clips/a.mp3` = 2500\n"
        "`/bundler/cv-corpus-15.0-2023-09-08/hy-AM/clips/b.mp3` = 0\n"
        "not a times line\n", encoding="utf-8")
    assert durations_of(load_speech_dataset(str(folder), None, "train", with_durations=True)) == {
        "a": 2.5, "b": None, "c": None}
    assert "skipped 1 of 3 rows of" in caplog.text and "`PATH` = MILLISECONDS" in caplog.text


def test_clip_durations_tsv_wins_over_times_txt_and_takes_the_documented_filename_header(tmp_path):
    folder = write_listed_release(tmp_path, {"train": ["a"]})
    (folder / "times.txt").write_text("`clips/a.mp3` = 9000\n", encoding="utf-8")
    write_clip_durations(folder, {"a": 1200}, header="filename\tduration[ms]")
    assert durations_of(load_speech_dataset(str(folder), None, "train", with_durations=True)) == {"a": 1.2}


def test_a_duration_list_with_another_header_is_refused_naming_the_fix(tmp_path):
    folder = write_listed_release(tmp_path, {"train": ["a"]})
    write_clip_durations(folder, {"a": 1200}, header="clip\tseconds")
    with pytest.raises(CtcforgeError, match=r"clip_durations\.tsv has the columns clip, seconds, not clip and "
                                           r"duration\[ms\]; fix its header, or delete it"):
        load_speech_dataset(str(folder), None, "train", with_durations=True)


def test_malformed_duration_rows_are_unknown_and_counted(tmp_path, caplog):
    folder = write_listed_release(tmp_path, {"train": ["a", "b", "c"]})
    (folder / "clip_durations.tsv").write_text("clip\tduration[ms]\na.mp3\t1000\nb.mp3\tlong\nc.mp3\n",
                                               encoding="utf-8")
    with caplog.at_level("WARNING"):
        dataset = load_speech_dataset(str(folder), None, "train", with_durations=True)
    assert durations_of(dataset) == {"a": 1.0, "b": None, "c": None}
    assert f"skipped 2 of 3 rows of {folder / 'clip_durations.tsv'} that are not CLIP<TAB>MILLISECONDS" in caplog.text
    assert "line 3, 4" in caplog.text


def test_a_release_without_a_duration_list_says_so_once(tmp_path, caplog):
    folder = write_listed_release(tmp_path, {"train": ["a"], "dev": ["b"]})
    with caplog.at_level("WARNING"):
        train = load_speech_dataset(str(folder), None, "train", with_durations=True)
        load_speech_dataset(str(folder), None, "train+dev", with_durations=True)
    assert list(train["duration"]) == [None]
    assert caplog.text.count("has no clip_durations.tsv (nor times.txt); clip durations are unknown") == 1


def test_formats_that_list_no_durations_get_an_unknown_column(tmp_path):
    write_metadata_csv(tmp_path / "af", [{"file_name": "a.wav", "sentence": "one", "duration": "99"}])
    dataset = load_speech_dataset(str(tmp_path / "af"), None, "train", with_durations=True)
    assert dataset.column_names == ["audio", "sentence", "duration"]
    assert list(dataset["duration"]) == [None], "a column the dataset brings is not trusted as seconds"
