"""`ctcforge push`: only the allowlist goes, a token anywhere in it stops the push, the card is
checked first, and the upload is one commit. The Hub is never contacted: HfApi's create_repo and
create_commit are replaced by recorders, and any socket connection fails the test."""

import json
import shutil
import socket
from dataclasses import dataclass, field
from types import SimpleNamespace

import httpx2
import pytest
from conftest import write_training_run
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from ctcforge import push as hub
from ctcforge.cli import main
from ctcforge.push import files_to_upload, find_token, push
from ctcforge.runtime.errors import CtcforgeError

# Built at run time so this file holds no token pattern itself.
TOKEN = "hf_" + "Zq7Rk2Lm9X" * 3 + "Wp4T"  # the current form: hf_ and 34 letters and digits
ORG_TOKEN = "api_org_" + "Bv3Nc8Hs1J" * 3 + "Yt6G"  # the older organisation form
REPO_ID = "ctcforge-test/wav2vec2-tiny-hy-AM"

# What the salted repo adds on top of the stamped files, and which of it may go.
SALT = {
    ".env": f"HF_TOKEN={TOKEN}\n",  # a token where it belongs: never uploaded, so no refusal
    "token": TOKEN,
    "hub.token": TOKEN,
    ".huggingface/token": TOKEN,
    ".cache/huggingface/token": TOKEN,
    "optimizer.pt": b"\x80\x04pickle",
    "scheduler.pt": b"\x80\x04pickle",
    "rng_state.pth": b"\x80\x04pickle",
    "training_args.bin": b"\x80\x04pickle",
    "pytorch_model.bin": b"\x80\x04pickle",
    "checkpoint-100/optimizer.pt": b"\x80\x04pickle",
    "checkpoint-100/rng_state.pth": b"\x80\x04pickle",
    "checkpoint-100/training_args.bin": b"\x80\x04pickle",
    "checkpoint-100/model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
    "checkpoint-100/trainer_state.json": "{}",
    "__pycache__/eval.cpython-311.pyc": b"\x00",
    "tests/__pycache__/test_scripts.cpython-311.pyc": b"\x00",
    "runs/Nov22/events.out.tfevents.1": b"\x00",
    "wandb/run-1/files/config.yaml": "a: 1\n",
    "notes.txt": "scratch notes\n",
    "stray.png": b"\x89PNG unlinked",
    "language_model/lm.pkl": b"\x80\x04pickle",
    "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",  # holds no tensor, and loads
    "language_model/5gram.bin": b"kenlm binary",
    "language_model/lm.binary": b"kenlm binary, as ctcforge lm names it",
    "language_model/unigrams.txt": "բարեւ\n",
    "language_model/attrs.json": "{}",
    "alphabet.json": "{}",
    "trainer_state.json": "{}",
    "all_results.json": "{}",
    "eval/greedy/cv_hy-AM_test_eval_results.txt": "WER: 0.5\nCER: 0.2\n",
    "eval/greedy/cv_hy-AM_test_eval_summary.json": "{}",
    ".ctcforge-cache/dev_logits-abc.npz": b"PK cached logits",
    "train.log": "{'loss': 1.0}\n",
    "eval/lm/log_cv_hy-AM_test_predictions.txt": "բարեւ\n",
    "lm_tuning/best.json": "{}",
    "lm_tuning/wer_heatmap.png": b"\x89PNG heatmap",
    "training_curve.png": b"\x89PNG linked from the card",
    "onnx/model.onnx": b"\x08\x07onnx graph",
    "onnx/model.int8.onnx": b"\x08\x07onnx graph",
    "onnx/tokens.txt": "<blk> 0\n",
    "onnx/export.json": "{}",
    "onnx/features.npy": b"\x93NUMPY scratch",
}
SALT_UPLOADED = {
    "model.safetensors", "language_model/5gram.bin", "language_model/lm.binary", "language_model/unigrams.txt",
    "language_model/attrs.json", "alphabet.json", "trainer_state.json", "all_results.json",
    "eval/greedy/cv_hy-AM_test_eval_results.txt", "eval/greedy/cv_hy-AM_test_eval_summary.json",
    "eval/lm/log_cv_hy-AM_test_predictions.txt", "lm_tuning/best.json", "lm_tuning/wer_heatmap.png", "training_curve.png",
    "onnx/model.onnx", "onnx/model.int8.onnx", "onnx/tokens.txt", "onnx/export.json",
}
CHECKPOINT_UPLOADED = {"checkpoint-100/model.safetensors", "checkpoint-100/trainer_state.json"}
CARD_IMAGE_LINES = "\n![training curve](training_curve.png)\n![badge](https://img.shields.io/badge/x.svg)\n"


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


