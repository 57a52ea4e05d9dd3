"""The text normaliser and the language profiles it is built from.

Table-driven: each table row is (language, input, expected). The sentences are written for
these tests; the expected values were worked out by hand (the Japanese readings checked
against pykakasi, the morpheme splits against fugashi + unidic-lite).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import unicodedata
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctcforge.languages import PROFILE_DIR, alphabet_characters, available_codes, load_profile, load_profile_file
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.text_normalizer import Normalizer, RemoveCharacters, ReplaceCharacters

LANGUAGES = ["ja", "km", "zh-HK", "as", "hy-AM", "tr", "sw", "ka", "ta", "eu"]
NON_JA = [code for code in available_codes() if code != "ja"]

HAS_PYKAKASI = importlib.util.find_spec("pykakasi") is not None
HAS_FUGASHI = importlib.util.find_spec("fugashi") is not None and importlib.util.find_spec("unidic_lite") is not None
needs_pykakasi = pytest.mark.skipif(not HAS_PYKAKASI, reason="pykakasi is not installed (ja transliteration)")
needs_fugashi = pytest.mark.skipif(not HAS_FUGASHI, reason="fugashi/unidic-lite are not installed (ja word split)")


@lru_cache(maxsize=None)
def normalizer(code: str) -> Normalizer:
    return load_profile(code).normalizer()


def row(code: str, text: str, expected: str, id: str):
    """One table row; ja rows skip where pykakasi is missing."""
    marks = [needs_pykakasi] if code == "ja" else []
    return pytest.param(code, text, expected, id=f"{code}-{id}", marks=marks)


# (language, input, expected) over real sentences: punctuation of the script, casing,
# whitespace (tabs, newlines, ideographic space U+3000), transliteration and NFKC folding.
NORMALIZE = [
    # Japanese: kanji and katakana become their hiragana reading; NFKC folds full-width
    # Latin and half-width katakana first; 。！「」・ are dropped.
    row("ja", "東京タワーに行きました。", "とうきょうたわーにいきました", "kanji-katakana"),
    row("ja", "私は毎朝コーヒーを飲みます！", "わたしはまいあさこーひーをのみます", "fullwidth-exclamation"),
    row("ja", "ＡＢＣの歌を\u3000歌いましょう。", "abcのうたを うたいましょう", "fullwidth-latin-ideographic-space"),
    row("ja", "ｺｰﾋｰが好きです", "こーひーがすきです", "halfwidth-katakana"),
    row("ja", "「新しい本を買いました」", "あたらしいほんをかいました", "corner-brackets"),
    row("ja", "ジョン・スミスさん", "じょんすみすさん", "middle-dot"),
    row("ja", "私は学校に行きます。", "わたしはがっこうにいきます", "school"),
    # Khmer: ។ ៕ dropped, ៗ (repetition mark) kept, the zero-width space U+200B dropped.
    row("km", "ខ្ញុំ ស្រឡាញ់ ប្រទេស កម្ពុជា ។", "ខ្ញុំ ស្រឡាញ់ ប្រទេស កម្ពុជា", "khan"),
    row("km", "ក្មេងៗ លេង នៅ សាលា៕", "ក្មេងៗ លេង នៅ សាលា", "lek-too-kept"),
    row("km", "សួស្តី\u3000អ្នក\tសុខសប្បាយ ទេ ?", "សួស្តី អ្នក សុខសប្បាយ ទេ", "whitespace"),
    row("km", "ថ្ងៃ\u200bនេះ ភ្លៀង ខ្លាំង។", "ថ្ងៃនេះ ភ្លៀង ខ្លាំង", "zero-width-space"),
    # Cantonese: CJK punctuation and full-width forms dropped or folded, English lower-cased.
    row("zh-HK", "我哋今日去飲茶，好開心！", "我哋今日去飲茶好開心", "cjk-punctuation"),
    row("zh-HK", "佢喺香港大學讀書。", "佢喺香港大學讀書", "full-stop"),
    row("zh-HK", "呢部iPhone好貴㗎！", "呢部iphone好貴㗎", "english-lowercase"),
    row("zh-HK", "ＯＫ，冇問題\u3000聽日見", "ok冇問題 聽日見", "fullwidth-ideographic-space"),
    row("zh-HK", "「你食咗飯未？」\n佢問我。", "你食咗飯未 佢問我", "quotes-newline"),
    row("zh-HK", "啲𨋢好逼……", "啲𨋢好逼", "extension-b-ellipsis"),
    # Assamese: । ॥ and Latin punctuation dropped; ৰ ৱ kept.
    row("as", "মই ভাত খাওঁ।", "মই ভাত খাওঁ", "dari"),
    row("as", "আজি বতৰ বৰ ভাল!", "আজি বতৰ বৰ ভাল", "exclamation"),
    row("as", "গুৱাহাটী অসমৰ আটাইতকৈ ডাঙৰ চহৰ॥", "গুৱাহাটী অসমৰ আটাইতকৈ ডাঙৰ চহৰ", "double-dari"),
    row("as", "তুমি\tকেনে\nআছা?", "তুমি কেনে আছা", "tab-newline"),
    # Armenian: ։ full stop and ՞ question mark (written on the stressed vowel) dropped.
    row("hy-AM", "Բարև, ինչպե՞ս ես։", "բարև ինչպես ես", "question-mark-in-word"),
    row("hy-AM", "Երևանը Հայաստանի մայրաքաղաքն է։", "երևանը հայաստանի մայրաքաղաքն է", "capitals"),
    row("hy-AM", "Ես\tսիրում եմ\u3000«Արարատ» լեռը։", "ես սիրում եմ արարատ լեռը", "whitespace-guillemets"),
    # Turkish: I -> ı and İ -> i, one code point each.
    row("tr", "İSTANBUL", "istanbul", "dotted-capital-i"),
    row("tr", "IRMAK", "ırmak", "dotless-capital-i"),
    row("tr", "Bugün hava çok güzel, değil mi?", "bugün hava çok güzel değil mi", "comma-question"),
    row("tr", "Yarın İzmir'e gideceğiz.", "yarın izmire gideceğiz", "suffix-apostrophe"),
    # Swahili: the apostrophe of ng' is a letter and stays.
    row("sw", "Habari za asubuhi, mwalimu!", "habari za asubuhi mwalimu", "greeting"),
    row("sw", "Ng'ombe wanakula nyasi shambani.", "ng'ombe wanakula nyasi shambani", "ng-apostrophe-kept"),
    row("sw", "“Karibu sana,” alisema Bi. Amina.", "karibu sana alisema bi amina", "quotes"),
    # Georgian: Mtavruli capitals fold to Mkhedruli; „ “ quotes dropped.
    row("ka", "გამარჯობა, როგორ ხარ?", "გამარჯობა როგორ ხარ", "greeting"),
    row("ka", "ᲡᲐᲥᲐᲠᲗᲕᲔᲚᲝ ლამაზი ქვეყანაა!", "საქართველო ლამაზი ქვეყანაა", "mtavruli"),
    row("ka", "„თბილისი“ დიდი ქალაქია.", "თბილისი დიდი ქალაქია", "low-high-quotes"),
    # Tamil
    row("ta", "நான் தமிழ் பேசுகிறேன்.", "நான் தமிழ் பேசுகிறேன்", "full-stop"),
    row("ta", "இன்று  மழை\tபெய்கிறது!", "இன்று மழை பெய்கிறது", "whitespace"),
    # Basque: ¿ ¡ dropped, ñ kept.
    row("eu", "Kaixo, zer moduz?", "kaixo zer moduz", "greeting"),
    row("eu", "¡Gaur eguraldi ona dago mendian!", "gaur eguraldi ona dago mendian", "inverted-exclamation"),
    row("eu", "IÑAKI\tetxera joan da.\n", "iñaki etxera joan da", "capital-enye"),
]

# Decomposed input (base letter + combining mark) must come out composed (NFC): one code
# point per letter, as vocab.json holds them.
DECOMPOSED = [
    # Turkish ş written as s + U+0327 COMBINING CEDILLA, ğ as g + U+0306 COMBINING BREVE.
    row("tr", "S\u0327is\u0327li'de ılık bir aks\u0327am geçirdik",
        "\u015fi\u015flide ılık bir ak\u015fam geçirdik", "s-cedilla"),
    row("tr", "Dag\u0306da kar var.", "da\u011fda kar var", "g-breve"),
    # Tamil கொ = க + ெ + ா composes to க + ொ (U+0BCA); ஔ = ஒ + ௗ (U+0B92 U+0BD7) to U+0B94.
    row("ta", "அவன் எனக்கு ஒரு புத்தகம் க\u0bc6\u0bbeடுத்தான்",
        "அவன் எனக்கு ஒரு புத்தகம் க\u0bcaடுத்தான்", "vowel-sign-o"),
    row("ta", "\u0b92\u0bd7வையார் பாடல்கள்", "\u0b94வையார் பாடல்கள்", "letter-au"),
    # Assamese মো = ম + ে + া composes to ম + ো (U+09CB).
    row("as", "ম\u09c7\u09beৰ নাম ৰাজু।", "ম\u09cbৰ নাম ৰাজু", "vowel-sign-o"),
    # Basque ñ as n + U+0303 COMBINING TILDE.
    row("eu", "In\u0303aki etxera joan da.", "i\u00f1aki etxera joan da", "n-tilde"),
    # Armenian needs no composition; Georgian neither. Japanese: が as か + U+3099.
    row("ja", "か\u3099っこう", "\u304cっこう", "dakuten"),
]

# Unicode excludes a few letters from NFC composition: Assamese/Bengali য় (U+09DF) always comes
# out as য + nukta, the form the as alphabet lists.
EXCLUDED_FROM_COMPOSITION = [
    row("as", "এতি\u09dfা সম\u09df নাই", "এতি\u09af\u09bcা সম\u09af\u09bc নাই", "ya-nukta"),
]

# Deleting an ignored character can bring a letter next to a combining mark: compose again.
COMPOSE_AFTER_REMOVAL = [
    row("eu", "IN\u201d\u0303AKI etorri da", "i\u00f1aki etorri da", "quote-before-tilde"),
    row("tr", "kus\u2019\u0327 uc\u0327tu", "ku\u015f u\u00e7tu", "apostrophe-before-cedilla"),
    # Chuvash: the Latin a + breve meet only after the quote goes, and compose to the Latin ă,
    # a replacement key: the replacements run again after composing and write Cyrillic ӑ.
    row("cv", "пурa\u201d\u0306натпӑр", "пур\u04d1натпӑр", "latin-a-breve-after-removal"),
]

ALL_ROWS = NORMALIZE + DECOMPOSED + EXCLUDED_FROM_COMPOSITION + COMPOSE_AFTER_REMOVAL


@pytest.mark.parametrize("code, text, expected", ALL_ROWS)
def test_normalize(code, text, expected):
    assert normalizer(code)(text) == expected


@pytest.mark.parametrize("code, text, expected", DECOMPOSED)
def test_decomposed_input_is_composed(code, text, expected):
    # The row must really be decomposed, else it tests nothing.
    assert unicodedata.normalize("NFC", text) != text
    out = normalizer(code)(text)
    assert out == expected
    assert unicodedata.is_normalized("NFC", out)


def _letters_of(code: str) -> set[str]:
    return set(alphabet_characters(load_profile(code)))


@pytest.mark.parametrize(
    "code, text, expected",
    # Latin in a ja sentence has no hiragana label; every other row must land in the alphabet.
    [p for p in ALL_ROWS if not (p.values[0] == "ja" and re.search("[a-z]", p.values[2]))],
)
def test_output_uses_only_alphabet_letters(code, text, expected):
    out = normalizer(code)(text)
    outside = sorted({c for c in out if c != " " and c not in _letters_of(code)})
    assert not outside, f"{code}: {outside} not in the alphabet"


def test_turkish_capitals_give_one_code_point_per_letter():
    tr = normalizer("tr")
    assert tr("İSTANBUL") == "istanbul"
    assert len(tr("İSTANBUL")) == len("İSTANBUL")  # no i + U+0307
    assert tr("IRMAK") == "ırmak"
    assert tr("IRMAK")[0] == "\u0131"


def test_non_turkic_lowercase_keeps_dotted_capital_i_one_code_point():
    # Any profile: İ (in a Turkish name inside Basque text) becomes a plain i, not i + U+0307.
    assert normalizer("eu")("İstanbulera") == "istanbulera"


# pykakasi 2.3 copies the text before a tab, newline or other control character a second
# time ("ねこ\nいぬ" -> "ねこねこいぬ"); ToHiragana must feed it only kana and kanji.
@needs_pykakasi
@pytest.mark.parametrize("text, expected", [
    ("猫が\t好き\nです", "ねこが すき です"),
    ("私は\r\n学校に行きます", "わたしは がっこうにいきます"),
])
def test_japanese_tabs_and_newlines(text, expected):
    assert normalizer("ja")(text) == expected


# ---------------------------------------------------------------------------------------
# RemoveCharacters: ignore sets holding the characters that are special in a regex class.

@pytest.mark.parametrize("ignore, text, expected", [
    # A class "[(-}]" would be the range ( .. } and delete every ASCII letter and digit.
    (["(", "-", "}"], "(hello)-world}", "hello)world"),
    # "[^a]" would delete everything but a.
    (["^", "a"], "banana^", "bnn"),
    # "]" first would close an empty class; "[" and "\\" must be literal.
    (["]", "["], "[abc]", "abc"),
    (["\\"], "a\\b\\c", "abc"),
    (["-", "]", "^", "\\", "["], "a-z ^[b]\\c", "az bc"),
    (["-"], "a-z", "az"),
    # Multi-character entries, longest first: "ab" is removed whole, not "a" then a stray "b".
    (["a", "ab"], "abc", "c"),
    (["...", "."], "wait... what.", "wait what"),
    (["<unk>"], "a <unk> b", "a  b"),
    # Letters between the special characters survive.
    (["-", "^"], "x-y^z", "xyz"),
    ([], "a-b", "a-b"),
])
def test_remove_characters(ignore, text, expected):
    assert RemoveCharacters(ignore)(text) == expected


@pytest.mark.parametrize("ignore, text, expected", [
    (["-", "]", "^", "\\", "["], "Hello-[World]^\\ ", "helloworld"),
    (["...", "--"], "One...two--Three", "onetwothree"),
])
def test_remove_characters_in_a_normalizer(ignore, text, expected):
    normalize = Normalizer({"chars_to_ignore": ignore, "casing": "lower"})
    assert normalize(text) == expected
    assert normalize(normalize(text)) == normalize(text)


def test_remove_characters_multichar_is_idempotent():
    remove = RemoveCharacters(["ab"])
    once = remove("aabb")
    assert remove(once) == once


# ---------------------------------------------------------------------------------------
# Idempotency: normalising normalised text changes nothing.

ALL_INPUTS = sorted({p.values[1] for p in ALL_ROWS})


@pytest.mark.parametrize("code", NON_JA)
@pytest.mark.parametrize("text", ALL_INPUTS, ids=range(len(ALL_INPUTS)))
def test_idempotent_on_table_inputs(code, text):
    normalize = normalizer(code)
    once = normalize(text)
    assert normalize(once) == once


@needs_pykakasi
@pytest.mark.parametrize("text", [p.values[1] for p in ALL_ROWS if p.values[0] == "ja"]
                         + ["ねこ いぬ", "ＡＢＣ！", "ヴァイオリン", "人々", "ｶﾀｶﾅ"])
def test_idempotent_japanese(text):
    normalize = normalizer("ja")
    once = normalize(text)
    assert normalize(once) == once


def _interesting(code: str) -> st.SearchStrategy[str]:
    """Text built from the profile's own letters (upper-cased too), its ignored characters,
    whitespace and combining marks: where the steps meet."""
    profile = load_profile(code)
    letters = [c for c in profile.alphabet if not c.isspace()]
    pieces = (letters + [c.upper() for c in letters] + list(profile.chars_to_ignore) + list(profile.replacements)
              + [" ", "\t", "\n", "\u3000", "\u00a0", "\u0301", "\u0307", "\u0327", "\u0303", "I", "İ", "Σ"])
    return st.lists(st.sampled_from(pieces), max_size=30).map("".join)


@pytest.mark.parametrize("code", NON_JA)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_idempotent_property(code, data):
    normalize = normalizer(code)
    text = data.draw(st.one_of(st.text(max_size=40), _interesting(code)))
    once = normalize(text)
    assert normalize(once) == once
    assert once == once.strip() and "  " not in once


@needs_pykakasi
@settings(max_examples=40, deadline=None)
@given(text=st.lists(st.sampled_from(list("東京大学行来見新本猫犬私アイウカキクコーヒーｶﾀｶﾅあいうえおＡＢＣ、。！ ")),
                     max_size=20).map("".join))
def test_idempotent_property_japanese(text):
    normalize = normalizer("ja")
    once = normalize(text)
    assert normalize(once) == once


# ---------------------------------------------------------------------------------------
# split_words: what WER counts.

@pytest.mark.parametrize("code, text, expected", [
    pytest.param("ja", "わたしはがっこうにいきます", ["わたし", "は", "がっこう", "に", "いき", "ます"],
                 marks=needs_fugashi, id="ja-school"),
    pytest.param("ja", "きょうはいいてんきですね", ["きょう", "は", "いい", "てんき", "です", "ね"],
                 marks=needs_fugashi, id="ja-weather"),
    pytest.param("ja", "ねこがすきです", ["ねこ", "が", "すき", "です"], marks=needs_fugashi, id="ja-cat"),
    pytest.param("ja", "らーめん を たべたい", ["らーめん", "を", "たべ", "たい"], marks=needs_fugashi, id="ja-spaces"),
    pytest.param("zh-HK", "我哋今日去飲茶", ["我", "哋", "今", "日", "去", "飲", "茶"], id="zh-HK-chars"),
    pytest.param("zh-HK", "早晨 你好", ["早", "晨", "你", "好"], id="zh-HK-space-ignored"),
    pytest.param("zh-HK", "部 iphone 㗎", ["部", "i", "p", "h", "o", "n", "e", "㗎"], id="zh-HK-latin"),
    pytest.param("km", "ខ្ញុំ ស្រឡាញ់ ប្រទេស កម្ពុជា", ["ខ្ញុំ", "ស្រឡាញ់", "ប្រទេស", "កម្ពុជា"], id="km-spaces"),
    pytest.param("as", "গুৱাহাটী অসমৰ আটাইতকৈ ডাঙৰ চহৰ", ["গুৱাহাটী", "অসমৰ", "আটাইতকৈ", "ডাঙৰ", "চহৰ"], id="as"),
    pytest.param("hy-AM", "երևանը հայաստանի մայրաքաղաքն է", ["երևանը", "հայաստանի", "մայրաքաղաքն", "է"], id="hy-AM"),
    pytest.param("tr", "bugün hava çok güzel", ["bugün", "hava", "çok", "güzel"], id="tr"),
    pytest.param("sw", "ng'ombe wanakula nyasi", ["ng'ombe", "wanakula", "nyasi"], id="sw"),
    pytest.param("ka", "საქართველო ლამაზი ქვეყანაა", ["საქართველო", "ლამაზი", "ქვეყანაა"], id="ka"),
    pytest.param("ta", "நான் தமிழ் பேசுகிறேன்", ["நான்", "தமிழ்", "பேசுகிறேன்"], id="ta"),
    pytest.param("eu", "kaixo zer moduz", ["kaixo", "zer", "moduz"], id="eu"),
    # Thai writes no spaces between words: WER counts characters, spaces between phrases ignored.
    pytest.param("th", "ฝนตก หนัก", ["ฝ", "น", "ต", "ก", "ห", "น", "ั", "ก"], id="th-chars"),
    pytest.param("uk", "мʼясо і хліб", ["мʼясо", "і", "хліб"], id="uk-apostrophe-inside-word"),
])
def test_split_words(code, text, expected):
    normalize = normalizer(code)
    assert normalize.split_words(text) == expected
    assert normalize.words_joined(text) == " ".join(expected)


@needs_pykakasi
@needs_fugashi
def test_japanese_normalise_then_split():
    ja = normalizer("ja")
    assert ja.split_words(ja("猫が好きです。")) == ["ねこ", "が", "すき", "です"]
    assert ja.split_words(ja("私は学校に行きます。")) == ["わたし", "は", "がっこう", "に", "いき", "ます"]


# ---------------------------------------------------------------------------------------
# Profile files and their validation.

VALID = {
    "code": "xx",
    "name": "Testish",
    "script": "Latin",
    "alphabet": "abcdefghijklmnopqrstuvwxyz",
    "chars_to_ignore": [",", "."],
    "casing": "lower",
    "word_split": "space",
    "espeak_voice": None,
    "metrics": ["wer", "cer"],
}


def _write(tmp_path, data: dict, name: str = "xx.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_valid_test_profile_loads(tmp_path):
    # The control for the error cases below: only the changed field makes them fail.
    profile = load_profile_file(_write(tmp_path, VALID))
    assert profile.code == "xx"
    assert profile.normalizer()("Hello, World.") == "hello world"


@pytest.mark.parametrize("change, name, field", [
    ({"alphabett": "abc"}, "xx.yaml", "alphabett"),
    ({"casing": "upper"}, "xx.yaml", "casing"),
    ({"casing": "lower-turkish"}, "xx.yaml", "casing"),
    ({"code": "yy"}, "xx.yaml", "code"),
    ({"code": "xx"}, "XX-y.yaml", "code"),
    ({"alphabet": "abcD"}, "xx.yaml", "alphabet"),  # the normaliser lower-cases D
    ({"alphabet": "abc,"}, "xx.yaml", "alphabet"),  # an ignored character
    ({"alphabet": "", "alphabet_ranges": []}, "xx.yaml", "alphabet"),
    ({"alphabet_ranges": ["4E00-9FFF"]}, "xx.yaml", "alphabet_ranges"),
    ({"word_split": "words"}, "xx.yaml", "word_split"),
    ({"transliteration": "katakana"}, "xx.yaml", "transliteration"),
    ({"unicode_form": "NFD"}, "xx.yaml", "unicode_form"),
    ({"metrics": ["bleu"]}, "xx.yaml", "metrics"),
    ({"metrics": []}, "xx.yaml", "metrics"),
    ({"espeak_voice": 5}, "xx.yaml", "espeak_voice"),
    ({"chars_to_ignore": ","}, "xx.yaml", "chars_to_ignore"),
    ({"chars_to_ignore": [",", ""]}, "xx.yaml", "chars_to_ignore"),
    ({"name": ""}, "xx.yaml", "name"),
    ({"replacements": {"’": ""}}, "xx.yaml", "replacements"),  # deleting is chars_to_ignore's job
    ({"replacements": ["’"]}, "xx.yaml", "replacements"),
    ({"replacements": {"’'": "'"}}, "xx.yaml", "replacements"),  # keys are one character
    ({"replacements": {",": "'"}}, "xx.yaml", "replacements"),  # removed before it is replaced
    ({"replacements": {"K": "k"}}, "xx.yaml", "replacements"),  # lower-cased before it is replaced
    ({"replacements": {"é": "e"}}, "xx.yaml", "replacements"),  # e + U+0301 would compose to é
    ({"replacements": {"e\u0301": "e"}}, "xx.yaml", "replacements"),  # not one NFC character
    ({"replacements": {"ă": "\u0306"}}, "xx.yaml", "replacements"),  # a decomposable key's value starts with a mark
    ({"replacements": {"’": "'", "'": "`"}}, "xx.yaml", "replacements"),  # a chain: not idempotent
    ({"replacements": {"’": "Q"}}, "xx.yaml", "replacements"),  # casing would change the value
    ({"replacements": {"’": ","}}, "xx.yaml", "replacements"),  # an ignored value
    # U+09DF, which NFC splits into য + nukta, is a letter the normaliser never writes.
    pytest.param({"alphabet": "অআকখ\u09df"}, "xx.yaml", "alphabet", id="composition-excluded-letter"),
])
def test_profile_errors_name_file_and_field(tmp_path, change, name, field):
    path = _write(tmp_path, {**VALID, **change}, name)
    with pytest.raises(CtcforgeError) as error:
        load_profile_file(path)
    message = str(error.value)
    assert str(path) in message
    assert f"'{field}'" in message


def test_unreadable_profile_names_file(tmp_path):
    path = tmp_path / "xx.yaml"
    path.write_text("code: xx\nalphabet: [unclosed\n", encoding="utf-8")
    with pytest.raises(CtcforgeError) as error:
        load_profile_file(path)
    assert str(path) in str(error.value)


def test_unknown_language_suggests_close_profile():
    with pytest.raises(CtcforgeError) as error:
        load_profile("hy")
    assert "hy-AM" in str(error.value)
    with pytest.raises(CtcforgeError) as error:
        load_profile("zh")
    assert "zh-HK" in str(error.value)


def test_language_codes_are_case_insensitive():
    assert load_profile("HY-am").code == "hy-AM"
    assert load_profile("zh-hk").code == "zh-HK"
    assert load_profile("JA").code == "ja"


def test_the_ten_profiles_exist():
    assert set(LANGUAGES) <= set(available_codes())


def test_forty_profiles_across_scripts():
    profiles = [load_profile(code) for code in available_codes()]
    assert len(profiles) >= 40
    scripts = {p.script for p in profiles}
    assert {"Latin", "Cyrillic", "Arabic", "Devanagari", "Ethiopic", "Thai", "Greek", "Hebrew"} <= scripts


@pytest.mark.parametrize("code", available_codes())
def test_each_replacement_reaches_the_alphabet(code):
    # Every variant a profile maps is written as letters the model has (or as a space).
    normalize = normalizer(code)
    for key, value in load_profile(code).replacements.items():
        out = normalize(f"a{key}a" if code == "ja" else key)
        assert out == normalize(value)
        assert all(c in _letters_of(code) or c == "a" for c in out), f"{code}: {key!r} -> {out!r}"


def test_zh_hk_headline_metric_is_cer():
    assert load_profile("zh-HK").headline_metric == "cer"
    assert load_profile("zh-HK").word_split == "char"
    assert load_profile("ja").word_split == "fugashi"


@pytest.mark.parametrize("code", available_codes())
def test_profile_file_loads_with_normalised_alphabet(code):
    profile = load_profile(code)
    assert profile.code == code
    assert (PROFILE_DIR / f"{code}.yaml").is_file()
    # The normaliser without transliteration: kana are left alone by pykakasi anyway.
    normalize = Normalizer({**profile.to_dict(), "transliteration": "none"})
    letters = alphabet_characters(profile)
    assert letters
    for letter in letters:
        assert len(letter) == 1
        assert normalize(letter) == letter, f"{code}: the normaliser changes {letter!r} (U+{ord(letter):04X})"
        assert letter not in profile.chars_to_ignore


@lru_cache(maxsize=1)
def _espeak_voices() -> set[str]:
    out = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            names.update({cols[1], cols[3], cols[4].rsplit("/", 1)[-1]})
    return names


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
@pytest.mark.parametrize("code", available_codes())
def test_espeak_voice_exists(code):
    profile = load_profile(code)
    voices = _espeak_voices()
    if profile.espeak_voice is None:
        # A null voice must mean espeak-ng really has none for the language.
        assert code.split("-")[0].lower() not in voices
    else:
        assert profile.espeak_voice in voices


# ---------------------------------------------------------------------------------------
# ReplaceCharacters: one spelling per letter.

def test_replace_characters_maps_each_key():
    replace = ReplaceCharacters({"’": "'", "ي": "ی"})
    assert replace("ng’ombe") == "ng'ombe"
    assert replace("علي") == "علی"
    assert replace("plain") == "plain"
    assert ReplaceCharacters({})("a’b") == "a’b"


def test_replacement_runs_after_casing_and_is_idempotent():
    normalize = Normalizer({**VALID, "alphabet": "abc'", "replacements": {"’": "'"}})
    assert normalize("NG’OMBE") == "ng'ombe"
    assert normalize(normalize("NG’OMBE")) == "ng'ombe"


def test_swahili_apostrophes_are_one_letter():
    # Both ways of typing ng'ombe give the same word, and it keeps the letter.
    sw = normalizer("sw")
    assert sw("Ng’ombe") == sw("Ng'ombe") == "ng'ombe"


def test_valid_replacements_load(tmp_path):
    profile = load_profile_file(_write(tmp_path, {**VALID, "alphabet": "abc'", "replacements": {"’": "'"}}))
    assert profile.replacements == {"’": "'"}


# ---------------------------------------------------------------------------------------
# Sentence tables: tests/normalisation/LANG.tsv, one per profile, `input<TAB>expected`.
# Written for these tests, each expected value worked out by hand. In both columns \t, \n,
# \\ and \uXXXX stand for a tab, a newline, a backslash and that code point (so invisible
# characters and decomposed letters are visible in the file); `#` lines are comments.

TABLE_DIR = Path(__file__).parent / "normalisation"
ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|t|n|\\)")
MIN_ROWS = 8


def _unescape(cell: str) -> str:
    def one(match: re.Match) -> str:
        code = match.group(1)
        return {"t": "\t", "n": "\n", "\\": "\\"}.get(code) or chr(int(code[1:], 16))

    return ESCAPE.sub(one, cell)


def read_table(code: str) -> list[tuple[str, str]]:
    rows = []
    path = TABLE_DIR / f"{code}.tsv"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        assert len(cells) == 2, f"{path}:{number}: want input<TAB>expected, got {len(cells)} cells"
        rows.append((_unescape(cells[0]), _unescape(cells[1])))
    return rows


def _table_rows():
    for code in available_codes():
        if not (TABLE_DIR / f"{code}.tsv").is_file():
            continue
        for index, (text, expected) in enumerate(read_table(code), 1):
            yield row(code, text, expected, f"table{index}")


TABLE_ROWS = list(_table_rows())


def test_unescape():
    assert _unescape("a\\tb\\u0301\\\\n") == "a\tb\u0301\\n"


@pytest.mark.parametrize("code", available_codes())
def test_every_profile_has_a_sentence_table(code):
    assert len(read_table(code)) >= MIN_ROWS, f"{TABLE_DIR / (code + '.tsv')}: fewer than {MIN_ROWS} sentences"


@pytest.mark.parametrize("code, text, expected", TABLE_ROWS)
def test_table_sentence(code, text, expected):
    normalize = normalizer(code)
    out = normalize(text)
    assert out == expected
    # Idempotent, composed, and written only in the alphabet's letters.
    assert normalize(out) == out
    assert unicodedata.is_normalized("NFC", out)
    # Digits are kept, in every script (no profile spells them out or drops them: dropping
    # would delete a spoken word from the reference); Common Voice's sentence rules keep them
    # rare. Latin in a Japanese sentence has no hiragana label.
    if code != "ja":
        outside = sorted({c for c in out if c != " " and not c.isdigit() and c not in _letters_of(code)})
        assert not outside, f"{code}: {outside} not in the alphabet"


@pytest.mark.parametrize("code, text, expected", TABLE_ROWS)
def test_table_sentence_decomposed_gives_the_same(code, text, expected):
    # The same sentence typed with combining marks (NFD) must come out the same.
    assert normalizer(code)(unicodedata.normalize("NFD", text)) == expected
