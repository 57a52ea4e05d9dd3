"""`ctcforge profile LANG --from-text | --from-release`: a profile drafted from the text of a
language ctcforge does not ship, and `ctcforge new --profile` stamping a repo from it."""

import shutil
import subprocess
import sys

import pytest
import yaml

from ctcforge.cli import main
from ctcforge.languages import available_codes, load_profile_file
from ctcforge.profile import draft_profile, draft_yaml, script_of
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.synth import installed_voices

# Maltese: Latin with ċ ġ ħ ż, the article joined by a hyphen, elision by an apostrophe.
MALTESE = [
    "Il-kelb qed jiekol il-laħam fil-ġnien.",
    "Għandi żewġ aħwa u oħt waħda.",
    "Il-Belt Valletta hija l-kapitali ta' Malta.",
    "Ix-xemx tiddi ħafna fis-sajf.",
    "Fejn hu l-ħanut tal-ħobż?",
    "Nixtieq kikkra kafè, jekk jogħġbok.",
    "It-tfal marru l-iskola bil-karozza tal-linja.",
    "Ċaw, kif int illum?",
    "Għal 20 sena għex f'Għawdex.",
    "«Grazzi ħafna», qalet Marija.",
    "Id-dar tagħna għandha ġnien żgħir.",
    "Ix-xita waqgħet il-lejl kollu!",
]
# Lao: no spaces between words, no case, and letters (ຳ ໜ ໝ) that NFKC would split in two.
LAO = [
    "ສະບາຍດີ",
    "ຂອບໃຈຫຼາຍໆ",
    "ຂ້ອຍຮັກເຈົ້າ",
    "ເຈົ້າສະບາຍດີບໍ?",
    "ຂ້ອຍກິນເຂົ້າແລ້ວ",
    "ຂ້ອຍບໍ່ເຂົ້າໃຈ",
    "ຂ້ອຍມີໝາໜຶ່ງໂຕ",
    "ຂ້ອຍໃຊ້ Facebook ທຸກມື້",
    "ນ້ຳ",
]
# Pashto, one word as a PDF gives it: in Arabic presentation forms (ﻣﻨﻨﻪ for مننه).
PASHTO = [
    "زه ښه یم.",
    "ستاسو نوم څه دی؟",
    "ﻣﻨﻨﻪ، ډېره مننه.",
    "زه په کابل کې اوسېږم.",
    "نن ورځ هوا ښه ده.",
]

DRAFTS = [
    # code, lines, script, alphabet, chars_to_ignore, casing, form, word split, digits, inside words, foreign
    ("mt", MALTESE, "Latin", "abdefghijklmnopqrstuvwxzèċġħż", "!',-.?«»", "lower", "NFC", "space", "02", "'-", ""),
    ("lo", LAO, "Lao", "ສະບາຍດີຂອໃຈຫຼໆ້ຮັກເົໍິນແລວ່ມໝໜຶງໂຕຊທຸືຳ", "?", "keep", "NFC", "char", "", "",
     "Facebok"),
    ("ps", PASHTO, "Arabic", "زهښیمستاونڅدډېرپکبلږځ", ".،؟", "keep", "NFKC", "space", "", "", ""),
]


@pytest.mark.parametrize("code, lines, script, alphabet, ignored, casing, form, split, digits, inside, foreign",
                         DRAFTS, ids=[row[0] for row in DRAFTS])
