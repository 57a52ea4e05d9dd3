"""The `ctcforge` command: a thin argparse layer over the library's verbs.

A CtcforgeError is the user's to fix, so it is printed as one line without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctcforge import __version__
from ctcforge.runtime.errors import CtcforgeError


def cmd_new(args: argparse.Namespace) -> None:
    from ctcforge.new import new_repo

    repo = new_repo(args.language, args.output_dir, base_model=args.base_model, dataset=args.dataset,
                    dataset_config=args.config, spec_path=args.spec, profile_path=args.profile, force=args.force,
                    report=print)
    print(f"stamped {repo}")
    print(f"next: cd {repo} && python -m pytest -q")
    print("then: train with the command its README.md gives (Training procedure); after training, "
          "ctcforge lm, python eval.py, ctcforge card and ctcforge push (see ctcforge's README)")


def cmd_update(args: argparse.Namespace) -> None:
    from ctcforge.answers import ANSWERS_FILE
    from ctcforge.new import new_repo

    if not (args.repo / ANSWERS_FILE).is_file():
        raise CtcforgeError(f"{args.repo} has no {ANSWERS_FILE}: only a repo made by `ctcforge new` can be updated")
    new_repo(None, args.repo, force=True, report=print)
    print(f"updated {args.repo}")
    print(f"next: look over the merged files (git diff, where the repo is under git), then "
          f"cd {args.repo} && python -m pytest -q")


def cmd_profile(args: argparse.Namespace) -> None:
    from ctcforge.profile import write_draft

    if bool(args.from_text) == bool(args.from_release):
        raise CtcforgeError("give the language's text: --from-text FILE... or --from-release DIR (not both)")
    output = args.output or Path(f"{args.language}.yaml")
    sources = args.from_text or [args.from_release]
    draft = write_draft(args.language, sources, output, from_release=bool(args.from_release), name=args.name,
                        force=args.force, progress=not args.quiet)
    from ctcforge.languages import available_codes

    if args.language in available_codes():
        print(f"note: ctcforge ships a profile for {args.language} (ctcforge languages); this draft is from the text alone")
    for line in draft.summary():
        print(line)
    print(f"wrote {output}: review every comment, then `ctcforge new --profile {output} --output-dir DIR`")


def cmd_card(args: argparse.Namespace) -> None:
    from ctcforge.card import rebuild_card

    print(f"wrote {rebuild_card(args.repo_dir)}")


def cmd_lm(args: argparse.Namespace) -> None:
    from ctcforge.lm import TextSources, build_language_model
    from ctcforge.lm_tuning import TuningGrid, tune_language_model

    builds = bool(args.text or args.dataset)
    if not (builds or args.tune_dataset):
        raise CtcforgeError("give LM text (--text FILE, --dataset D) to build, and/or --tune-dataset to tune")
    if builds:
        sources = TextSources(files=args.text or [], dataset=args.dataset, config=args.config, split=args.split,
                              text_column=args.text_column)
        build_language_model(args.repo_dir, sources, allow_test_sentences=args.allow_test_sentences,
                             progress=not args.quiet, **given(order=args.order, memory=args.memory,
                                                          prune=args.prune and tuple(args.prune)))
    if args.tune_dataset:
        grid = TuningGrid(**given(alphas=args.tune_alphas and tuple(args.tune_alphas),
                                  betas=args.tune_betas and tuple(args.tune_betas),
                                  beam_widths=args.tune_beam_widths and tuple(args.tune_beam_widths)))
        tune_language_model(args.repo_dir, args.tune_dataset, args.tune_config, args.tune_split,
                            text_column=args.text_column, grid=grid, max_clips=args.tune_max_clips,
                            progress=not args.quiet)


def given(**options) -> dict:
    """The options the user gave; the library's defaults stand for the rest."""
    return {name: value for name, value in options.items() if value is not None}


def cmd_demo(args: argparse.Namespace) -> None:
    from ctcforge.demo import run_demo

    run_demo(args.language, args.minutes, args.output_dir, num_clips=args.num_clips)


def cmd_push(args: argparse.Namespace) -> None:
    from ctcforge.push import push

    push(args.repo_dir, args.repo_id, private=args.private, dry_run=args.dry_run,
         include_checkpoints=args.include_checkpoints, adapters_only=args.adapter_only)