@pytest.fixture
def repo(stamped_repo, tmp_path):
    """A copy of conftest's `stamped_repo` (stamped once per module: stamping takes seconds), salted."""
    copy = shutil.copytree(stamped_repo, tmp_path / "repo", symlinks=True)
    for name, content in SALT.items():
        write(copy / name, content)
    with open(copy / "README.md", "a", encoding="utf-8") as card:
        card.write(CARD_IMAGE_LINES)
    return copy


@pytest.fixture
def stamped_files(stamped_repo):
    files = {p.relative_to(stamped_repo).as_posix() for p in stamped_repo.rglob("*") if p.is_file()}
    # The stamp itself must be uploadable whole; a new template file needs an allowlist decision.
    assert {"README.md", "eval.py", "run_speech_recognition_ctc.py", "ctcforge_runtime/text_normalizer.py",
            "vocab.json", "config.json", "tests/test_scripts.py", ".gitattributes"} <= files
    return files


@dataclass
class HubRecorder:
    repos: list = field(default_factory=list)
    commits: list = field(default_factory=list)
    repo_errors: list = field(default_factory=list)  # raised by the next create_repo calls
    commit_errors: list = field(default_factory=list)  # raised by the next create_commit calls

    @property
    def calls(self):
        return len(self.repos) + len(self.commits)

    def paths(self, commit=-1):
        return {op.path_in_repo for op in self.commits[commit]["operations"]}

    def sent(self, commit=-1):
        return [(op.path_in_repo, op.path_or_fileobj) for op in self.commits[commit]["operations"]]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("a test tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "test-token-not-a-real-one")


@pytest.fixture
def hub_calls(monkeypatch):
    """HfApi.create_repo/create_commit replaced on the class: what push would send, captured."""
    recorder = HubRecorder()

    def create_repo(self, repo_id, **kwargs):
        recorder.repos.append({"repo_id": repo_id, **kwargs})
        if recorder.repo_errors:
            raise recorder.repo_errors.pop(0)
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        recorder.commits.append({"repo_id": repo_id, "operations": list(operations), **kwargs})
        if recorder.commit_errors:
            raise recorder.commit_errors.pop(0)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return recorder


def http_error(status, message):
    request = httpx2.Request("POST", f"https://huggingface.co/api/models/{REPO_ID}/commit/main")
    return HfHubHTTPError(message, response=httpx2.Response(status, request=request))


def assert_one_line_without_token(message):
    assert "\n" not in message
    assert TOKEN not in message and ORG_TOKEN not in message


def refused_before_sending(hub_calls, match, repo, repo_id=REPO_ID, **options):
    """push() refuses with one line matching `match`, and the Hub was never called."""
    with pytest.raises(CtcforgeError, match=match) as refused:
        push(repo, repo_id, **options)
    assert hub_calls.calls == 0
    assert_one_line_without_token(str(refused.value))
    return str(refused.value)


# ---------------------------------------------------------------------------- what goes

def test_salted_repo_uploads_exactly_the_allowlist_in_one_commit(repo, stamped_files, hub_calls):
    push(repo, REPO_ID, private=True)
    assert hub_calls.repos == [{"repo_id": REPO_ID, "private": True, "exist_ok": True, "repo_type": "model"}]
    assert len(hub_calls.commits) == 1
    assert hub_calls.paths() == stamped_files | SALT_UPLOADED
    assert all(path == str(repo / name) for name, path in hub_calls.sent())
    assert hub_calls.commits[0]["repo_type"] == "model"


def test_include_checkpoints_adds_their_weights_and_state_but_never_optimizer(repo, stamped_files, hub_calls):
    push(repo, REPO_ID, include_checkpoints=True)
    assert hub_calls.paths() == stamped_files | SALT_UPLOADED | CHECKPOINT_UPLOADED
    assert not {"checkpoint-100/optimizer.pt", "checkpoint-100/rng_state.pth",
                "checkpoint-100/training_args.bin"} & hub_calls.paths()


def test_files_to_upload_is_relative_and_sorted(repo, stamped_files):
    files = files_to_upload(repo)
    assert [path.as_posix() for path in files] == sorted(stamped_files | SALT_UPLOADED)
    assert not any(path.is_absolute() for path in files)


def test_a_card_image_that_is_not_in_the_repo_is_refused(repo, hub_calls):
    (repo / "training_curve.png").unlink()
    refused_before_sending(hub_calls, r"README\.md.*training_curve\.png.*add the image", repo)


def test_html_img_tags_count_as_card_images(repo, hub_calls):
    write(repo / "figures" / "wer.svg", "<svg/>")
    with open(repo / "README.md", "a", encoding="utf-8") as card:
        card.write('\n<img src="./figures/wer.svg" width="400">\n')
    push(repo, REPO_ID)
    assert "figures/wer.svg" in hub_calls.paths()


def test_a_symlink_out_of_the_repo_with_an_allowed_name_is_refused(repo, tmp_path, hub_calls):
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (repo / "added_tokens.json").symlink_to(outside)
    refused_before_sending(hub_calls, r"added_tokens\.json: a symlink to .*copy the file", repo)


def test_symlinks_that_are_not_allowed_are_left_out(repo, tmp_path, hub_calls, stamped_files):
    (tmp_path / "elsewhere").mkdir()
    (repo / "data").symlink_to(tmp_path / "elsewhere")
    (repo / "secrets.txt").symlink_to(repo / ".env")
    push(repo, REPO_ID)
    assert hub_calls.paths() == stamped_files | SALT_UPLOADED


# ---------------------------------------------------------------------------- tokens

@pytest.mark.parametrize("name, content, where", [
    ("eval.py", f'\nHF_TOKEN = "{TOKEN}"\n', "line"),
    ("README.md", f"\nDownload with token {TOKEN}.\n", "line"),
    ("tests/test_scripts.py", f"\n# {ORG_TOKEN}\n", "line"),
    ("model.safetensors", b"\x00\xff" * 500 + TOKEN.encode() + b"\x00", "byte"),
    ("language_model/5gram.bin", b"\x01" * 10 + ORG_TOKEN.encode(), "byte"),
    ("checkpoint-100/trainer_state.json", f'{{"hub_token": "{TOKEN}"}}', "checkpoint"),
])
def test_a_token_in_any_uploaded_file_stops_the_push_before_the_hub_is_called(repo, hub_calls, name,
                                                                                content, where):
    path = repo / name
    existing = path.read_bytes() if path.exists() else b""
    write(path, existing + (content if isinstance(content, bytes) else content.encode()))
    message = refused_before_sending(hub_calls, "holds a Hugging Face token", repo,
                                     include_checkpoints=where == "checkpoint")
    assert name in message and "revoke" in message
    assert ("hf_Zq..." in message) or ("api_org_Bv..." in message)


def test_a_token_in_a_checkpoint_left_out_does_not_stop_the_push(repo, hub_calls):
    write(repo / "checkpoint-100" / "trainer_state.json", f'{{"hub_token": "{TOKEN}"}}')
    push(repo, REPO_ID)
    assert len(hub_calls.commits) == 1


@pytest.mark.parametrize("start", [0, 40, 50, 63, 64, 100, 170])
def test_a_token_across_a_scan_chunk_boundary_is_found_with_its_line(tmp_path, monkeypatch, start):
    monkeypatch.setattr(hub, "SCAN_CHUNK", 64)
    text = ("x" * (start - 1) + "\n" if start else "") + TOKEN + "\nafter\n"
    path = tmp_path / "file.txt"
    path.write_text(text)
    hit = find_token(path)
    assert (hit.offset, hit.line, hit.token) == (start, 2 if start else 1, TOKEN.encode())


@pytest.mark.parametrize("text", [
    "hf_" + "a" * 29,  # too short to be a token
    "hf_hub_download(repo_id)",
    "api_org_" + "_" * 40,
])
def test_token_look_alikes_are_not_tokens(tmp_path, text):
    (tmp_path / "f.py").write_text(text)
    assert find_token(tmp_path / "f.py") is None


# ---------------------------------------------------------------------------- the card

@pytest.mark.parametrize("front_matter, complaint", [
    ("---\nlanguage: [hy-AM\nlicense: apache-2.0\n---\n", "does not parse"),
    ("---\n- a list\n- not a mapping\n---\n", "does not parse"),
    ("---\nlicense: apache-2.0\n---\n", "no language"),
    ("---\nlanguage: hy-AM\n---\n", "no license"),
    ("# no front matter at all\n", "no language or license"),
    ("---\nlanguage: hy-AM\nlicense: mit\nmodel-index:\n- name: m\n  results: [{metrics: 3}]\n---\n",
     "does not parse"),
])
def test_a_broken_card_is_refused_before_anything_is_sent(repo, hub_calls, front_matter, complaint):
    (repo / "README.md").write_text(front_matter + "\n# Card\n", encoding="utf-8")
    refused_before_sending(hub_calls, rf"README\.md: .*{complaint}.*ctcforge card", repo)


def test_a_missing_card_is_refused(repo, hub_calls):
    (repo / "README.md").unlink()
    refused_before_sending(hub_calls, r"README\.md: missing", repo)


# ---------------------------------------------------------------------------- the commit

def test_a_failed_commit_is_one_line_and_a_rerun_sends_the_same_operations(repo, hub_calls):
    hub_calls.commit_errors.append(http_error(500, f"500 Server Error\nfor url with {TOKEN}\nretry"))
    with pytest.raises(CtcforgeError, match="nothing was committed, push again") as failed:
        push(repo, REPO_ID)
    assert_one_line_without_token(str(failed.value))
    push(repo, REPO_ID)
    assert len(hub_calls.commits) == 2
    assert hub_calls.sent(0) == hub_calls.sent(1)
    assert hub_calls.repos[0] == hub_calls.repos[1]


def test_hub_error_messages_never_echo_a_token_even_when_cut_short():
    message = hub.one_line(RuntimeError("x" * 180 + " " + TOKEN))
    assert TOKEN[3:15] not in message and "\n" not in message and len(message) <= 200


def test_a_rerun_after_success_is_idempotent(repo, hub_calls):
    push(repo, REPO_ID)
    push(repo, REPO_ID)
    assert hub_calls.sent(0) == hub_calls.sent(1)
    assert all(call["exist_ok"] for call in hub_calls.repos)


@pytest.mark.parametrize("error", [
    httpx2.ConnectError("[Errno -3] Temporary failure in name resolution"),
    httpx2.ConnectTimeout("timed out"),
    OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled."),
    ConnectionRefusedError(111, "Connection refused"),
])
def test_an_unreachable_hub_is_one_line_pointing_at_dry_run(repo, hub_calls, error):
    hub_calls.repo_errors.append(error)
    with pytest.raises(CtcforgeError, match=r"Hub is unreachable .*--dry-run.*offline") as failed:
        push(repo, REPO_ID)
    assert "\n" not in str(failed.value)
    assert hub_calls.commits == []


def test_hf_hub_offline_is_refused_before_any_call(repo, hub_calls, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    refused_before_sending(hub_calls, r"unreachable \(HF_HUB_OFFLINE is set\).*--dry-run", repo)


def test_not_logged_in_names_hf_auth_login(repo, hub_calls, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    refused_before_sending(hub_calls, r"not logged in.*`hf auth login`.*HF_TOKEN", repo)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_names_hf_auth_login(repo, hub_calls, status):
    hub_calls.repo_errors.append(http_error(status, "Unauthorized"))
    with pytest.raises(CtcforgeError, match=rf"refused the token .*HTTP {status}.*`hf auth login`"):
        push(repo, REPO_ID)
    assert hub_calls.commits == []


@pytest.mark.parametrize("repo_id", ["just-a-name", "a/b/c", "org/bad name", ""])
def test_repo_id_must_be_org_slash_name(repo, hub_calls, repo_id):
    refused_before_sending(hub_calls, "--repo-id must be ORG/NAME", repo, repo_id=repo_id)


# ---------------------------------------------------------------------------- the weights

@pytest.fixture
def untrained(stamped_repo, tmp_path):
    """The repo as `ctcforge new` left it: everything but weights."""
    return shutil.copytree(stamped_repo, tmp_path / "untrained")


def refused_on_the_cli(repo, capsys, *options):
    assert main(["push", str(repo), "--repo-id", REPO_ID, *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not one file listed
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctcforge: error: ")
    return lines[0]


@pytest.mark.parametrize("options", [["--dry-run"], []])
def test_a_repo_without_weights_is_refused_with_train_first(untrained, hub_calls, capsys, options):
    line = refused_on_the_cli(untrained, capsys, *options)
    assert line.endswith(f"{untrained}: no weights to push: train first with python run_speech_recognition_ctc.py "
                         "(see README.md, Training)")
    assert hub_calls.calls == 0


@pytest.mark.parametrize("options", [["--dry-run"], []])
def test_weights_in_the_runs_output_dir_are_named(untrained, hub_calls, capsys, options):
    out = untrained / "out"
    write(out / "model.safetensors", SALT["model.safetensors"])
    write_training_run(untrained, out)
    line = refused_on_the_cli(untrained, capsys, *options)
    assert line.endswith(f"the trained model is in {out} (training_run.json): copy them into the repo "
                         "or train with --output_dir ./")
    assert hub_calls.calls == 0


def test_a_run_whose_output_dir_lost_its_weights_says_train_first(untrained, hub_calls, capsys):
    write_training_run(untrained, untrained / "out")
    assert "train first" in refused_on_the_cli(untrained, capsys, "--dry-run")


def test_pickled_weights_only_are_refused_naming_safetensors(untrained, hub_calls, capsys):
    write(untrained / "pytorch_model.bin", SALT["pytorch_model.bin"])
    line = refused_on_the_cli(untrained, capsys, "--dry-run")
    assert "pickles (pytorch_model.bin), which push never uploads" in line and "model.safetensors" in line


@pytest.mark.parametrize("weights", ["model.safetensors", "model.safetensors.index.json"])
def test_a_repo_with_weights_lists_them_in_the_dry_run(untrained, hub_calls, capsys, weights):
    if weights == "model.safetensors":
        write(untrained / weights, SALT["model.safetensors"])
    else:  # sharded: the index and the shard it names
        shard = "model-00001-of-00001.safetensors"
        write(untrained / weights, json.dumps({"metadata": {}, "weight_map": {"lm_head.weight": shard}}))
        write(untrained / shard, SALT["model.safetensors"])
    write_training_run(untrained, untrained)  # trained with --output_dir ./
    assert main(["push", str(untrained), "--repo-id", REPO_ID, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split("  ")[-1] for line in lines if line.startswith(" ")}
    assert {weights, "training_run.json", "base_model.json"} <= listed  # the card quotes the run's record


# ---------------------------------------------------------------------------- dry run and CLI

def test_dry_run_lists_exactly_what_would_go_and_contacts_nothing(repo, stamped_files, hub_calls,
                                                                  monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # works offline...
    monkeypatch.delenv("HF_TOKEN")  # ...and logged out
    assert main(["push", str(repo), "--repo-id", REPO_ID, "--dry-run"]) == 0
    assert hub_calls.calls == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split("  ")[-1] for line in lines if line.startswith(" ")}  # "  size  path"
    assert listed == stamped_files | SALT_UPLOADED
    assert f"{'11 B':>10}  language_model/unigrams.txt" in lines  # sizes in bytes, not letters
    assert "left out: 2 files: checkpoint folders (add --include-checkpoints)" in lines
    assert "left out: 5 files: secrets and token stores (.env, token, *.token, .huggingface/, .cache/)" in lines
    # A checkpoint's optimizer and RNG state count here: the never rules come first.
    assert "left out: 7 files: optimizer, scheduler and RNG states, training_args.bin" in lines
    assert any(line.startswith("dry run: nothing sent") for line in lines)


def test_dry_run_still_refuses_a_token(repo, hub_calls, capsys):
    write(repo / "speech_data.py", f"TOKEN = '{TOKEN}'\n")
    assert main(["push", str(repo), "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert hub_calls.calls == 0
    assert TOKEN not in capsys.readouterr().out


@pytest.mark.parametrize("salt, expected", [
    (("eval.py", f"\nprint('{TOKEN}')\n"), "holds a Hugging Face token"),
    (("README.md", "---\nlanguage: [\n---\n"), "YAML front matter does not parse"),
])
def test_cli_prints_one_error_line_and_exits_2(repo, hub_calls, capsys, salt, expected):
    name, content = salt
    with open(repo / name, "a" if name == "eval.py" else "w", encoding="utf-8") as file:
        file.write(content)
    assert main(["push", str(repo), "--repo-id", REPO_ID]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctcforge: error: ") and expected in lines[0]
    assert TOKEN not in captured.err
    assert hub_calls.calls == 0


def test_cli_push_sends_one_commit_and_says_where(repo, hub_calls, capsys):
    assert main(["push", str(repo), "--repo-id", REPO_ID, "--private"]) == 0
    assert hub_calls.repos[0]["private"] is True and len(hub_calls.commits) == 1
    assert f"https://huggingface.co/{REPO_ID}/commit/abc" in capsys.readouterr().out


# ---------------------------------------------------------------------------- loads as eval.py loads it


def test_weights_cut_short_are_refused_before_sending(repo, hub_calls):
    from safetensors.torch import save

    import torch

    whole = save({"lm_head.weight": torch.zeros(64, 64)})
    write(repo / "model.safetensors", whole[: len(whole) // 2])  # an upload or copy that stopped
    message = refused_before_sending(hub_calls, r"model\.safetensors: cannot be read", repo, dry_run=True)
    assert "cut short" in message


def test_an_adapter_file_cut_short_is_refused_too(repo, hub_calls):
    write(repo / "adapter.hye.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    refused_before_sending(hub_calls, r"adapter\.hye\.safetensors: cannot be read", repo, dry_run=True)


@pytest.mark.parametrize("name, edit, problem", [
    ("vocab.json", lambda vocab: vocab.update({"ꙮ": len(vocab)}), r"the model never writes 'ꙮ'"),  # no output writes it
    ("config.json", lambda config: config.update(vocab_size=config["vocab_size"] + 1),
     r"output ids \d+ have no token"),  # an output no label names
])
def test_a_vocabulary_that_does_not_fit_the_model_is_refused(repo, hub_calls, name, edit, problem):
    data = json.loads((repo / name).read_text(encoding="utf-8"))
    edit(data)
    (repo / name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    message = refused_before_sending(hub_calls, problem, repo, dry_run=True)
    assert "do not fit config.json's vocab_size" in message