def test_draft_proposes_the_language_s_alphabet_and_rules(code, lines, script, alphabet, ignored, casing, form,
                                                          split, digits, inside, foreign):
    assert code not in available_codes()  # a language ctcforge does not ship
    draft = draft_profile(code, lines)
    fields = draft.fields
    assert fields["script"] == script
    assert set(fields["alphabet"]) == set(alphabet) and len(fields["alphabet"]) == len(set(alphabet))
    assert set(fields["chars_to_ignore"]) == set(ignored)
    assert (fields["casing"], fields["unicode_form"], fields["word_split"]) == (casing, form, split)
    assert fields["metrics"] == (["wer", "cer"] if split == "space" else ["cer"])
    assert "".join(sorted({use.character for use in draft.of_role("digit")})) == digits
    assert len(draft.digit_lines) == (1 if digits else 0)
    assert "".join(draft.inside_words) == inside
    assert {use.character for use in draft.of_role("foreign")} == set(foreign)
    # espeak-ng (installed by setup.sh) speaks Maltese, not Lao or Pashto.
    voiced = code == "mt" and bool(installed_voices())
    assert (fields["espeak_voice"], fields["name"]) == (("mt", "Maltese") if voiced else (None, code))
    # The draft is a profile: it loads, and its normaliser writes only its letters (and the
    # flagged digits and foreign letters) from the text it came from.
    normalize = draft.profile().normalizer()
    written = {c for line in lines for c in normalize(line)} - {" "}
    assert written == set(alphabet) | set(digits) | set(foreign if casing == "keep" else foreign.lower())
    # The YAML file holds exactly these fields, comments aside.
    assert yaml.safe_load(draft_yaml(draft, ["text.txt"])) == fields


def test_draft_lists_every_character_with_its_count_and_name():
    draft = draft_profile("mt", MALTESE)
    by_character = {use.character: use for use in draft.inventory}
    text = "".join(MALTESE)
    assert set(by_character) == set(text)
    assert all(use.count == text.count(c) for c, use in by_character.items())
    assert by_character["ħ"].name == "LATIN SMALL LETTER H WITH STROKE" and by_character["ħ"].category == "Ll"
    assert (by_character["«"].role, by_character["2"].role, by_character["Ċ"].role) == ("ignored", "digit", "letter")
    yaml_text = draft_yaml(draft, ["mt.txt"])
    assert "U+0127 ħ  Ll  Latin" in yaml_text and "LATIN SMALL LETTER H WITH STROKE" in yaml_text
    assert "DIGITS: 1 of the lines hold digits (02)" in yaml_text
    assert "Il-kelb" in yaml_text  # the hyphen inside words, shown where it is


@pytest.mark.parametrize("character, script", [
    ("ħ", "Latin"), ("ж", "Cyrillic"), ("ښ", "Arabic"), ("ሀ", "Ethiopic"), ("中", "Han"), ("\u0301", "Inherited"),
    ("ʻ", "Common"), ("ໜ", "Lao"), ("ᱚ", "Ol_Chiki"), ("!", "Common"), ("٣", "Arabic-indic"),
])
def test_script_is_read_from_the_unicode_name(character, script):
    assert script_of(character) == script


def test_a_modifier_letter_inside_words_is_a_letter():
    # Uzbek writes oʻ and gʻ with U+02BB, a modifier letter of no script: inside words it is a letter.
    draft = draft_profile("uz", ["Oʻzbekiston katta mamlakat.", "Bugun havo yaxshi, togʻlar koʻrinadi."])
    assert "ʻ" in draft.fields["alphabet"] and "ʻ" not in draft.fields["chars_to_ignore"]


def test_empty_text_and_text_without_letters_are_refused():
    with pytest.raises(CtcforgeError, match="no non-empty line"):
        draft_profile("mt", ["", "   "])
    with pytest.raises(CtcforgeError, match="no letters"):
        draft_profile("mt", ["12 34", "!!"])


@pytest.fixture(scope="module")
def maltese_profile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("draft")
    (folder / "mt-sentences.txt").write_text("\n".join(MALTESE) + "\n", encoding="utf-8")
    assert main(["profile", "mt", "--from-text", str(folder / "mt-sentences.txt"),
                 "--output", str(folder / "mt.yaml")]) == 0
    return folder / "mt.yaml"


