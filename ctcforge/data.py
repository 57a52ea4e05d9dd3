"""Fetch one locale of a Common Voice release from the Mozilla Data Collective (MDC) and
unpack it where `load_speech_dataset` reads it: `ctcforge data common-voice`.

Common Voice left the Hugging Face Hub in 2025; each release of each locale is now one MDC
dataset. Common Voice's own uploader (common-voice/common-voice, bundler/uploader) names
them "Common Voice Scripted Speech 25.0 - English", with the locale code in the dataset's
`locale` field, and uploads the bundler's `cv-corpus-25.0-2026-03-09-en.tar.gz`, which
unpacks to `cv-corpus-25.0-2026-03-09/en/`. The steps:

1. a locale already unpacked under the output folder is skipped (offline, without a key);
2. the release is found in MDC's public catalogue (`datacollective.list_datasets`), or
   named by its MDC id;
3. the archive is downloaded by the SDK's own `download_dataset`, which shows progress and
   resumes a `.part` file left by an interrupted run;
4. its size is checked against MDC's `sizeBytes` and, while it is unpacked, its SHA-256
   against MDC's `checksum` (the digest the SDK's uploader computes and registers for
   every upload);
5. it is unpacked in one pass into a temporary folder beside its destination, member by
   member refused if it would land outside `cv-corpus-V-DATE/LOCALE/`, and the locale folder
   is then renamed into place, so a half-unpacked release never looks like a finished one.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from ctcforge.runtime.errors import CtcforgeError

MDC_SITE = "https://mozilladatacollective.com"
# Where MDC's API keys are made (the SDK's own error messages point there too).
MDC_KEY_PAGE = f"{MDC_SITE}/api-reference"
# Common Voice's organisation page on MDC (linked from common-voice/cv-dataset's README).
COMMON_VOICE_ON_MDC = f"{MDC_SITE}/organization/cmfh0j9o10006ns07jq45h7xk"
KEY_VARIABLE = "MDC_API_KEY"
DATASET_PREFIX = "Common Voice Scripted Speech"
PAGE_SIZE = 100  # the most list_datasets gives per page
SPLIT_FILES = ("train.tsv", "dev.tsv", "test.tsv")
HASH_CHUNK = 1 << 20
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
# Common Voice locales: a language code and subtags (hy-AM, yue, nan-tw, cy-southwes).
LOCALE_CODE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")


@dataclass(frozen=True)
class Release:
    """One locale of one Common Voice release as MDC lists it."""

    dataset_id: str
    name: str
    locale: str
    filename: str | None
    size_bytes: int | None
    checksum: str | None
    url: str | None


def fetch_common_voice(locale: str, version: str, output_dir: Path, *, dataset_id: str | None = None,
                       keep_archive: bool = False, progress: bool = True) -> Path:
    """The folder `output_dir/cv-corpus-VERSION-DATE/LOCALE`, downloaded from MDC and
    unpacked unless it is there already. Prints one line per step and the options that
    read it; raises CtcforgeError, in one line, for everything the user has to fix."""
    version = release_version(version)
    if not LOCALE_CODE.fullmatch(locale):
        # The locale becomes a folder name: nothing path-like may pass.
        raise CtcforgeError(f"{locale!r} is no Common Voice locale code; give one such as hy-AM, zh-HK or as")
    output_dir = output_dir.expanduser().resolve()
    done = unpacked_locale(output_dir, version, locale)
    if done is not None:
        print(f"skipped: {done} is already unpacked")
        print_usage(done)
        return done
    mdc = import_sdk()
    require_key()
    with mdc_errors():
        release = describe(mdc, dataset_id, locale, version) if dataset_id else find_release(mdc, locale, version)
    print(f"found {release.name} ({release.dataset_id}), {human_size(release.size_bytes)}")
    # The archive's locale folder is spelt as MDC spells the locale.
    locale = release.locale if release.locale.casefold() == locale.casefold() else locale
    output_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(output_dir, os.W_OK):
        raise CtcforgeError(f"{output_dir} is not writable; choose another --output-dir")
    with mdc_errors(release.url):
        archive = Path(mdc.download_dataset(release.dataset_id, download_directory=str(output_dir),
                                            show_progress=progress))
    folder = unpack_release(archive, output_dir, locale, version, progress=progress,
                            sha256=expected_digest(archive, release))
    if keep_archive:
        print(f"kept {archive}")
    else:
        # A large locale's archive is as big as the release itself; once unpacked it is
        # only a second copy (a rerun finds the locale folder and skips).
        archive.unlink()
    print(f"unpacked {folder}")
    print_usage(folder)
    return folder


def release_version(version: str) -> str:
    """MDC and the release folders write versions as MAJOR.MINOR: "25" is "25.0"."""
    if not re.fullmatch(r"\d+(\.\d+)?", version.strip()):
        raise CtcforgeError(f"--version {version!r} is no Common Voice release number; give one such as 25.0 or 16.1")
    return version.strip() if "." in version else f"{version.strip()}.0"


def release_folder_pattern(version: str) -> re.Pattern:
    """A full (not delta) release folder of `version`: cv-corpus-25.0-2026-03-09."""
    return re.compile(rf"cv-corpus-{re.escape(version)}-\d{{4}}-\d{{2}}-\d{{2}}")


def unpacked_locale(output_dir: Path, version: str, locale: str) -> Path | None:
    """The locale folder of a release of `version` already under `output_dir`. Only a
    finished unpack puts a locale folder there (it is renamed into place last)."""
    if not output_dir.is_dir():
        return None
    pattern = release_folder_pattern(version)
    # Case-blind, as MDC's locale filter is: a rerun with "hy-am" finds "hy-AM".
    found = sorted(folder for release in output_dir.iterdir() if pattern.fullmatch(release.name) and release.is_dir()
                   for folder in release.iterdir() if folder.name.casefold() == locale.casefold() and folder.is_dir())
    return found[-1] if found else None


def print_usage(folder: Path) -> None:
    release, locale = folder.parent, folder.name
    print(f"use: --dataset {release} --config {locale}  (ctcforge new, ctcforge lm, eval.py)")
    print(f"     --dataset_name {release} --dataset_config_name {locale}  (run_speech_recognition_ctc.py)")


def import_sdk():
    try:
        import datacollective
    except ImportError:
        raise CtcforgeError("the datacollective package (MDC's client) is not installed; run ./setup.sh, "
                            "or pip install -r requirements-tool.txt") from None
    return datacollective


def require_key() -> None:
    # Read after the SDK is imported: it loads a .env file from the working folder upwards.
    if not os.environ.get(KEY_VARIABLE, "").strip():
        raise CtcforgeError(f"no MDC API key: Common Voice is downloaded from the Mozilla Data Collective, which "
                            f"needs one; create it at {MDC_KEY_PAGE} (log in, API keys), agree to the dataset's "
                            f"terms on its page, then export {KEY_VARIABLE}=... (or put it in .env) and rerun")


@contextlib.contextmanager
def mdc_errors(page: str | None = None) -> Iterator[None]:
    """The SDK's and requests' exceptions as one line each, naming the fix; `page` is the
    MDC page of the dataset at hand, where its terms are agreed to."""
    import requests
    from datacollective.errors import AuthenticationError, DownloadError, RateLimitError

    try:
        yield
    except DownloadError as error:
        cause = one_line(error.__cause__) if error.__cause__ else "interrupted"
        raise CtcforgeError(f"the download stopped after {error.total_downloaded_bytes} of "
                            f"{error.total_archive_bytes} ({cause}); rerun the same command to resume it") from None
    except (requests.ConnectionError, requests.Timeout) as error:
        raise CtcforgeError(f"cannot reach the Mozilla Data Collective ({one_line(error)}); check the network "
                            f"(or HTTPS_PROXY) and rerun; API keys are made at {MDC_KEY_PAGE}") from None
    except AuthenticationError:
        raise CtcforgeError(f"MDC refused the key in {KEY_VARIABLE} (invalid, expired or revoked); create a new "
                            f"one at {MDC_KEY_PAGE} and rerun") from None
    except RateLimitError:
        raise CtcforgeError("MDC's rate limit was reached; wait a few minutes and rerun") from None
    except PermissionError as error:
        where = f" ({page})" if page else ""
        raise CtcforgeError(f"MDC denied access ({one_line(error)}); agree to the dataset's terms on its MDC "
                            f"page{where} with the account of your key, then rerun") from None
    except FileNotFoundError as error:
        raise CtcforgeError(f"MDC has no such dataset ({one_line(error)}); check --dataset-id, or leave it out "
                            "to search by locale and version") from None
    except requests.HTTPError as error:
        raise CtcforgeError(f"MDC answered {one_line(error)}; rerun later, or report it if it persists") from None
    except RuntimeError as error:
        # The SDK raises RuntimeError for answers it cannot use (no download URL, no size).
        raise CtcforgeError(f"MDC's answer could not be used ({one_line(error)}); rerun later, or report it if "
                            "it persists") from None


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def describe(mdc, dataset_id: str, locale: str, version: str) -> Release:
    """The dataset named by --dataset-id, refused before its download when MDC already
    says it is not a full release of `locale`."""
    release = to_release(mdc.get_dataset_details(dataset_id))
    if release.locale and release.locale.casefold() != locale.casefold():
        raise CtcforgeError(f"--dataset-id {dataset_id} is {release.name}, of locale {release.locale}, not {locale}; "
                            "give the id of the locale's release, or leave --dataset-id out to search")
    if is_delta(release):
        raise CtcforgeError(f"--dataset-id {dataset_id} is {release.name}, a delta release, which holds no "
                            "train/dev/test splits; give the id of the full release")
    named = listed_version(release)
    if named and named != version:
        raise CtcforgeError(f"--dataset-id {dataset_id} is {release.name}, not release {version}; give the id of "
                            f"release {version}, or --version {named}")
    return release


def to_release(details) -> Release:
    size = details.sizeBytes
    return Release(dataset_id=details.id, name=details.name or details.id, locale=details.locale or "",
                   filename=details.filename, size_bytes=int(size) if size else None,
                   checksum=details.checksum or None, url=details.datasetUrl)


def find_release(mdc, locale: str, version: str) -> Release:
    """The one full Scripted Speech release of `version` for `locale` in MDC's catalogue."""
    listed = [release for release in list_locale(mdc, locale) if not is_delta(release)]
    matches = [release for release in listed if listed_version(release) == version]
    if len(matches) == 1:
        return matches[0]
    if matches:
        found = "; ".join(f"{release.name} ({release.dataset_id})" for release in matches)
        raise CtcforgeError(f"MDC lists {len(matches)} {DATASET_PREFIX} {version} datasets for {locale}: {found}; "
                            "choose one with --dataset-id ID")
    versions = sorted({listed_version(release) for release in listed} - {None},
                      key=lambda v: tuple(int(part) for part in v.split(".")))
    if versions:
        raise CtcforgeError(f"MDC has no {DATASET_PREFIX} {version} for {locale}; its versions for {locale}: "
                            f"{', '.join(versions)}")
    raise CtcforgeError(f"MDC lists no {DATASET_PREFIX} dataset for locale {locale!r}; check the Common Voice "
                        f"locale code (hy-AM, zh-HK, as) at {COMMON_VOICE_ON_MDC}, or give --dataset-id ID from "
                        "the dataset's MDC page")


