"""`ctcforge synth`: synthetic Common Voice releases, the fixed sentence split, the sentence files."""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SPEECH_TOOLS, read_tsv

from ctcforge import synth
from ctcforge.languages import alphabet_characters, available_codes, load_profile
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.synth import (SENTENCE_DIR, VARIANTS, load_sentences, plan_clips, read_sentence_lines, sentences_for,
                            split_counts, split_of_sentence, standin_table, standin_text, synthesize, tsv_text)

# Common Voice's clip TSV header, written out here so that a change in synth.COLUMNS fails.
CV_COLUMNS = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents",
              "variant", "locale", "segment"]
SPLITS = ["train", "dev", "test"]
CLIPS, SEED = 12, 7
TOOLS = SPEECH_TOOLS and shutil.which("ffprobe")  # and ffprobe, to check what synthesis wrote
needs_tools = pytest.mark.skipif(not TOOLS, reason="espeak-ng, ffmpeg or ffprobe not installed (./setup.sh)")
SENTENCE_FILES = sorted(SENTENCE_DIR.glob("*.txt"))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    if not TOOLS:
        pytest.skip("espeak-ng, ffmpeg or ffprobe not installed (./setup.sh)")
    return synthesize("hy-AM", tmp_path_factory.mktemp("synth") / "cv", CLIPS, seed=SEED, progress=False)


# ------------------------------------------------------------------ the release folder


@needs_tools
def test_release_has_common_voice_layout_and_columns(release):
    assert release.name == "hy-AM"
    rows = {}
    for split in SPLITS + ["validated"]:
        columns, rows[split] = read_tsv(release / f"{split}.tsv")
        assert columns == CV_COLUMNS
        raw = (release / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        assert all(line.count("\t") == len(CV_COLUMNS) - 1 for line in raw)
        for row in rows[split]:
            assert row["locale"] == "hy-AM" and re.fullmatch(r"[0-9a-f]{128}", row["client_id"])
            assert re.fullmatch(r"common_voice_hy-AM_\d+\.mp3", row["path"])
            assert row["up_votes"] == "2" and row["down_votes"] == "0" and row["gender"] in ("male", "female")
    assert {s: len(rows[s]) for s in SPLITS} == {"train": 10, "dev": 1, "test": 1}
    parts = sorted(row["path"] for split in SPLITS for row in rows[split])
    assert parts == sorted(row["path"] for row in rows["validated"])
    assert len(set(parts)) == CLIPS
    assert sorted(os.listdir(release / "clips")) == parts
    # Nothing half-made is left beside the release.
    assert os.listdir(release.parent) == ["hy-AM"]


@needs_tools
def test_clips_are_48k_mono_mp3(release):
    clips = sorted((release / "clips").iterdir())
    assert len(clips) == CLIPS
    for clip in clips:
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json",
                                str(clip)], capture_output=True, text=True, check=True)
        info = json.loads(probe.stdout)
        (stream,) = info["streams"]
        assert info["format"]["format_name"] == "mp3"
        assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == ("mp3", "48000", 1)
        assert 0.5 < float(info["format"]["duration"]) < 20


@needs_tools
def test_test_sentences_never_reach_train(release):
    normalize = load_profile("hy-AM").normalizer()
    by_split = {split: {normalize(row["sentence"]) for row in read_tsv(release / f"{split}.tsv")[1]}
                for split in SPLITS}
    assert by_split["test"] and by_split["dev"]
    assert not by_split["test"] & by_split["train"]
    assert not by_split["dev"] & by_split["train"]
    assert not by_split["test"] & by_split["dev"]
    for split, sentences in by_split.items():
        assert {split_of_sentence(s) for s in sentences} == {split}


@needs_tools
def test_same_seed_gives_identical_release(release, tmp_path):
    again = synthesize("hy-AM", tmp_path, CLIPS, seed=SEED, progress=False)
    for name in ["train.tsv", "dev.tsv", "test.tsv", "validated.tsv", "ctcforge-synth.json"]:
        assert (again / name).read_bytes() == (release / name).read_bytes(), name
    for clip in (release / "clips").iterdir():
        assert (again / "clips" / clip.name).read_bytes() == clip.read_bytes(), clip.name
    record = json.loads((release / "ctcforge-synth.json").read_text(encoding="utf-8"))
    settings = {(c["voice"], c["rate"], c["pitch"]) for c in record["clips"]}
    assert len(settings) > 1, "every clip got the same voice settings"
    assert all(synth.RATE_RANGE[0] <= c["rate"] <= synth.RATE_RANGE[1] for c in record["clips"])
    assert all(synth.PITCH_RANGE[0] <= c["pitch"] <= synth.PITCH_RANGE[1] for c in record["clips"])