def test_release_folder_is_read_from_its_validated_sentences(maltese_profile, tmp_path):
    locale = tmp_path / "cv-corpus-25.0-2026-03-01" / "mt"
    locale.mkdir(parents=True)
    rows = [f"{number}\t{sentence}\tgeneral\twikipedia\t1\t0" for number, sentence in enumerate(MALTESE)]
    (locale / "validated_sentences.tsv").write_text(
        "sentence_id\tsentence\tsentence_domain\tsource\tis_used\tclips_count\n" + "\n".join(rows) + "\n",
        encoding="utf-8")
    drafted = tmp_path / "mt.yaml"
    assert main(["profile", "mt", "--from-release", str(locale.parent), "--output", str(drafted)]) == 0
    assert load_profile_file(drafted) == load_profile_file(maltese_profile)


@pytest.mark.parametrize("argv, message", [
    (["profile", "mt"], "--from-text FILE... or --from-release DIR"),
    (["profile", "mt", "--from-text", "missing.txt"], "--from-text missing.txt: no such file"),
    (["profile", "mt", "--from-release", "."], "holds none of validated_sentences.tsv"),
    (["profile", "mt", "--from-text", "x.txt", "--output", "malti.yaml"], "named after its locale: mt.yaml"),
])
def test_bad_requests_are_one_line_errors(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_existing_draft_is_kept_without_force(maltese_profile, capsys):
    before = maltese_profile.read_bytes()
    sentences = str(maltese_profile.with_name("mt-sentences.txt"))
    assert main(["profile", "mt", "--from-text", sentences, "--output", str(maltese_profile)]) == 2
    assert "--force" in capsys.readouterr().err and maltese_profile.read_bytes() == before


def test_drafted_profile_stamps_a_repo_whose_tests_pass(maltese_profile, tmp_path):
    repo, profile = tmp_path / "mt-repo", tmp_path / "mt.yaml"
    shutil.copyfile(maltese_profile, profile)
    assert main(["new", "--profile", str(profile), "--output-dir", str(repo), "--base-model", "tiny"]) == 0
    answers = yaml.safe_load((repo / ".ctcforge-answers.yml").read_text(encoding="utf-8"))
    assert answers["language"] == "mt" and answers["profile"]["alphabet"] == "abdefghijklmnopqrstuvwxzèċġħż"
    assert "Maltese" in (repo / "README.md").read_text(encoding="utf-8")
    # The repo's tests of its language: the profile, the vocabulary and the normaliser.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_identity.py",
               "tests/test_text_normalizer.py"]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and "skipped" not in result.stdout, result.stdout[-3000:]
    # Stamped again without the file: the repo's record holds the profile.
    profile.unlink()
    assert main(["new", "--force", "--output-dir", str(repo)]) == 0
    assert main(["card", str(repo)]) == 0


def test_profile_file_and_language_must_agree(maltese_profile, tmp_path, capsys):
    assert main(["new", "hy-AM", "--profile", str(maltese_profile), "--output-dir", str(tmp_path / "r"),
                 "--base-model", "tiny"]) == 2
    assert "disagrees with --profile" in capsys.readouterr().err


@pytest.mark.parametrize("code, iso639_3", [("mt", "mlt"), ("hy-AM", "hye"), ("yue", "yue"), ("ckb", "ckb"),
                                            ("xx-YY", None)])
def test_a_draft_carries_the_languages_iso_639_3_code(code, iso639_3):
    draft = draft_profile(code, ["abc def ghi", "jkl mno"] * 5)
    assert draft.fields["iso639_3"] == iso639_3
    drafted = yaml.safe_load(draft_yaml(draft, ["text.txt"]))
    assert drafted["iso639_3"] == iso639_3


def test_an_adapter_base_refuses_a_profile_without_an_iso_639_3_code(tmp_path, capsys):
    draft = draft_profile("xx-YY", ["abc def ghi", "jkl mno"] * 5)
    (tmp_path / "xx-YY.yaml").write_text(draft_yaml(draft, ["text.txt"]), encoding="utf-8")
    assert main(["new", "--profile", str(tmp_path / "xx-YY.yaml"), "--base-model", "facebook/mms-1b-all",
                 "--output-dir", str(tmp_path / "repo")]) == 2
    assert "facebook/mms-1b-all trains one language adapter per ISO 639-3 code, and the xx-YY profile has none" in (
        capsys.readouterr().err)
    assert not (tmp_path / "repo").exists()