def list_locale(mdc, locale: str) -> list[Release]:
    """Every dataset MDC lists for `locale` under the Common Voice Scripted Speech name,
    page by page (a locale has a few dozen: every release, full and delta)."""
    releases: list[Release] = []
    page = 1
    while True:
        listing = mdc.list_datasets(query=DATASET_PREFIX, locale=locale, results_per_page=PAGE_SIZE,
                                    page_number=page)
        releases += [to_release(item) for item in listing.items
                     if (item.locale or "").casefold() == locale.casefold()
                     and (item.name or "").startswith(DATASET_PREFIX)]
        if not listing.items or page * PAGE_SIZE >= listing.total:
            return releases
        page += 1


def listed_version(release: Release) -> str | None:
    """The release number in MDC's name for it ("Common Voice Scripted Speech 25.0 - Armenian")."""
    match = re.match(rf"{re.escape(DATASET_PREFIX)} (\d+\.\d+) - ", release.name)
    return match[1] if match else None


def is_delta(release: Release) -> bool:
    """Delta releases hold only the clips added since the last release, and no splits."""
    return any("delta" in (text or "").casefold() for text in (release.name, release.filename))


def human_size(size: int | None) -> str:
    if size is None:
        return "size not given"
    if size < 1000:
        return f"{size} B"
    exponent = min(len(str(size)) - 1, 12) // 3
    return f"{size / 1000 ** exponent:.1f} {('KB', 'MB', 'GB', 'TB')[exponent - 1]}"


