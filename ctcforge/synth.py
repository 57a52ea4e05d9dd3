"""Synthetic Common Voice releases spoken by espeak-ng: `ctcforge synth`.

`synthesize(code, output_dir, num_clips, seed)` writes `output_dir/<locale>/` laid out like
a Common Voice release: `train.tsv`, `dev.tsv`, `test.tsv` and `validated.tsv` (every clip)
with Common Voice's columns, and the clips as 48 kHz mono MP3 in `clips/`. It is test and
demo data: the whole training, evaluation and LM path can run offline on it, and a model
trained on it learns something measurable, but it is no substitute for real speech.

Sentences
    come from `ctcforge/sentences/<code>.txt` (UTF-8, one sentence per line, `#` comments;
    see `ctcforge/sentences/README.md`). Sentences that the language's normaliser makes
    equal count once; the first spelling in the file is kept.

Sentence split
    Each distinct sentence belongs to one split, decided by a SHA-1 hash of its
    *normalised* text (`split_of_sentence`): 10% "test", 10% "dev", 80% "train". The
    assignment depends on nothing else: not on the number of clips, not on the seed, not
    on the other lines of the file. So a test sentence is never spoken in a training clip,
    whatever was synthesised, and the n-gram LM text can leave out exactly the sentences
    that may be tested (`sentences_for(code, "test")`). Two spellings that normalise alike
    (`Բարև։` and `բարև`) land in the same split.

Clips
    `num_clips` clips are spread over the splits in the same proportions (at least one test
    and one dev clip from 3 clips up). Within a split the sentences are dealt in seeded
    random order, reshuffled after each pass, so a sentence repeats only when the split
    needs more clips than it has sentences, and then (very likely) with other voice
    settings. Each clip gets a seeded random speaking rate (espeak `-s` 130-190 words per
    minute), pitch (`-p` 30-70) and voice variant (`+m1` ... `+f5`); each variant is one
    "speaker" with its own `client_id`. All random draws are made up front from
    `random.Random(seed)`, so a seed fixes the TSVs byte for byte and every clip's
    parameters (`plan_clips` returns them without making audio); ffmpeg runs with
    `-fflags +bitexact -map_metadata -1`, so the MP3 bytes repeat as well on one machine.

What espeak-ng is given
    The written sentence, for most languages; the `sentence` column always holds it, as
    in Common Voice. Profiles that transliterate (ja: `transliteration: hiragana`) are
    spoken from the normaliser's output, since espeak-ng reads kanji as "Chinese letter".

Languages espeak-ng cannot speak (`espeak_voice: null`, e.g. km)
    get a stand-in that is NOT speech in that language. Every letter of the profile's
    alphabet is given a made-up syllable, computed from its code point (`standin_table`),
    and the normalised sentence is spoken letter by letter, word by word, by the Spanish
    voice (`es`), whose spelling-to-sound rules are regular. The audio is a deterministic
    function of the text, and the syllable code is uniquely decodable, so a model can learn
    to write the letters back and the pipeline is exercised end to end; word error rates
    on it say nothing about Khmer speech recognition.

espeak-ng and ffmpeg run as subprocesses in two workers (`WORKERS`), each taking a batch of
clips: espeak-ng writes each clip's 22.05 kHz WAV to a temporary folder, then one ffmpeg
call encodes the batch (starting ffmpeg costs more than encoding a clip; the bytes are the
same as one call per clip). A thread pool suffices, since the threads only wait on those
processes, and unlike a process pool it needs no pickling and no fork of a Python process
that may hold torch. The release is built in a hidden folder beside its destination and
renamed into place at the end, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import uuid
import wave
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ctcforge.languages import Profile, alphabet_characters, load_profile
from ctcforge.runtime.errors import CtcforgeError

SENTENCE_DIR = Path(str(resources.files("ctcforge") / "sentences"))

# Common Voice's clip TSV columns (releases 13 to 16), in their order.
COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents",
           "variant", "locale", "segment")
SPLITS = ("train", "dev", "test")
# Percent of the sentences (and of the clips) in test and dev; the rest is train.
TEST_PERCENT = 10
DEV_PERCENT = 10
# Changing this string moves every sentence to a new split: never change it casually.
SPLIT_SALT = "ctcforge-sentence-split-v1\n"

RATE_RANGE = (130, 190)  # espeak -s, words per minute
PITCH_RANGE = (30, 70)  # espeak -p, 0-99
# Voice variants that sound like different adult speakers; those the local espeak-ng lacks
# are skipped. (espeak-ng accepts an unknown variant silently, so they are checked.)
VARIANTS = {"m1": "male", "m2": "male", "m3": "male", "m4": "male", "m5": "male", "m6": "male",
            "m7": "male", "f1": "female", "f2": "female", "f3": "female", "f4": "female",
            "f5": "female"}
WORKERS = 2
SAMPLE_RATE = 48000

# The stand-in for languages espeak-ng cannot speak: letter -> syllable, spoken by Spanish.
STANDIN_VOICE = "es"
STANDIN_ONSETS = ("p", "t", "k", "b", "d", "m", "f", "s", "ch", "y")
STANDIN_VOWELS = ("a", "e", "i", "o", "u")
# No onset is a coda, so a run of syllables splits back into syllables one way only.
STANDIN_CODAS = ("", "n", "l")

ESPEAK = "espeak-ng"
FFMPEG = "ffmpeg"


@dataclass(frozen=True)
class ClipPlan:
    """Everything that decides one clip, drawn before any audio is made."""

    path: str  # file name in clips/
    split: str
    sentence: str  # as written in the sentences file: the TSV's `sentence`
    spoken: str  # what espeak-ng is given
    voice: str  # espeak-ng -v argument, e.g. "hy+m3"
    rate: int
    pitch: int
    client_id: str
    gender: str


# ---------------------------------------------------------------------------- sentences


@lru_cache(maxsize=None)
def _profile(code: str) -> Profile:
    return load_profile(code)


@lru_cache(maxsize=None)
def _normalizer(code: str):
    return _profile(code).normalizer()


def sentences_path(code: str, sentences_dir: str | Path | None = None) -> Path:
    """`ctcforge/sentences/<code>.txt`; a missing file is a CtcforgeError naming it."""
    profile = _profile(code)
    path = Path(sentences_dir or SENTENCE_DIR) / f"{profile.code}.txt"
    if not path.is_file():
        raise CtcforgeError(f"no sentences for {profile.code}: {path} is missing; write one sentence per"
                            f" line (see {SENTENCE_DIR / 'README.md'})")
    return path


def read_sentence_lines(path: str | Path) -> list[str]:
    """The sentences of a file: stripped lines, `#` comment lines and blank lines skipped.

    A tab cannot live in a TSV field without quoting, which Common Voice never uses, so a
    line with a tab is refused with its line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CtcforgeError(f"{path}: cannot read sentences: {exc}") from exc
    sentences = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" in line:
            raise CtcforgeError(f"{path}, line {number}: a sentence must not contain a tab")
        sentences.append(line)
    return sentences


