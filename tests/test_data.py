"""`ctcforge data common-voice`: a Common Voice release found, downloaded, checked and unpacked
through the real `datacollective` client, whose one door to the network, `requests.request`,
is served here by a fake Mozilla Data Collective holding a small tarball in today's layout.
No test reaches the network: any request the fake does not know fails the test.
"""

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from ctcforge.cli import main
from ctcforge.runtime.speech_data import load_speech_dataset

API = "https://mozilladatacollective.com/api"
STORAGE = "https://storage.example/presigned"
LOCALE = "hy-AM"
RELEASE = "cv-corpus-25.0-2026-03-09"
DATASET_ID = "cmg-hy-am-25"
CLIPS = {"a": 1800, "b": 2400, "c": 900, "d": 3000}  # clip id -> listed milliseconds
SPLITS = {"train": ["a", "b"], "dev": ["c"], "test": ["d"], "validated": ["a", "b", "c", "d"]}
CV_COLUMNS = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
              "gender", "accents", "variant", "locale", "segment"]


def tsv(header: list[str], rows: list[list[str]]) -> bytes:
    return ("\n".join("\t".join(fields) for fields in [header, *rows]) + "\n").encode()


def clip_row(clip_id: str) -> list[str]:
    fields = dict.fromkeys(CV_COLUMNS, "")
    fields.update(client_id="c1", path=f"common_voice_{LOCALE}_{clip_id}.mp3", sentence=f"բառ {clip_id}",
                  up_votes="2", down_votes="0", locale=LOCALE)
    return [fields[column] for column in CV_COLUMNS]


def release_files(release: str = RELEASE, locale: str = LOCALE) -> dict[str, bytes]:
    """The members of one locale's archive in today's layout (clips are not real mp3s: nothing
    here decodes them)."""
    folder = f"{release}/{locale}"
    files = {f"{folder}/clips/common_voice_{LOCALE}_{i}.mp3": f"mp3 {i}".encode() for i in CLIPS}
    files.update({f"{folder}/{split}.tsv": tsv(CV_COLUMNS, [clip_row(i) for i in ids])
                  for split, ids in SPLITS.items()})
    for split in ("invalidated", "other"):
        files[f"{folder}/{split}.tsv"] = tsv(CV_COLUMNS, [])
    files[f"{folder}/reported.tsv"] = tsv(["sentence_id", "sentence", "locale", "reason"], [])
    files[f"{folder}/clip_durations.tsv"] = tsv(
        ["clip", "duration[ms]"], [[f"common_voice_{LOCALE}_{i}.mp3", str(ms)] for i, ms in CLIPS.items()])
    files[f"{folder}/validated_sentences.tsv"] = tsv(
        ["sentence_id", "sentence", "sentence_domain", "source", "is_used", "clips_count"],
        [["s1", "բառ a", "", "wiki", "1", "1"]])
    files[f"{folder}/unvalidated_sentences.tsv"] = tsv(["sentence_id", "sentence", "sentence_domain", "source"], [])
    files[f"{folder}/README.md"] = b"# Common Voice datasheet\n"
    return files