def expected_digest(archive: Path, release: Release) -> str | None:
    """The SHA-256 the archive must have, after its size is checked against MDC's. A file
    of the wrong size is deleted: the SDK would otherwise take it as downloaded on the next
    run. None (said so) when MDC lists no SHA-256: the size is then all that is checked."""
    size = archive.stat().st_size
    if release.size_bytes is not None and size != release.size_bytes:
        archive.unlink()
        raise CtcforgeError(f"{archive.name} is {size} bytes, MDC lists {release.size_bytes}; deleted it, rerun "
                            "to download it again")
    if release.checksum is None:
        print(f"checked {archive.name}: size only (MDC lists no checksum)")
        return None
    if not SHA256_HEX.match(release.checksum):
        print(f"checked {archive.name}: size only (MDC's checksum {release.checksum!r} is no SHA-256 digest)")
        return None
    return release.checksum.lower()


class HashingReader:
    """A binary file whose every byte read also goes into a SHA-256: the archive is
    checked in the same pass that unpacks it, not in a pass of its own."""

    def __init__(self, file):
        self.file = file
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.digest.update(data)
        return data


def unpack_release(archive: Path, output_dir: Path, locale: str, version: str, *, progress: bool,
                   sha256: str | None = None) -> Path:
    """Unpacks `archive` to `output_dir/cv-corpus-VERSION-DATE/LOCALE` and returns that folder.

    The archive is read once, as a stream (a large locale is hundreds of GB, too big to
    scan twice), and hashed as it is read: with `sha256` given, an archive of another
    digest leaves nothing behind. Each member is checked before anything of it is written: it must lie
    inside `cv-corpus-VERSION-DATE/LOCALE/` and be a folder or a plain file, which is all a
    release holds; a link, a device or a `..` stops the unpack. This is done here rather
    than by tarfile's "data" filter, which Debian 12's Python 3.11.2 lacks. Everything goes
    into a temporary folder in `output_dir`; only a complete locale folder is renamed into
    the release folder.
    """
    from tqdm.auto import tqdm

    # Named after what it unpacks, so that one left behind by a killed run is found and
    # replaced here, while runs for other locales into the same folder are left alone.
    staging = output_dir / f".unpacking-{version}-{locale}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with open(archive, "rb") as raw, tqdm(total=archive.stat().st_size, desc="unpacking", unit="B",
                                              unit_scale=True, disable=not progress) as bar:
            try:
                # A tar stream ends where its reader stops asking: a gzip archive cut short
                # at a member's end would pass. Reading it through GzipFile to its very end
                # checks gzip's own length and CRC trailer instead.
                is_gzip = raw.read(2) == b"\x1f\x8b"
                raw.seek(0)
                hashing = HashingReader(raw)
                stream = gzip.GzipFile(fileobj=hashing, mode="rb") if is_gzip else hashing
                with tarfile.open(fileobj=stream, mode="r|" if is_gzip else "r|*") as tar:
                    top = None
                    for member in tar:
                        top = check_member(member, top, locale, version, archive)
                        write_member(tar, member, staging)
                        bar.update(raw.tell() - bar.n)
                while stream.read(HASH_CHUNK):
                    pass  # to the end: gzip's trailer, and every byte into the digest
                bar.update(raw.tell() - bar.n)
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
                raise CtcforgeError(f"{archive} cannot be unpacked ({one_line(error)}); delete it and rerun to "
                                    "download it again") from None
            except OSError as error:
                raise CtcforgeError(f"cannot write the release into {output_dir} ({one_line(error)}); free some "
                                    "space or choose another --output-dir, then rerun") from None
        if sha256 is not None and hashing.digest.hexdigest() != sha256:
            raise CtcforgeError(f"{archive} has SHA-256 {hashing.digest.hexdigest()}, MDC lists {sha256}: the "
                                "download is damaged; delete it and rerun")
        if sha256 is not None:
            print(f"checked {archive.name}: size and SHA-256 match MDC's")
        if top is None:
            raise CtcforgeError(f"{archive} is an empty archive; delete it and rerun to download it again")
        unpacked = staging / top / locale
        missing = [name for name in ("clips",) + SPLIT_FILES if not (unpacked / name).exists()]
        if missing:
            raise CtcforgeError(f"{archive.name} holds {top}/{locale} without {', '.join(missing)}: not a full "
                                "Common Voice release; check the dataset on MDC")
        target = output_dir / top / locale
        target.parent.mkdir(exist_ok=True)
        # The rename is what makes the locale appear, whole: a rerun skips it from then on.
        os.rename(unpacked, target)
        for entry in (staging / top).iterdir():
            # Whatever the release holds beside the locale folder, kept unless already there.
            if not (target.parent / entry.name).exists():
                os.rename(entry, target.parent / entry.name)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, staging: Path) -> None:
    """One checked member under `staging`, with this user's ownership and default modes
    (an archive's owners and permission bits are not carried over)."""
    path = staging / member.name
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tar.extractfile(member) as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target, HASH_CHUNK)