def test_another_seed_gives_other_clips():
    variants = list(VARIANTS)
    one, same, other = (plan_clips("hy-AM", CLIPS, seed, variants=variants) for seed in (SEED, SEED, SEED + 1))
    assert one == same
    assert tsv_text(one, "hy-AM") == tsv_text(same, "hy-AM")
    assert tsv_text(one, "hy-AM") != tsv_text(other, "hy-AM")
    assert [(p.voice, p.rate, p.pitch) for p in one] != [(p.voice, p.rate, p.pitch) for p in other]


def test_plan_does_not_depend_on_the_hash_seed():
    """Sets and dicts must not leak Python's per-process hash randomisation into the TSVs."""
    code = ("from ctcforge.synth import plan_clips, tsv_text, VARIANTS;"
            "print(tsv_text(plan_clips('as', 30, 3, variants=list(VARIANTS)), 'as'), end='')")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(Path(__file__).parents[1])}
        outputs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True).stdout)
    assert outputs == {tsv_text(plan_clips("as", 30, 3, variants=list(VARIANTS)), "as")}


@needs_tools
def test_load_speech_dataset_reads_the_release(release):
    from ctcforge.runtime.speech_data import decode_audio, load_speech_dataset

    for split, size in [("train", 10), ("test", 1)]:
        dataset = load_speech_dataset(str(release.parent), "hy-AM", split)
        assert dataset.column_names == ["audio", "sentence"] and len(dataset) == size
        assert dataset.features["audio"].sampling_rate == 16000
        _, rows = read_tsv(release / f"{split}.tsv")
        assert dataset["sentence"] == [row["sentence"] for row in rows]
        for example in dataset:
            samples = decode_audio(example["audio"], 16000).samples
            assert samples.ndim == 1
            assert 0.5 < len(samples) / 16000 < 20
            assert abs(samples).max() > 0.01, "silent clip"


# ------------------------------------------------------------------ clip planning


def test_split_counts():
    assert split_counts(1) == {"train": 1, "dev": 0, "test": 0}
    assert split_counts(3) == {"train": 1, "dev": 1, "test": 1}
    assert split_counts(12) == {"train": 10, "dev": 1, "test": 1}
    assert split_counts(100) == {"train": 80, "dev": 10, "test": 10}
    for n in range(3, 60):
        counts = split_counts(n)
        assert counts["test"] >= 1 and counts["dev"] >= 1 and sum(counts.values()) == n


def test_clips_repeat_sentences_only_within_their_split():
    """600 clips is more than the train split has sentences: each sentence is used once
    per pass, and no clip takes a sentence from another split."""
    plans = plan_clips("hy-AM", 600, 1, variants=list(VARIANTS))
    for split in SPLITS:
        used = collections.Counter(p.sentence for p in plans if p.split == split)
        assert set(used) == set(sentences_for("hy-AM", split))
        assert max(used.values()) - min(used.values()) <= 1
    for plan in plans:
        assert split_of_sentence(plan.sentence, "hy-AM") == plan.split
    repeated = collections.defaultdict(set)
    for plan in plans:
        repeated[plan.sentence].add((plan.voice, plan.rate, plan.pitch))
    assert all(len(settings) > 1 for sentence, settings in repeated.items()
               if sum(p.sentence == sentence for p in plans) > 1)


def test_num_clips_and_seed_are_checked():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(CtcforgeError, match="--num-clips"):
            plan_clips("hy-AM", bad)
    with pytest.raises(CtcforgeError, match="--seed"):
        plan_clips("hy-AM", 5, seed="x")


# ------------------------------------------------------------------ the sentence split


def test_split_is_a_function_of_normalised_text_only(tmp_path):
    normalize = load_profile("hy-AM").normalizer()
    sentences = load_sentences("hy-AM")
    for sentence in sentences:
        # Upper case, but not և: its capital is two letters, Եվ, which is another spelling.
        upper = "".join(c if c == "և" else c.upper() for c in sentence)
        respelled = "  " + upper.replace(" ", " ,  ") + "!"
        assert normalize(respelled) == normalize(sentence)
        assert split_of_sentence(respelled, "hy-AM") == split_of_sentence(sentence, "hy-AM") \
            == split_of_sentence(normalize(sentence))
    assert len({split_of_sentence(s, "hy-AM") for s in sentences}) == 3
    # Other lines in the file do not move a sentence: every third line alone splits the same.
    subset = sentences[::3]
    (tmp_path / "hy-AM.txt").write_text("\n".join(subset) + "\n", encoding="utf-8")
    for split in SPLITS:
        assert sentences_for("hy-AM", split, tmp_path) == [s for s in subset if s in sentences_for("hy-AM", split)]