def cmd_export(args: argparse.Namespace) -> None:
    from ctcforge.card import rebuild_card
    from ctcforge.export import export_repo

    export_repo(args.repo_dir, int8=args.int8)
    print(f"wrote {rebuild_card(args.repo_dir)} (its Usage section shows how to run the export)")


def cmd_synth(args: argparse.Namespace) -> None:
    from ctcforge.synth import synthesize

    release = synthesize(args.language, args.output_dir, args.num_clips, seed=args.seed,
                         progress=not args.quiet)
    print(f"wrote {release}")


def cmd_languages(args: argparse.Namespace) -> None:
    from ctcforge.cv_utils_check import verdict
    from ctcforge.languages import available_codes, load_profile

    for code in available_codes():
        profile = load_profile(code)
        voice = profile.espeak_voice or "-"
        print(f"{code:8} {profile.name:12} script={profile.script:10} words={profile.word_split:8} "
              f"metrics={','.join(profile.metrics):8} espeak={voice:5} commonvoice-utils={verdict(profile)}")


def cmd_models(args: argparse.Namespace) -> None:
    from ctcforge.catalogue import catalogue

    for model_id, entry in catalogue().items():
        print(f"{model_id:32} {entry['family']:14} {entry.get('description', '')}")


def cmd_data_common_voice(args: argparse.Namespace) -> None:
    from ctcforge.data import fetch_common_voice

    fetch_common_voice(args.locale, args.version, args.output_dir, dataset_id=args.dataset_id,
                       keep_archive=args.keep_archive, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctcforge",
        description="Stamp and maintain wav2vec2/CTC speech-recognition repos, one per language.")
    parser.add_argument("--version", action="version", version=f"ctcforge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    new = commands.add_parser(
        "new", help="stamp a language repo (scripts, vocab, config, card, tests)",
        description="Stamp a language repo: run_speech_recognition_ctc.py and eval.py, their "
                    "ctcforge_runtime/ package, vocab.json, config.json, README.md (model card), "
                    "requirements, tests/ and an empty language_model/.")
    new.add_argument("language", nargs="?",
                     help="Common Voice locale of a profile (see `ctcforge languages`); optional with --spec "
                          "or with --force over a repo ctcforge made")
    new.add_argument("--output-dir", type=Path, required=True, help="folder to create the repo in")
    new.add_argument("--base-model", help="catalogue id (see `ctcforge models`), a local model folder, "
                                          "or `tiny`; default: the spec's, else facebook/wav2vec2-xls-r-300m")
    new.add_argument("--dataset", help="local dataset folder (Common Voice release, OpenSLR, audiofolder, "
                                       "save_to_disk) whose training text sets the vocabulary")
    new.add_argument("--config", help="dataset config (Common Voice locale folder); default: the language")
    new.add_argument("--spec", type=Path, help="model spec YAML (e.g. specs/hy-AM.yaml) with the card's facts")
    new.add_argument("--profile", type=Path, metavar="FILE",
                     help="stamp from this profile YAML (one `ctcforge profile` drafted, for a language ctcforge "
                          "does not ship) instead of a shipped profile; the repo records it, so --force needs it "
                          "only to change it")
    new.add_argument("--force", action="store_true",
                     help="stamp into a non-empty folder; over a repo ctcforge made, update it as `ctcforge "
                          "update` does (the answers it recorded fill in what is not given)")
    new.set_defaults(run=cmd_new)

    update = commands.add_parser(
        "update", help="bring a repo to this ctcforge's template, merging your edits",
        description="Render the template version the repo was stamped from (its recorded answers) and this "
                    "version, and merge them into the repo three ways: files nobody edited are replaced, "
                    "edited ones get the template's changes merged in (conflict markers where both changed a "
                    "region), files the template dropped are removed unless edited; under trained weights "
                    "vocab.json, the tokenizer and config.json stay. `new --force` over the repo does the same.")
    update.add_argument("repo", type=Path, help="the repo folder (it holds .ctcforge-answers.yml)")
    update.set_defaults(run=cmd_update)

    profile = commands.add_parser(
        "profile", help="draft a profile for a language ctcforge does not ship, from its own text",
        description="Count every character of the language's sentences and write a commented profile YAML for "
                    "review: the character inventory with counts and Unicode names, a proposed alphabet (the "
                    "letters and marks of the text's main script), punctuation and symbols to ignore, digits "
                    "flagged (you decide: spell them out or drop those lines), the casing rule, the Unicode form "
                    "(NFKC where compatibility forms occur), the word split (char when most lines hold no "
                    "space) and the espeak-ng voice, if espeak-ng has one. `ctcforge new --profile FILE` "
                    "stamps a repo from it.")
    profile.add_argument("language", help="Common Voice locale of the language, e.g. mt")
    profile.add_argument("--from-text", type=Path, nargs="+", action="extend", metavar="FILE",
                         help="UTF-8 text, one sentence a line, or a TSV with a sentence column "
                              "(Common Voice's validated_sentences.tsv)")
    profile.add_argument("--from-release", type=Path, metavar="DIR",
                         help="a Common Voice locale folder (or the release folder holding LANGUAGE/): its "
                              "validated_sentences.tsv, else validated.tsv, else train/dev/test.tsv")
    profile.add_argument("--name", help="the language's English name (default: espeak-ng's name for it)")
    profile.add_argument("--output", type=Path, metavar="FILE", help="where to write the draft (default LANGUAGE.yaml)")
    profile.add_argument("--force", action="store_true", help="replace an existing --output file")
    profile.add_argument("--quiet", action="store_true", help="no progress bar")
    profile.set_defaults(run=cmd_profile)

    card = commands.add_parser(
        "card", help="rebuild README.md from the repo's answers, eval results and trainer state",
        description="Rebuild the model card from .ctcforge-answers.yml, *_eval_results.txt "
                    "(repo root, eval/greedy, eval/lm) and trainer_state.json; text outside the "
                    "generated sections is kept.")
    card.add_argument("repo_dir", type=Path, help="a repo made by `ctcforge new`")
    card.set_defaults(run=cmd_card)

    lm = commands.add_parser(
        "lm", help="build the repo's n-gram LM (KenLM) and tune its weights on dev data",
        description="Build language_model/ (lm.binary, unigrams.txt, attrs.json) and alphabet.json, the layout "
                    "pyctcdecode, eval.py and transformers' pipeline() load, from text passed through the repo's "
                    "normaliser; test-split sentences are left out. With --tune-dataset, choose alpha, beta and "
                    "the beam width on a dev split and write lm_tuning/ (wer_grid.csv, wer_heatmap.png, "
                    "best.json). Tuning alone (no text) re-tunes the LM already built.")
    lm.add_argument("repo_dir", type=Path, help="a repo made by `ctcforge new`")
    lm.add_argument("--text", type=Path, nargs="+", action="extend", metavar="FILE",
                    help="UTF-8 text files, one sentence a line, or a TSV with a sentence column "
                         "(Common Voice's validated_sentences.tsv)")
    lm.add_argument("--dataset", help="a dataset (as for eval.py) whose text column joins the LM text")
    lm.add_argument("--config", help="dataset config (Common Voice locale); default: the repo's language")
    lm.add_argument("--split", default="train", help="dataset split for LM text (default train)")
    lm.add_argument("--text-column", default="sentence", help="transcript column (default sentence)")
    lm.add_argument("--order", type=int, help="n-gram order (default 5)")
    lm.add_argument("--prune", type=int, nargs="+", metavar="N",
                    help="lmplz --prune: count thresholds per order, e.g. 0 0 1 drops singleton 3-grams and up")
    lm.add_argument("--memory", help="lmplz sorting memory (-S), e.g. 10%% or 2G; default 10%%, where lmplz's "
                                     "own default of 80%% would starve a shared machine")
    lm.add_argument("--allow-test-sentences", action="store_true",
                    help="keep sentences of the repo's test split in the LM text (they are left out by default)")
    lm.add_argument("--tune-dataset", help="dataset whose dev split the LM weights are tuned on")
    lm.add_argument("--tune-config", help="its config (Common Voice locale)")
    lm.add_argument("--tune-split", default="dev", help="split to tune on (default dev)")
    lm.add_argument("--tune-max-clips", type=int, help="tune on the first N clips only")
    lm.add_argument("--tune-alphas", type=float, nargs="+", metavar="A",
                    help="LM weights to try (default: 7 from 0 to 2)")
    lm.add_argument("--tune-betas", type=float, nargs="+", metavar="B",
                    help="word insertion bonuses to try (default: 6 from 0 to 3)")
    lm.add_argument("--tune-beam-widths", type=int, nargs="+", metavar="W",
                    help="beam widths to try (default: 25 50 100); pyctcdecode's defaults (alpha 0.5, beta 1.5, "
                         "width 100) are always tried")
    lm.add_argument("--quiet", action="store_true", help="no progress bars")
    lm.set_defaults(run=cmd_lm)

    demo = commands.add_parser(
        "demo", help="the whole life of a repo, offline on the CPU: data, training, LM, eval, card",
        description="Synthesise a Common Voice-format release with espeak-ng (OUTPUT_DIR/cv), stamp a "
                    "repo on the `tiny` base model (OUTPUT_DIR/repo), train it from scratch with the "
                    "repo's run_speech_recognition_ctc.py, build and tune its n-gram LM (`ctcforge lm`), "
                    "run the repo's eval.py on the held-out test clips greedily and with the LM, rebuild "
                    "the card, load the repo with pipeline() and print the error rates. A rerun skips "
                    "every stage already done; an interrupted training run resumes from its checkpoint.")
    demo.add_argument("--language", default="hy-AM",
                      help="a profile with a sentences file and an espeak-ng voice (default hy-AM)")
    demo.add_argument("--minutes", type=float, default=15.0,
                      help="budget for the whole demo; training gets what the other stages leave "
                           "(default 15)")
    demo.add_argument("--output-dir", type=Path, default=Path("demo-output"),
                      help="where the data and the repo go (default ./demo-output)")
    demo.add_argument("--num-clips", type=int, default=1600,
                      help="synthetic clips, 80/10/10 over train/dev/test (default 1600)")
    demo.set_defaults(run=cmd_demo)

    push = commands.add_parser(
        "push", help="upload a repo's allowlisted files to the Hugging Face Hub in one commit",
        description="Create ORG/NAME on the Hub if needed and upload, as one commit, only an "
                    "allowlist: *.safetensors weights, configs, tokenizer files and vocab.json, "
                    "language_model/ (KenLM *.bin, *.arpa, unigrams.txt, attrs.json), alphabet.json, "
                    "README.md and the images it shows, the root *.py scripts, language_profile.json, "
                    "requirements*.txt, tests/**/*.py, eval.py outputs (root and eval/), lm_tuning/, "
                    "onnx/ (model.onnx, model.int8.onnx, tokens.txt, export.json from `ctcforge export`), "
                    "trainer and results JSON files, base_model.json, training_run.json, .gitattributes, "
                    ".gitignore, .ctcforge-answers.yml. "
                    "Never uploaded: .env, token files, .huggingface/, .cache/, *.pt/*.pth/*.pkl and "
                    "*.bin pickles, training_args.bin, optimizer/scheduler/RNG states, caches, runs/, "
                    "wandb/, and checkpoint-*/ folders unless --include-checkpoints. The push is refused "
                    "if the repo holds no safetensors weights (naming the training run's --output_dir "
                    "when they are there), a file to upload holds a Hub token, or README.md's YAML does "
                    "not parse or lacks language/license. Log in first with `hf auth login` or set HF_TOKEN.")
    push.add_argument("repo_dir", type=Path, help="a repo made by `ctcforge new`")
    push.add_argument("--repo-id", required=True, help="ORG/NAME of the model repo on the Hub")
    push.add_argument("--private", action="store_true",
                      help="create the repo private (an existing repo keeps its visibility)")
    push.add_argument("--dry-run", action="store_true",
                      help="run every check, list the files that would go with their sizes and what was "
                           "left out by reason; contacts nothing, so it works offline")
    push.add_argument("--include-checkpoints", action="store_true",
                      help="also upload checkpoint-*/ folders: their safetensors, configs, tokenizer files "
                           "and trainer_state.json only, never optimizer, scheduler or RNG states")
    push.add_argument("--adapter-only", action="store_true",
                      help="adapter models (MMS): upload the adapter.*.safetensors files but not the full "
                           "model weights, which are the base model's; pipeline() and from_pretrained of the "
                           "Hub repo alone then fail (README: MMS language adapters)")
    push.set_defaults(run=cmd_push)

    export = commands.add_parser(
        "export", help="write the repo's acoustic model as ONNX, for sherpa-onnx and other runtimes",
        description="Write REPO_DIR/onnx/: model.onnx (mono float samples in [-1, 1] at the model's "
                    "sampling rate, shape batch x samples, to CTC logits batch x frames x labels; the "
                    "feature extractor's work is inside the graph; the clips of a batch share a length), "
                    "tokens.txt (`symbol id` lines, the blank as <blk>, the word delimiter as \u2581), "
                    "and export.json (sampling rate, label ids, frame rate, the check below). The ONNX "
                    "model's logits must be within 1e-3 of the largest torch logit on up to 8 test clips "
                    "(synthetic signals without a test split) and a batch of 2, or nothing is written. "
                    "The weights are the ones eval.py evaluates (the repo's, or its training run's "
                    "--output_dir). Then rebuilds the card, whose Usage section shows how to run it "
                    "with sherpa-onnx; `ctcforge push` uploads onnx/ when it is there.")
    export.add_argument("repo_dir", type=Path, help="a trained repo made by `ctcforge new`")
    export.add_argument("--int8", action="store_true",
                        help="also write model.int8.onnx, MatMul weights quantised to int8 (smaller and "
                             "faster, other text); prints its CER change against fp32 on the test split")
    export.set_defaults(run=cmd_export)

    synth = commands.add_parser(
        "synth", help="write a synthetic Common Voice release spoken by espeak-ng (test and demo data)",
        description="Speak ctcforge/sentences/LANG.txt with espeak-ng into "
                    "OUTPUT_DIR/LANG/{train,dev,test,validated}.tsv and clips/*.mp3 (48 kHz mono). "
                    "A sentence's split is fixed by a hash of its normalised text, so test sentences "
                    "never reach train. km has no espeak-ng voice: its audio is a letter-by-letter "
                    "stand-in, not Khmer speech.")
    synth.add_argument("language", help="Common Voice locale with a sentences file in ctcforge/sentences/ (hy-AM, es, "
                                        "ja, zh-HK, ...; its README.md lists them)")
    synth.add_argument("--output-dir", type=Path, required=True,
                       help="release folder; OUTPUT_DIR/LANG must be absent or empty")
    synth.add_argument("--num-clips", type=int, required=True,
                       help="clips to make, spread 80/10/10 over train/dev/test")
    synth.add_argument("--seed", type=int, default=0, help="voice, rate, pitch and sentence order (default 0)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(run=cmd_synth)

    data = commands.add_parser(
        "data", help="fetch speech data as it is published today (Common Voice from the Mozilla Data Collective)",
        description="Download a dataset and unpack it where --dataset reads it.")
    sources = data.add_subparsers(dest="source", required=True, metavar="SOURCE")
    common_voice = sources.add_parser(
        "common-voice", help="one locale of a Common Voice release, from the Mozilla Data Collective (MDC)",
        description="Find the Common Voice Scripted Speech release VERSION of LOCALE on the Mozilla Data "
                    "Collective, download it with the datacollective client (progress; an interrupted download "
                    "resumes when rerun), check its size and SHA-256 against MDC's, and unpack it safely to "
                    "OUTPUT_DIR/cv-corpus-VERSION-DATE/LOCALE/; prints the --dataset and --config that read it. A "
                    "locale already unpacked is skipped, offline. Needs an MDC API key in MDC_API_KEY (or .env), "
                    "made at https://mozilladatacollective.com/api-reference, and the dataset's terms agreed to on "
                    "its MDC page.")
    common_voice.add_argument("locale", help="Common Voice locale code, e.g. hy-AM, zh-HK, as")
    common_voice.add_argument("--version", required=True, help="release number, e.g. 25.0 (25 means 25.0)")
    common_voice.add_argument("--output-dir", type=Path, required=True,
                              help="folder for the release (several locales and releases may share it)")
    common_voice.add_argument("--dataset-id", help="MDC dataset id, from the dataset's MDC page, instead of "
                                                   "searching MDC's catalogue by locale and version")
    common_voice.add_argument("--keep-archive", action="store_true",
                              help="keep the downloaded .tar.gz after unpacking (deleted by default: it is as "
                                   "large as the release)")
    common_voice.add_argument("--quiet", action="store_true", help="no progress bars")
    common_voice.set_defaults(run=cmd_data_common_voice)

    languages = commands.add_parser(
        "languages", help="list the language profiles",
        description="One line per profile: locale, name, script, word split for WER, metrics, espeak-ng voice, "
                    "and whether commonvoice-utils' validation data agrees with its alphabet (`agrees`, with the "
                    "profile's reasoned exceptions counted; `differs` and the letters; `no data` for a locale it "
                    "lacks; `not checked` when the package, a test-only dependency, is not installed).")
    languages.set_defaults(run=cmd_languages)
    models = commands.add_parser("models", help="list the base-model catalogue")
    models.set_defaults(run=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CtcforgeError as exc:
        print(f"ctcforge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