def check_member(member: tarfile.TarInfo, top: str | None, locale: str, version: str, archive: Path) -> str:
    """The release folder `member` lies in; refuses a member outside `cv-corpus-V-DATE/LOCALE/`
    (an absolute path or `..` among them) and anything but a folder or a plain file."""
    name = member.name
    parts = PurePosixPath(name).parts
    release = parts[0] if parts else ""
    if "-delta-" in release:
        raise CtcforgeError(f"{archive.name} is a delta release ({release}), which holds only the clips added since "
                            "the last release and no train/dev/test splits; fetch the full release")
    if not release_folder_pattern(version).fullmatch(release) or (top is not None and release != top):
        raise CtcforgeError(f"{archive.name} holds {name!r}, outside a cv-corpus-{version}-DATE/ folder: not a Common "
                            f"Voice {version} release; refusing to unpack it")
    if len(parts) > 1 and parts[1] != locale:
        raise CtcforgeError(f"{archive.name} holds {name!r}, outside {release}/{locale}/: not the release of "
                            f"{locale}; refusing to unpack it")
    if ".." in parts:
        raise CtcforgeError(f"{archive.name} holds {name!r}, which climbs out of its folder; refusing to unpack it")
    if not (member.isdir() or member.isreg()):
        kind = "a link" if member.issym() or member.islnk() else "a device or pipe"
        raise CtcforgeError(f"{archive.name} holds {name!r}, {kind}, where a Common Voice release holds only folders "
                            "and files; refusing to unpack it")
    return release