def load_sentences(code: str, sentences_dir: str | Path | None = None) -> list[str]:
    """The distinct sentences of a language, in file order.

    Lines that the profile's normaliser makes equal are one sentence (the first spelling
    is kept); a line that normalises to nothing is refused.
    """
    path = sentences_path(code, sentences_dir)
    normalize = _normalizer(code)
    seen: set[str] = set()
    distinct = []
    for sentence in read_sentence_lines(path):
        key = normalize(sentence)
        if not key:
            raise CtcforgeError(f"{path}: {sentence!r} normalises to empty text")
        if key not in seen:
            seen.add(key)
            distinct.append(sentence)
    if not distinct:
        raise CtcforgeError(f"{path} holds no sentences")
    return distinct


def split_of_sentence(text: str, code: str | None = None) -> str:
    """"train", "dev" or "test": the split a sentence belongs to, for good.

    With `code`, `text` is first normalised by that language's profile normaliser (the
    usual call); without it, `text` must already be normalised text. The split is read
    from the SHA-1 of the normalised text: buckets 0-9 of 100 are "test", 10-19 "dev",
    the rest "train". It depends on the normalised text alone.
    """
    if code is not None:
        text = _normalizer(code)(text)
    digest = hashlib.sha1((SPLIT_SALT + text).encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    if bucket < TEST_PERCENT:
        return "test"
    if bucket < TEST_PERCENT + DEV_PERCENT:
        return "dev"
    return "train"


def sentences_for(code: str, split: str, sentences_dir: str | Path | None = None) -> list[str]:
    """The sentences of `code` whose split is `split` ("train", "dev" or "test"), as written.

    The LM text must leave out every "test" (and "dev") sentence: compare normalised text,
    since the split is a property of the normalised sentence.
    """
    if split not in SPLITS:
        raise CtcforgeError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    normalize = _normalizer(code)
    return [s for s in load_sentences(code, sentences_dir) if split_of_sentence(normalize(s)) == split]


# ---------------------------------------------------------------------------- stand-in voice


def standin_syllable(index: int) -> str:
    """The made-up syllable number `index` (0-149): onset, vowel, optional coda."""
    onsets, vowels, codas = len(STANDIN_ONSETS), len(STANDIN_VOWELS), len(STANDIN_CODAS)
    if not 0 <= index < onsets * vowels * codas:
        raise ValueError(f"no stand-in syllable number {index}")
    return (STANDIN_ONSETS[index % onsets] + STANDIN_VOWELS[index // onsets % vowels]
            + STANDIN_CODAS[index // (onsets * vowels)])


def standin_table(profile: Profile) -> dict[str, str]:
    """Letter -> syllable for a language espeak-ng cannot speak.

    A letter's syllable is numbered by its code point's distance from the alphabet's first
    code point, so the table follows from the code points alone; distinct letters get
    distinct syllables (an alphabet spanning more than 150 code points is refused).
    """
    letters = alphabet_characters(profile)
    first = min(ord(c) for c in letters)
    span = max(ord(c) for c in letters) - first + 1
    capacity = len(STANDIN_ONSETS) * len(STANDIN_VOWELS) * len(STANDIN_CODAS)
    if span > capacity:
        raise CtcforgeError(f"{profile.code}: its alphabet spans {span} code points; the espeak stand-in"
                            f" voice has {capacity} syllables")
    return {c: standin_syllable(ord(c) - first) for c in letters}


def standin_text(profile: Profile, sentence: str) -> str:
    """The normalised sentence as stand-in syllables: a word's letters run together into one
    word for the Spanish voice; characters outside the alphabet are not spoken."""
    table = standin_table(profile)
    words = ("".join(table.get(c, "") for c in word) for word in profile.normalizer()(sentence).split())
    return " ".join(w for w in words if w)


def spoken_text(profile: Profile, sentence: str) -> str:
    """What espeak-ng reads for `sentence` (see the module docstring)."""
    if profile.espeak_voice is None:
        return standin_text(profile, sentence)
    if profile.transliteration != "none":
        return profile.normalizer()(sentence)
    return sentence


# ---------------------------------------------------------------------------- planning


def split_counts(num_clips: int) -> dict[str, int]:
    """Clips per split: 10% test and 10% dev, rounded, at least one each from 3 clips up."""
    if num_clips >= 3:
        test = max(1, (num_clips * TEST_PERCENT + 50) // 100)
        dev = max(1, (num_clips * DEV_PERCENT + 50) // 100)
    else:
        test = dev = 0
    return {"train": num_clips - test - dev, "dev": dev, "test": test}


def client_id(locale: str, variant: str) -> str:
    """A Common Voice-style client id (128 hex digits) for one synthetic speaker."""
    return hashlib.sha512(f"ctcforge-synth/{locale}/{variant}".encode()).hexdigest()


def plan_clips(code: str, num_clips: int, seed: int = 0, sentences_dir: str | Path | None = None,
               variants: list[str] | None = None) -> list[ClipPlan]:
    """The clips `synthesize` would make, without making them.

    `variants` defaults to those of `VARIANTS` that the local espeak-ng has.
    """
    if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
        raise CtcforgeError(f"--num-clips must be a whole number of at least 1, not {num_clips!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise CtcforgeError(f"--seed must be a whole number, not {seed!r}")
    profile = load_profile(code)
    if variants is None:
        variants = [v for v in VARIANTS if v in installed_variants()]
    base_voice = profile.espeak_voice or STANDIN_VOICE
    sentences = load_sentences(profile.code, sentences_dir)
    normalize = profile.normalizer()
    by_split: dict[str, list[str]] = {split: [] for split in SPLITS}
    for sentence in sentences:
        by_split[split_of_sentence(normalize(sentence))].append(sentence)

    spoken = {sentence: spoken_text(profile, sentence) for sentence in sentences}
    rng = random.Random(seed)
    plans = []
    for split, count in split_counts(num_clips).items():
        pool = by_split[split]
        if count and not pool:
            raise CtcforgeError(f"{sentences_path(profile.code, sentences_dir)} has no {split} sentences;"
                                f" add sentences (about {TEST_PERCENT}% of them land in test and in dev)")
        order: list[str] = []
        for _ in range(count):
            if not order:
                order = pool[:]
                rng.shuffle(order)
            sentence = order.pop()
            variant = rng.choice(variants) if variants else None
            plans.append(ClipPlan(
                path=f"common_voice_{profile.code}_{len(plans) + 1}.mp3",
                split=split,
                sentence=sentence,
                spoken=spoken[sentence],
                voice=f"{base_voice}+{variant}" if variant else base_voice,
                rate=rng.randint(*RATE_RANGE),
                pitch=rng.randint(*PITCH_RANGE),
                client_id=client_id(profile.code, variant or "default"),
                gender=VARIANTS.get(variant, ""),
            ))
    return plans


# ---------------------------------------------------------------------------- tools


def require_tools() -> None:
    for tool in (ESPEAK, FFMPEG):
        if shutil.which(tool) is None:
            raise CtcforgeError(f"{tool} is not installed (not on PATH); run ./setup.sh, which installs"
                                f" espeak-ng and ffmpeg")


@lru_cache(maxsize=1)
def installed_variants() -> frozenset[str]:
    """The voice variant names (`m1`, `f2`, ...) the local espeak-ng has."""
    listing = subprocess.run([ESPEAK, "--voices=variant"], capture_output=True, text=True)
    names = set()
    for line in listing.stdout.splitlines()[1:]:
        fields = line.split()
        files = [f for f in fields if f.startswith("!v/")]
        if files:
            names.add(files[0][len("!v/"):])
    return frozenset(names)


@lru_cache(maxsize=1)
def installed_voices() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(language, voice name, other languages) of each voice `espeak-ng --voices` lists;
    empty when espeak-ng is not installed."""
    if shutil.which(ESPEAK) is None:
        return ()
    listing = subprocess.run([ESPEAK, "--voices"], capture_output=True, text=True)
    voices = []
    for line in listing.stdout.splitlines()[1:]:
        # " 5  yue  --/M  Chinese_(Cantonese)  sit/yue  (zh-yue 5)(zh 8)": the last column
        # holds (language priority) pairs.
        fields = line.split()
        if len(fields) >= 5:
            others = tuple(part.split()[0] for part in " ".join(fields[5:]).replace(")", "").split("(")
                           if part.strip())
            voices.append((fields[1], fields[3].replace("_", " "), others))
    return tuple(voices)


def voice_for_locale(locale: str) -> tuple[str, str] | None:
    """The espeak-ng voice (its `-v` language, its name) for a Common Voice locale: the voice
    of the locale itself (mt), else of its language (ga for ga-IE), else one listing the
    language among its others; None when espeak-ng has none (or is not installed)."""
    wanted = [locale.lower(), locale.split("-")[0].lower()]
    voices = installed_voices()
    for code in wanted:
        for language, name, _ in voices:
            if language.lower() == code:
                return language, name
    for language, name, others in voices:
        if wanted[1] in (other.lower() for other in others):
            return language, name
    return None


def check_voice(voice: str) -> None:
    result = subprocess.run([ESPEAK, "-q", "-v", voice], input=b"", capture_output=True)
    if result.returncode != 0:
        raise CtcforgeError(f"espeak-ng has no voice {voice!r} (espeak-ng --voices lists them);"
                            f" run ./setup.sh for the full espeak-ng data")


# ---------------------------------------------------------------------------- audio


# One clip's MP3 encoding: 48 kHz mono, VBR quality 4, and nothing variable in the file.
MP3_OPTIONS = ("-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", "-ar", str(SAMPLE_RATE),
               "-ac", "1", "-codec:a", "libmp3lame", "-q:a", "4")
# Clips per ffmpeg call: starting ffmpeg costs more than encoding a clip, and one call with
# many inputs and outputs writes the same bytes as one call per clip, about five times faster.
MAX_BATCH = 16


def speak(plan: ClipPlan, wav_dir: Path) -> tuple[Path, float]:
    """espeak-ng's 22.05 kHz WAV of one clip, and its duration in seconds."""
    wav = wav_dir / (Path(plan.path).stem + ".wav")
    espeak = subprocess.run(
        [ESPEAK, "-b", "1", "-v", plan.voice, "-s", str(plan.rate), "-p", str(plan.pitch), "-w", str(wav)],
        input=plan.spoken.encode("utf-8"), capture_output=True)
    if espeak.returncode != 0 or not wav.is_file():
        raise CtcforgeError(f"espeak-ng failed on {plan.path} ({plan.voice}, {plan.sentence!r}):"
                            f" {espeak.stderr.decode(errors='replace').strip()}")
    with wave.open(str(wav)) as audio:
        duration = audio.getnframes() / audio.getframerate()
    if duration < 0.1:
        raise CtcforgeError(f"espeak-ng made no audio for {plan.sentence!r} ({plan.voice})")
    return wav, duration


def encode_mp3(pairs: list[tuple[Path, Path]]) -> None:
    """Encodes each (wav, mp3) pair with one ffmpeg call, as
    `ffmpeg -i in.wav -map_metadata -1 -fflags +bitexact -ar 48000 -ac 1 -codec:a libmp3lame -q:a 4 out.mp3`."""
    command = [FFMPEG, "-nostdin", "-loglevel", "error", "-y"]
    for wav, _ in pairs:
        command += ["-i", str(wav)]
    for number, (_, mp3) in enumerate(pairs):
        command += ["-map", f"{number}:a", *MP3_OPTIONS, str(mp3)]
    encode = subprocess.run(command, capture_output=True)
    if encode.returncode != 0:
        names = ", ".join(mp3.name for _, mp3 in pairs)
        raise CtcforgeError(f"ffmpeg failed on {names}: {encode.stderr.decode(errors='replace').strip()}")


def render_batch(plans: list[ClipPlan], clips_dir: Path, wav_dir: Path) -> dict[str, float]:
    """Speaks a few clips into `clips_dir`; returns their durations in seconds by file name."""
    spoken = [speak(plan, wav_dir) for plan in plans]
    encode_mp3([(wav, clips_dir / plan.path) for plan, (wav, _) in zip(plans, spoken)])
    for wav, _ in spoken:
        wav.unlink()
    return {plan.path: duration for plan, (_, duration) in zip(plans, spoken)}


def tsv_text(plans: list[ClipPlan], locale: str) -> str:
    """A Common Voice clip TSV: tab-separated, no quoting, header row first."""
    lines = ["\t".join(COLUMNS)]
    for plan in plans:
        row = {"client_id": plan.client_id, "path": plan.path, "sentence": plan.sentence, "up_votes": "2",
               "down_votes": "0", "age": "", "gender": plan.gender, "accents": "", "variant": "",
               "locale": locale, "segment": ""}
        if any(c in row["sentence"] for c in "\t\r\n"):
            raise CtcforgeError(f"sentence {plan.sentence!r} holds a tab or line break")
        lines.append("\t".join(row[column] for column in COLUMNS))
    return "\n".join(lines) + "\n"


def synthesize(profile_code: str, output_dir: str | Path, num_clips: int, seed: int = 0,
               progress: bool = True, sentences_dir: str | Path | None = None) -> Path:
    """Writes a synthetic Common Voice release to `output_dir/<locale>/` and returns that folder.

    A non-empty `output_dir/<locale>` is refused. See the module docstring for the sentence
    split, the voices and the stand-in for languages espeak-ng cannot speak.
    """
    profile = load_profile(profile_code)
    locale = profile.code
    require_tools()
    plans = plan_clips(locale, num_clips, seed, sentences_dir)
    for voice in sorted({plan.voice.split("+")[0] for plan in plans}):
        check_voice(voice)

    output_dir = Path(output_dir).expanduser()
    target = output_dir / locale
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CtcforgeError(f"{target} already exists and is not empty; choose another --output-dir")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        staging = output_dir / f".{locale}.partial-{uuid.uuid4().hex[:12]}"
        (staging / "clips").mkdir(parents=True)
    except OSError as exc:
        raise CtcforgeError(f"cannot create {output_dir}: {exc}") from exc

    try:
        durations = _render_all(plans, staging / "clips", locale, progress)
        for split in SPLITS:
            (staging / f"{split}.tsv").write_text(
                tsv_text([p for p in plans if p.split == split], locale), encoding="utf-8")
        (staging / "validated.tsv").write_text(tsv_text(plans, locale), encoding="utf-8")
        provenance = {
            "generator": "ctcforge synth", "locale": locale, "seed": seed, "num_clips": num_clips,
            "sentences": sentences_path(locale, sentences_dir).name,
            "split_rule": f"sha1 of normalised text: {TEST_PERCENT}% test, {DEV_PERCENT}% dev, rest train",
            "standin_voice": profile.espeak_voice is None,
            "clips": [{**asdict(p), "duration_s": round(durations[p.path], 3)} for p in plans],
        }
        (staging / "ctcforge-synth.json").write_text(
            json.dumps(provenance, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        if target.is_dir():
            target.rmdir()  # empty, checked above
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _render_all(plans: list[ClipPlan], clips_dir: Path, locale: str, progress: bool) -> dict[str, float]:
    from tqdm.auto import tqdm

    # Small batches keep both workers busy on small releases.
    size = max(1, min(MAX_BATCH, -(-len(plans) // (4 * WORKERS))))
    batches = [plans[i:i + size] for i in range(0, len(plans), size)]
    durations: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ctcforge-synth-") as wav_dir, \
            tqdm(total=len(plans), desc=f"synth {locale}", unit="clip", disable=not progress) as bar:
        pool = ThreadPoolExecutor(max_workers=WORKERS)
        try:
            futures = [pool.submit(render_batch, batch, clips_dir, Path(wav_dir)) for batch in batches]
            for future in as_completed(futures):
                done = future.result()
                durations.update(done)
                bar.update(len(done))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return durations