@pytest.mark.parametrize("path", SENTENCE_FILES, ids=lambda p: p.stem)
def test_sentence_file(path):
    profile = load_profile(path.stem)
    assert profile.code == path.stem
    normalize = profile.normalizer()
    lines = read_sentence_lines(path)
    distinct = load_sentences(path.stem)
    assert len(distinct) >= 300
    letters = set(alphabet_characters(profile)) | {" "}
    normalised = {sentence: normalize(sentence) for sentence in lines}
    for sentence, text in normalised.items():
        assert not re.search(r"\d", sentence), sentence
        assert not set(text) - letters, (sentence, set(text) - letters)
        if profile.word_split == "space":
            assert 4 <= len(text.split()) <= 12, sentence
    shares = collections.Counter(split_of_sentence(normalised[s]) for s in distinct)
    assert 0.05 <= shares["test"] / len(distinct) <= 0.15
    assert 0.05 <= shares["dev"] / len(distinct) <= 0.15
    assert len({normalised[s] for s in distinct}) == len(distinct)


def test_armenian_and_assamese_have_sentence_files():
    assert {"hy-AM", "as"} <= {p.stem for p in SENTENCE_FILES}
    assert {p.stem for p in SENTENCE_FILES} <= set(available_codes())
    assert "র" not in (SENTENCE_DIR / "as.txt").read_text(encoding="utf-8"), "Assamese writes ৰ, not র"


def test_sentence_format(tmp_path):
    (tmp_path / "hy-AM.txt").write_text("# a comment\n\n  Բարի լույս, ինչպե՞ս ես։  \nԲԱՐԻ ԼՈՒՅՍ ԻՆՉՊԵՍ ԵՍ\n"
                                        "Ես գնում եմ տուն։\n", encoding="utf-8")
    assert read_sentence_lines(tmp_path / "hy-AM.txt") == ["Բարի լույս, ինչպե՞ս ես։", "ԲԱՐԻ ԼՈՒՅՍ ԻՆՉՊԵՍ ԵՍ",
                                                            "Ես գնում եմ տուն։"]
    assert load_sentences("hy-AM", tmp_path) == ["Բարի լույս, ինչպե՞ս ես։", "Ես գնում եմ տուն։"]
    (tmp_path / "hy-AM.txt").write_text("Ես\tգնում եմ\n", encoding="utf-8")
    with pytest.raises(CtcforgeError, match="line 1.*tab"):
        load_sentences("hy-AM", tmp_path)


# ------------------------------------------------------------------ what is spoken


def test_japanese_is_spoken_from_hiragana(tmp_path):
    (tmp_path / "ja.txt").write_text("東京へ行きました。\nコーヒーを飲みたいです。\n", encoding="utf-8")
    normalize = load_profile("ja").normalizer()
    for plan in plan_clips("ja", 2, 0, tmp_path, variants=["m1"]):
        assert plan.sentence in ("東京へ行きました。", "コーヒーを飲みたいです。")
        assert plan.spoken == normalize(plan.sentence)
        assert re.fullmatch(r"[\u3041-\u309f\u30fc]+", plan.spoken), plan.spoken
        assert plan.voice == "ja+m1"


def test_written_sentence_is_spoken_as_is():
    plan = plan_clips("as", 1, 0, variants=["f2"])[0]
    assert plan.spoken == plan.sentence and plan.voice == "as+f2" and plan.gender == "female"


def test_khmer_stand_in_is_a_decodable_letter_code():
    profile = load_profile("km")
    assert profile.espeak_voice is None
    table = standin_table(profile)
    assert set(table) == set(alphabet_characters(profile))
    assert len(set(table.values())) == len(table)
    inverse = {syllable: letter for letter, syllable in table.items()}
    sentence = "ខ្ញុំ ទៅ ផ្សារ។"
    spoken = standin_text(profile, sentence)
    assert spoken == standin_text(profile, sentence)
    syllable = re.compile(r"(?:ch|[ptkbdmfsy])[aeiou][nl]?")
    decoded = []
    for word in spoken.split():
        parts = syllable.findall(word)
        assert "".join(parts) == word
        decoded.append("".join(inverse[p] for p in parts))
    assert " ".join(decoded) == profile.normalizer()(sentence)


@needs_tools
def test_khmer_stand_in_synthesises(tmp_path):
    (tmp_path / "km.txt").write_text("ខ្ញុំ ទៅ ផ្សារ។\nអរគុណ ច្រើន។\n", encoding="utf-8")
    out = synthesize("km", tmp_path / "cv", 2, seed=0, progress=False, sentences_dir=tmp_path)
    record = json.loads((out / "ctcforge-synth.json").read_text(encoding="utf-8"))
    assert record["standin_voice"] is True
    assert all(c["voice"].startswith(synth.STANDIN_VOICE + "+") for c in record["clips"])
    assert len(list((out / "clips").glob("*.mp3"))) == 2


