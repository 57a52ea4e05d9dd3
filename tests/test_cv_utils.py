"""The second opinion: commonvoice-utils' validation data (a test-only dependency, read and
never copied) against each profile whose locale it covers."""

import pytest

from ctcforge import cv_utils_check
from ctcforge.cli import main
from ctcforge.cv_utils_check import allowed_letters, compare, covered_locales, verdict
from ctcforge.languages import available_codes, load_profile, profile_from_dict

# Without the package (pinned in requirements-dev.txt, installed by ./setup.sh) nothing is
# covered, and test_most_profiles_are_checked fails rather than the comparison passing unseen.
CHECKED = [code for code in available_codes() if code in covered_locales()]


def test_most_profiles_are_checked():
    assert len(CHECKED) >= 40, CHECKED


@pytest.mark.parametrize("code", CHECKED)
def test_every_letter_commonvoice_utils_allows_is_ours_or_a_reasoned_exception(code):
    profile = load_profile(code)
    comparison = compare(profile)
    assert not comparison.differing, f"{code}: letters allowed by commonvoice-utils that the profile neither " \
                                     f"writes nor removes: {comparison.differing}"
    assert not comparison.stale_exceptions, f"{code}: exceptions that agree after all: {comparison.stale_exceptions}"
    assert verdict(profile).startswith("agrees")


def test_a_missing_letter_is_a_disagreement_and_an_explained_one_is_not():
    profile = load_profile("uk")
    data = profile.to_dict()
    data["alphabet"] = data["alphabet"].replace("ґ", "")
    assert "ґ" in allowed_letters("uk")
    assert compare(profile_from_dict(data, source="test")).differing == ("ґ",)
    assert verdict(profile_from_dict(data, source="test")) == "differs: ґ"
    data["cv_utils_exceptions"] = {"ґ": "a reason"}
    assert compare(profile_from_dict(data, source="test")).agrees
    data["alphabet"] = profile.alphabet  # the letter is back: the exception has gone stale
    assert compare(profile_from_dict(data, source="test")).stale_exceptions == ("ґ",)


def test_rejected_letters_and_decomposed_tone_marks_are_not_demanded():
    # uk: commonvoice-utils rejects a sentence holding Russian ы; vi: it checks NFKD text.
    assert "ы" not in allowed_letters("uk")
    assert "\u0301" in allowed_letters("vi") and compare(load_profile("vi")).agrees


def test_an_exception_needs_a_reason():
    data = load_profile("mhr").to_dict()
    data["cv_utils_exceptions"] = {"ӹ": " "}
    with pytest.raises(Exception, match="cv_utils_exceptions"):
        profile_from_dict(data, source="test")


def test_languages_lists_script_word_split_voice_and_the_second_opinion(capsys, monkeypatch):
    assert main(["languages"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == set(available_codes())
    assert "script=Thai" in lines["th"] and "words=char" in lines["th"] and "espeak=th" in lines["th"]
    assert lines["ar"].endswith("commonvoice-utils=agrees (1 exception)")
    assert lines["ja"].endswith("commonvoice-utils=no data") and "espeak=-" in lines["km"]
    assert all("commonvoice-utils=agrees" in lines[code] for code in CHECKED)
    monkeypatch.setattr(cv_utils_check, "is_installed", lambda: False)
    assert main(["languages"]) == 0
    assert all(line.endswith("commonvoice-utils=not checked") for line in capsys.readouterr().out.splitlines())