def tarball(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buffer.getvalue()


def details(dataset_id: str, name: str, locale: str, archive: bytes, filename: str) -> dict:
    return {"id": dataset_id, "name": name, "locale": locale, "task": "ASR", "filename": filename,
            "sizeBytes": len(archive), "checksum": hashlib.sha256(archive).hexdigest(),
            "datasetUrl": f"https://mozilladatacollective.com/datasets/{dataset_id}"}


class CutStream(io.BytesIO):
    """A download body whose connection drops after `cut` bytes."""

    def __init__(self, content: bytes, cut: int | None):
        super().__init__(content)
        self.cut = cut

    def read(self, size=-1):
        if self.cut is None:
            return super().read(size)
        if self.tell() >= self.cut:
            raise requests.ConnectionError("connection reset by peer")
        return super().read(min(size if size >= 0 else self.cut, self.cut - self.tell()))


@dataclass
class FakeMDC:
    """The MDC endpoints the SDK calls, as its source (datacollective 0.7.0) shapes them."""

    archive: bytes
    datasets: dict[str, dict] = field(default_factory=dict)
    served: dict[str, bytes] = field(default_factory=dict)  # dataset id -> the bytes its URL serves
    cut_at: int | None = None  # drop the next download after this many bytes
    calls: list[tuple[str, str, dict]] = field(default_factory=list)

    def __post_init__(self):
        self.add(DATASET_ID, "Common Voice Scripted Speech 25.0 - Armenian", LOCALE, self.archive,
                 f"{RELEASE}-{LOCALE}.tar.gz")
        # Decoys a search by locale and version must pass over.
        other = tarball({})
        self.add("cmg-hy-am-24", "Common Voice Scripted Speech 24.0 - Armenian", LOCALE, other, "x.tar.gz")
        self.add("cmg-hy-am-25-delta", "Common Voice Scripted Speech 25.0 - Armenian", LOCALE, other,
                 "cv-corpus-25.0-delta-2026-03-09-hy-AM.tar.gz")
        self.add("cmg-hy-am-sps", "Common Voice Spontaneous Speech 3.0 - Armenian", LOCALE, other, "y.tar.gz")
        self.add("cmg-ka-25", "Common Voice Scripted Speech 25.0 - Georgian", "ka", other, "z.tar.gz")

    def add(self, dataset_id: str, name: str, locale: str, archive: bytes, filename: str) -> None:
        self.datasets[dataset_id] = details(dataset_id, name, locale, archive, filename)
        self.served[dataset_id] = archive

    def request(self, method, url, stream=False, headers=None, timeout=None, json=None, params=None):
        headers = headers or {}
        self.calls.append((method, url, dict(headers)))
        if method == "GET" and url == f"{API}/datasets":
            locales = [locale.casefold() for locale in params.get("locale") or []]
            items = [d for d in self.datasets.values() if not locales or d["locale"].casefold() in locales]
            return respond({"items": items, "total": len(items)})
        if method == "GET" and url.startswith(f"{API}/datasets/"):
            found = self.datasets.get(url.rsplit("/", 1)[1])
            return respond(found or {"message": "not found"}, 200 if found else 404)
        if method == "POST" and url.startswith(f"{API}/datasets/") and url.endswith("/download"):
            assert headers.get("Authorization") == "Bearer test-key", headers
            dataset_id = url.split("/")[-2]
            listed = self.datasets[dataset_id]
            return respond({"downloadUrl": f"{STORAGE}/{dataset_id}",
                            "sizeBytes": listed["sizeBytes"] or len(self.served[dataset_id]),
                            "checksum": listed["checksum"]})
        if method == "GET" and url.startswith(f"{STORAGE}/"):
            assert stream and "Authorization" not in headers, "the presigned URL takes no key"
            content = self.served[url.rsplit("/", 1)[1]]
            start = int(headers["Range"].removeprefix("bytes=").rstrip("-")) if "Range" in headers else 0
            body = content[start:]
            cut, self.cut_at = self.cut_at, None
            response = requests.Response()
            response.status_code = 206 if start else 200
            response.raw = CutStream(body, cut)
            return response
        raise AssertionError(f"a request the fake MDC does not serve: {method} {url}")


def respond(body: dict, status: int = 200) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    return response


@pytest.fixture
def mdc(monkeypatch, tmp_path) -> FakeMDC:
    fake = FakeMDC(tarball(release_files()))
    monkeypatch.setattr(requests, "request", fake.request)
    monkeypatch.setenv("MDC_API_KEY", "test-key")
    monkeypatch.delenv("MDC_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # the SDK loads a .env from the working folder upwards
    return fake


def fetch(tmp_path, *options: str, quiet: bool = True) -> list[str]:
    return ["data", "common-voice", LOCALE, "--version", "25", "--output-dir", str(tmp_path / "data"),
            *(["--quiet"] if quiet else []), *options]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_a_release_is_found_downloaded_checked_and_unpacked_where_the_loader_reads_it(mdc, tmp_path, capsys):
    assert main(fetch(tmp_path, quiet=False)) == 0  # with the progress bars
    out = capsys.readouterr().out
    release = tmp_path / "data" / RELEASE
    assert f"found Common Voice Scripted Speech 25.0 - Armenian ({DATASET_ID})" in out
    assert "size and SHA-256 match" in out
    assert f"--dataset {release} --config {LOCALE}" in out
    assert f"--dataset_name {release} --dataset_config_name {LOCALE}" in out
    assert sorted(p.name for p in (release / LOCALE).iterdir()) == sorted(
        [Path(name).name for name in release_files() if name.count("/") == 2] + ["clips"])
    # Only the release folder is left: no archive (deleted once unpacked), no part file, no staging folder.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [RELEASE]
    train = load_speech_dataset(str(release), LOCALE, "train", with_durations=True)
    assert list(train["duration"]) == [1.8, 2.4]
    downloads = [url for method, url, _ in mdc.calls if method == "POST"]
    assert downloads == [f"{API}/datasets/{DATASET_ID}/download"], "the decoys are passed over"


def test_an_unpacked_release_is_skipped_offline_and_without_a_key(mdc, tmp_path, capsys, monkeypatch):
    assert main(fetch(tmp_path, "--keep-archive")) == 0
    assert (tmp_path / "data" / f"{RELEASE}-{LOCALE}.tar.gz").is_file()
    capsys.readouterr()
    monkeypatch.delenv("MDC_API_KEY")
    monkeypatch.setattr(requests, "request", lambda *a, **k: pytest.fail("a rerun reached the network"))
    assert main(fetch(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"skipped: {tmp_path / 'data' / RELEASE / LOCALE} is already unpacked\n")
    assert f"--dataset {tmp_path / 'data' / RELEASE} --config {LOCALE}" in out


def test_without_a_key_one_line_says_where_to_make_one(mdc, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MDC_API_KEY")
    assert main(fetch(tmp_path)) == 2
    err = error_line(capsys)
    assert "no MDC API key" in err and "https://mozilladatacollective.com/api-reference" in err
    assert "export MDC_API_KEY=" in err
    assert mdc.calls == []


def test_without_a_network_one_line_says_so(mdc, tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise requests.ConnectionError("Failed to resolve 'mozilladatacollective.com'\n(name resolution)")

    monkeypatch.setattr(requests, "request", offline)
    assert main(fetch(tmp_path)) == 2
    err = error_line(capsys)
    assert err.startswith("ctcforge: error: cannot reach the Mozilla Data Collective (Failed to resolve")
    assert "check the network" in err and "api-reference" in err


def test_an_interrupted_download_resumes_where_it_stopped(mdc, tmp_path, capsys):
    half = len(mdc.archive) // 2
    mdc.cut_at = half
    assert main(fetch(tmp_path)) == 2
    assert "rerun the same command to resume it" in error_line(capsys)
    part = tmp_path / "data" / f"{RELEASE}-{LOCALE}.tar.gz.part"
    assert part.stat().st_size == half
    assert not (tmp_path / "data" / RELEASE).exists()
    assert main(fetch(tmp_path)) == 0
    ranges = [headers.get("Range") for method, url, headers in mdc.calls if url.startswith(STORAGE)]
    assert ranges == [None, f"bytes={half}-"]
    assert (tmp_path / "data" / RELEASE / LOCALE / "train.tsv").is_file()


def test_a_download_whose_digest_differs_from_mdcs_is_not_unpacked(mdc, tmp_path, capsys):
    """Another archive, whole and of the size MDC lists, that only the digest tells apart."""
    files = release_files()
    files[f"{RELEASE}/{LOCALE}/train.tsv"] = files[f"{RELEASE}/{LOCALE}/test.tsv"]
    damaged = tarball(files)
    mdc.served[DATASET_ID] = damaged
    mdc.datasets[DATASET_ID]["sizeBytes"] = len(damaged)
    assert main(fetch(tmp_path)) == 2
    err = error_line(capsys)
    assert f"has SHA-256 {hashlib.sha256(damaged).hexdigest()}, MDC lists {mdc.datasets[DATASET_ID]['checksum']}" in err
    assert not (tmp_path / "data" / RELEASE).exists()


def test_a_download_of_the_wrong_size_is_deleted_so_that_a_rerun_downloads_again(mdc, tmp_path, capsys):
    mdc.served[DATASET_ID] = mdc.archive[:-10]
    assert main(fetch(tmp_path)) == 2
    assert f"is {len(mdc.archive) - 10} bytes, MDC lists {len(mdc.archive)}; deleted it" in error_line(capsys)
    assert not (tmp_path / "data" / f"{RELEASE}-{LOCALE}.tar.gz").exists()
    mdc.served[DATASET_ID] = mdc.archive
    assert main(fetch(tmp_path)) == 0


def escaping(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, 0 if target else 4
    return info


@pytest.mark.parametrize("member, message", [
    (escaping(f"{RELEASE}/{LOCALE}/../../escaped.txt"), "climbs out of its folder"),
    (escaping("../escaped.txt"), "outside a cv-corpus-25.0-DATE/ folder"),
    (escaping("/tmp/escaped.txt"), "outside a cv-corpus-25.0-DATE/ folder"),
    (escaping(f"{RELEASE}/{LOCALE}/clips/link.mp3", tarfile.SYMTYPE, "/etc/passwd"),
     "a link, where a Common Voice release holds only folders and files; refusing to unpack it"),
    (escaping(f"{RELEASE}/{LOCALE}/clips/hard.mp3", tarfile.LNKTYPE, "../../../../etc/passwd"), "a link, where"),
    (escaping(f"{RELEASE}/{LOCALE}/clips/pipe.mp3", tarfile.FIFOTYPE), "a device or pipe, where"),
    (escaping(f"{RELEASE}/ka/train.tsv"), f"outside {RELEASE}/{LOCALE}/: not the release of {LOCALE}"),
    (escaping("cv-corpus-24.0-2025-12-05/hy-AM/train.tsv"), "not a Common Voice 25.0 release"),
], ids=["dot-dot", "above", "absolute", "symlink-out", "hardlink-out", "fifo", "other-locale", "other-release"])
def test_an_archive_member_outside_the_locale_folder_stops_the_unpack(mdc, tmp_path, capsys, member, message):
    unsafe = tarball(release_files(), extra=[member])
    mdc.add(DATASET_ID, "Common Voice Scripted Speech 25.0 - Armenian", LOCALE, unsafe, f"{RELEASE}-{LOCALE}.tar.gz")
    assert main(fetch(tmp_path)) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "data" / RELEASE).exists(), "nothing half-unpacked is left where a rerun would skip"
    assert [p.name for p in (tmp_path / "data").iterdir()] == [f"{RELEASE}-{LOCALE}.tar.gz"], "no staging folder left"
    assert not list(tmp_path.rglob("escaped.txt")) and not Path("/tmp/escaped.txt").exists()


@pytest.mark.parametrize("kept", [2 / 3, -8], ids=["cut-in-a-member", "cut-in-the-gzip-trailer"])
def test_a_damaged_archive_that_mdc_gives_no_size_or_checksum_for_is_refused_whole(mdc, tmp_path, capsys, kept):
    """Without MDC's size and digest, gzip's own trailer still tells a cut archive: one cut
    after the last tar block would otherwise unpack as if whole."""
    end = int(len(mdc.archive) * kept) if kept > 0 else len(mdc.archive) + kept
    mdc.served[DATASET_ID] = mdc.archive[:end]
    mdc.datasets[DATASET_ID].update(sizeBytes=None, checksum=None)
    assert main(fetch(tmp_path)) == 2
    out, err = capsys.readouterr()
    assert "checked cv-corpus-25.0-2026-03-09-hy-AM.tar.gz: size only (MDC lists no checksum)" in out
    assert "cannot be unpacked" in err and "delete it and rerun to download it again" in err
    assert not (tmp_path / "data" / RELEASE).exists()


def test_a_staging_folder_left_by_a_killed_run_is_replaced(mdc, tmp_path):
    leftover = tmp_path / "data" / ".unpacking-25.0-hy-AM" / RELEASE / LOCALE
    leftover.mkdir(parents=True)
    (leftover / "train.tsv").write_text("half\n")
    assert main(fetch(tmp_path)) == 0
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [RELEASE]
    assert (tmp_path / "data" / RELEASE / LOCALE / "train.tsv").read_bytes() == release_files()[
        f"{RELEASE}/{LOCALE}/train.tsv"]


def test_a_delta_release_is_refused_before_its_download(mdc, tmp_path, capsys):
    assert main(fetch(tmp_path, "--dataset-id", "cmg-hy-am-25-delta")) == 2
    assert "a delta release, which holds no train/dev/test splits" in error_line(capsys)
    assert not [url for method, url, _ in mdc.calls if method == "POST"]


def test_a_dataset_id_of_another_locale_is_refused_before_its_download(mdc, tmp_path, capsys):
    assert main(fetch(tmp_path, "--dataset-id", "cmg-ka-25")) == 2
    assert "of locale ka, not hy-AM" in error_line(capsys)


def test_a_dataset_id_is_downloaded_without_a_search(mdc, tmp_path, capsys):
    assert main(fetch(tmp_path, "--dataset-id", DATASET_ID)) == 0
    assert not [url for method, url, _ in mdc.calls if url == f"{API}/datasets"]


def test_a_version_mdc_lacks_lists_the_versions_it_has(mdc, tmp_path, capsys):
    assert main(["data", "common-voice", LOCALE, "--version", "99", "--output-dir", str(tmp_path), "--quiet"]) == 2
    assert "MDC has no Common Voice Scripted Speech 99.0 for hy-AM; its versions for hy-AM: 24.0, 25.0" in (
        error_line(capsys))


def test_a_locale_mdc_lacks_says_how_to_find_the_code(mdc, tmp_path, capsys):
    assert main(["data", "common-voice", "xx", "--version", "25", "--output-dir", str(tmp_path), "--quiet"]) == 2
    assert "MDC lists no Common Voice Scripted Speech dataset for locale 'xx'" in error_line(capsys)


def test_two_matching_datasets_ask_for_a_dataset_id(mdc, tmp_path, capsys):
    mdc.add("cmg-hy-am-25-again", "Common Voice Scripted Speech 25.0 - Armenian (re-upload)", LOCALE, mdc.archive,
            "again.tar.gz")
    assert main(fetch(tmp_path)) == 2
    err = error_line(capsys)
    assert f"({DATASET_ID}); " in err and "(cmg-hy-am-25-again)" in err and "choose one with --dataset-id" in err


def test_a_key_mdc_refuses_is_one_line(mdc, tmp_path, capsys, monkeypatch):
    real = mdc.request

    def refusing(method, url, **kwargs):
        return respond({"message": "invalid key"}, 401) if method == "POST" else real(method, url, **kwargs)

    monkeypatch.setattr(requests, "request", refusing)
    assert main(fetch(tmp_path)) == 2
    assert "MDC refused the key in MDC_API_KEY" in error_line(capsys)


def test_a_version_that_is_no_number_is_refused(mdc, tmp_path, capsys):
    assert main(["data", "common-voice", LOCALE, "--version", "latest", "--output-dir", str(tmp_path)]) == 2
    assert "--version 'latest' is no Common Voice release number" in error_line(capsys)


def test_a_dataset_id_of_another_release_is_refused_before_its_download(mdc, tmp_path, capsys):
    assert main(fetch(tmp_path, "--dataset-id", "cmg-hy-am-24")) == 2
    assert "is Common Voice Scripted Speech 24.0 - Armenian, not release 25.0; give the id of release 25.0, or " \
           "--version 24.0" in error_line(capsys)
    assert not [url for method, url, _ in mdc.calls if method == "POST"]


@pytest.mark.parametrize("locale", ["../hy-AM", "hy-AM/../../x", "", "hy AM"])
def test_a_locale_that_is_no_locale_code_is_refused_before_any_request(mdc, tmp_path, capsys, locale):
    assert main(["data", "common-voice", locale, "--version", "25", "--output-dir", str(tmp_path)]) == 2
    assert "is no Common Voice locale code" in error_line(capsys)
    assert mdc.calls == []


def test_a_locale_in_other_case_is_the_same_locale(mdc, tmp_path, capsys):
    command = ["data", "common-voice", "hy-am", "--version", "25.0", "--output-dir", str(tmp_path / "data"), "--quiet"]
    assert main(command) == 0
    assert (tmp_path / "data" / RELEASE / LOCALE / "train.tsv").is_file()
    capsys.readouterr()
    assert main(command) == 0
    assert capsys.readouterr().out.startswith(f"skipped: {tmp_path / 'data' / RELEASE / LOCALE} is already unpacked")


def test_terms_not_agreed_to_name_the_datasets_page(mdc, tmp_path, capsys, monkeypatch):
    real = mdc.request

    def forbidding(method, url, **kwargs):
        if method == "POST":
            return respond({"message": "Terms and conditions not accepted"}, 403)
        return real(method, url, **kwargs)

    monkeypatch.setattr(requests, "request", forbidding)
    assert main(fetch(tmp_path)) == 2
    err = error_line(capsys)
    assert "MDC denied access (" in err and "Terms and conditions not accepted" in err
    assert f"agree to the dataset's terms on its MDC page ({mdc.datasets[DATASET_ID]['datasetUrl']})" in err