# ------------------------------------------------------------------ errors


def test_missing_sentences_file_is_named(tmp_path):
    with pytest.raises(CtcforgeError, match=re.escape(str(tmp_path / "km.txt"))):
        synthesize("km", tmp_path / "cv", 5, sentences_dir=tmp_path, progress=False)
    assert not (tmp_path / "cv").exists()
    with pytest.raises(CtcforgeError, match="unknown language"):
        sentences_for("xx-YY", "test")


def test_missing_tools_point_to_setup(monkeypatch, tmp_path):
    monkeypatch.setattr(synth, "ESPEAK", "espeak-ng-not-installed-here")
    with pytest.raises(CtcforgeError, match=r"espeak-ng.*\./setup\.sh"):
        synthesize("hy-AM", tmp_path, 3, progress=False)
    assert not list(tmp_path.iterdir())


@needs_tools
def test_non_empty_target_is_refused(tmp_path):
    (tmp_path / "hy-AM").mkdir()
    (tmp_path / "hy-AM" / "train.tsv").write_text("keep me", encoding="utf-8")
    with pytest.raises(CtcforgeError, match="another --output-dir"):
        synthesize("hy-AM", tmp_path, 3, progress=False)
    assert (tmp_path / "hy-AM" / "train.tsv").read_text(encoding="utf-8") == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["hy-AM"]
    # An empty folder is filled.
    (tmp_path / "hy-AM" / "train.tsv").unlink()
    synthesize("hy-AM", tmp_path, 3, progress=False)
    assert (tmp_path / "hy-AM" / "validated.tsv").is_file()


@needs_tools
def test_failed_run_leaves_nothing_behind(monkeypatch, tmp_path):
    real_speak = synth.speak
    made = []

    def speak_then_fail(plan, wav_dir):
        if len(made) >= 3:
            raise CtcforgeError("espeak-ng failed (simulated)")
        made.append(plan.path)
        return real_speak(plan, wav_dir)

    monkeypatch.setattr(synth, "speak", speak_then_fail)
    with pytest.raises(CtcforgeError, match="simulated"):
        synthesize("hy-AM", tmp_path, 12, progress=False)
    assert made and not list(tmp_path.iterdir())


# ------------------------------------------------------------------ every espeak-ng language

# The sentence tables of tests/normalisation/ hold real sentences of every profile; one short
# one per language is spoken here.
from test_text_normalizer import read_table  # noqa: E402

from ctcforge.runtime.speech_data import decode_audio  # noqa: E402
from ctcforge.runtime.vocabulary import vocabulary_of  # noqa: E402

SPOKEN = [code for code in available_codes() if load_profile(code).espeak_voice]


def short_training_sentence(code: str) -> str:
    """The shortest table sentence without digits whose normalised text is all alphabet and
    whose split is train (a one-clip release is all train)."""
    profile = load_profile(code)
    normalize, letters = profile.normalizer(), set(alphabet_characters(profile)) | {" "}
    usable = [text for text, _ in read_table(code)
              if "\t" not in text and "\n" not in text and not re.search(r"\d", text)
              and normalize(text) and set(normalize(text)) <= letters and split_of_sentence(text, code) == "train"]
    assert usable, f"tests/normalisation/{code}.tsv: no digit-free training sentence to speak"
    return min(usable, key=len)


@needs_tools
@pytest.mark.parametrize("code", SPOKEN)
def test_every_espeak_language_round_trips(code, tmp_path):
    sentence = short_training_sentence(code)
    (tmp_path / f"{code}.txt").write_text(sentence + "\n", encoding="utf-8")
    release = synthesize(code, tmp_path / "cv", 1, sentences_dir=tmp_path, progress=False)
    _, rows = read_tsv(release / "train.tsv")
    assert [row["sentence"] for row in rows] == [sentence]
    audio = decode_audio({"path": str(release / "clips" / rows[0]["path"]), "bytes": None}, 16000)
    assert audio.samples.size > 16000 * 0.3 and float(abs(audio.samples).max()) > 0.01
    profile = load_profile(code)
    labels = set(vocabulary_of(alphabet_characters(profile)))
    assert set(profile.normalizer()(sentence).replace(" ", "")) <= labels


def test_every_espeak_language_has_a_sentence_file():
    """`ctcforge synth LANG` makes a release of every profile espeak-ng can speak."""
    assert sorted(set(SPOKEN) - {path.stem for path in SENTENCE_FILES}) == []
