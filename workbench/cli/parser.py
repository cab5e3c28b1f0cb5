"""The `workbench` command line's arguments: one function per command adds its parser.

See `workbench.cli.main` for the commands' usage and handlers.
"""

from __future__ import annotations

import argparse

from workbench.experiments.config import parse_limit
from workbench.finetune.serving import SERVE_MODES
from workbench.finetune.tokens import MAX_LENGTH
from workbench.scale.batch_lines import MAX_LINES
from workbench.trainingdata.anchors import DEFAULT_SHARE
from workbench.trainingdata.examples import REGRESSION_SIZE
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE


def build_parser(usage: str) -> argparse.ArgumentParser:
    """The parser of every command but ``argilla`` (which parses its own arguments); `usage` is
    the command line's usage text (`workbench.cli.main`'s docstring): its first line describes
    the tool, the rest is --help's epilog."""
    parser = argparse.ArgumentParser(prog="workbench", description=usage.splitlines()[0],
                                     epilog="the typical order:\n" + usage.split("\n\n", 1)[1],
                                     formatter_class=_HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and other details")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    for add in (_add_init, _add_run, _add_runs, _add_compare, _add_preview, _add_push, _add_pull, _add_points,
                _add_data, _add_export, _add_finetune, _add_loop, _add_batch):  # --help lists them in this order
        add(commands)
    commands.add_parser("argilla", help="start, stop or inspect the embedded Argilla server: up | down | status")
    return parser


def _add_init(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser("init", help="make a project folder from your own data: task.yaml, a test/pool "
                                            "split and an experiment config that `workbench run` takes")
    init.add_argument("data", help="a table (.csv, .tsv, .xlsx, .parquet, .jsonl, .json) or a CoNLL file "
                                   "(.conll, .iob, .iob2, .bio) for NER")
    init.add_argument("--text", default=None, metavar="COLUMN",
                      help="the column holding the texts (NER with tags: the tokens)")
    init.add_argument("--label", default=None, metavar="COLUMN",
                      help="the column holding the labels (multilabel: a list or --sep cells; NER: spans with "
                           "character offsets, or IOB/BIO tags)")
    init.add_argument("--id", default=None, metavar="COLUMN",
                      help="a column of unique ids (default: row-<n>, the row a spreadsheet shows, header on row 1, "
                           "or a JSONL file's line; sentence-<n> for CoNLL)")
    init.add_argument("--kind", choices=["classification", "multilabel", "ner"], default=None,
                      help="the task kind (default: ner for CoNLL, multilabel with --sep, else classification)")
    init.add_argument("--sep", default=None, help="the delimiter between labels in a multi-label cell, e.g. ';'")
    init.add_argument("--test-size", type=float, default=0.3,
                      help="a fraction of the rows (0.3) or a number of rows (50) for test.jsonl (default 0.3)")
    init.add_argument("--seed", type=int, default=0, help="the split's random seed (default 0)")
    init.add_argument("--name", default=None, help="the task and experiment name (default: the file's name)")
    init.add_argument("--out", default=None, help="the project folder (default: ./<name>/)")
    init.add_argument("--overwrite", action="store_true", help="replace the project files written there before")


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run an experiment config and write runs/<name>/<run id>/ "
                                          "(runs/<name>/latest points at the newest)")
    run.add_argument("config", help="an experiment config (YAML: name, task, dataset, variants, model, ...)")
    _selection_arguments(run)
    run.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    run.add_argument("--fail-under", action="append", default=[], metavar="[VARIANT:]METRIC=VALUE",
                     help="after the run and its report, exit 1 with the figures when the best variant (or "
                          "VARIANT) scores under VALUE on METRIC, e.g. accuracy=0.80 or few_shot:macro_f1=0.6; "
                          "METRIC is accuracy, macro_f1, micro_f1 (with a 95%% interval) or a column of the run's "
                          "scores (repeatable; default: no gate)")
    batch = run.add_argument_group("--batch openai (OpenAI's Batch API: half price, up to 24 hours; "
                                   "runs/<name>/batches/batches.json lets a second call resume it)")
    batch.add_argument("--batch", choices=["openai"], default=None,
                       help="send the requests the cache lacks as Batch API jobs at the config's endpoint, store "
                            "every answer in the cache, then finish the run from it")
    batch.add_argument("--batch-retry", choices=["direct", "batch"], default="direct",
                       help="the lines that failed: sent one at a time in the run (direct), or in one more batch "
                            "(batch; a line failing again is recorded as its row's request error)")
    batch.add_argument("--poll", type=float, default=15.0, metavar="SECONDS", help="seconds between status checks")
    batch.add_argument("--batch-timeout", type=float, default=None, metavar="SECONDS",
                       help="stop waiting after this long (the batches keep running: run again to continue; "
                            "default: wait)")


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    """What a run runs, besides its config: a sample, other variants, another model or dataset, a name."""
    parser.add_argument("--limit", type=_limit_argument, default=None, metavar="N|all",
                        help="use a seeded sample of N examples; 0 or all: every example (default: the config's "
                             "limit, else all)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated variants instead of the config's (default: the config's variants)")
    parser.add_argument("--model", default=None, metavar="FILE|KIND",
                        help="a model config file (YAML holding what a config's model: holds, e.g. kind: "
                             "openai_compatible, model: ..., base_url: ...) or a model kind that needs nothing else "
                             "(embedded) (default: the config's model)")
    parser.add_argument("--dataset", default=None, metavar="PATH",
                        help="the dataset to run on instead of the config's (default: the config's dataset)")
    parser.add_argument("--name", default=None,
                        help="the run's name: it goes to <runs_dir>/NAME/<run id>/ (default: the config's name)")


def _add_batch(commands: argparse._SubParsersAction) -> None:
    batch = commands.add_parser("batch", help="a run's requests as Batch API lines for `vllm run-batch` or any "
                                              "engine that reads them, and their result lines into the cache")
    actions = batch.add_subparsers(dest="batch_command", required=True, parser_class=_CommandParser)
    export = actions.add_parser("export", help="write the requests the run's cache lacks as request lines")
    export.add_argument("config", help="the experiment config `workbench run` will run")
    export.add_argument("out", help="the request file (OUT.jsonl; split into OUT-1.jsonl, ... past --max-lines)")
    _selection_arguments(export)
    export.add_argument("--max-lines", type=int, default=MAX_LINES, help="most request lines in one file")
    imported = actions.add_parser("import", help="store the answers of result files in the run's cache; "
                                                 "`workbench run CONFIG` then finishes from it")
    imported.add_argument("config", help="the experiment config the requests were exported from")
    imported.add_argument("results", nargs="+", metavar="RESULTS", help="result files (vllm run-batch -o ...)")
    _selection_arguments(imported)


def _add_runs(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="list the runs kept under runs/ (or one experiment's): time, model, "
                                            "variants, n and the best variant's headline score")
    runs.add_argument("folder", nargs="?", default="runs",
                      help="a runs folder, or one experiment's (runs/<name>) (default: runs)")


def _add_compare(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="one HTML report with runs side by side: every variant of each "
                                                  "run, paired tests on the shared examples, cost and latency, "
                                                  "and the answers example by example")
    compare.add_argument("runs", nargs="+", metavar="RUN",
                         help="run folders (runs/<name>/<run id>, or runs/<name> for its latest run); two or more, "
                              "or one with two or more variants")
    compare.add_argument("--out", default=None,
                         help="the report's file (default: comparison.html in the first run's folder of runs)")
    compare.add_argument("--overwrite", action="store_true", help="replace a report written there before")


def _add_preview(commands: argparse._SubParsersAction) -> None:
    preview = commands.add_parser("preview", help="print the rendered messages for one example")
    preview.add_argument("config")
    preview.add_argument("--variant", default=None, help="variant name (default: every variant)")
    preview.add_argument("--example", default=None, help="example_id (default: the first)")


def _add_push(commands: argparse._SubParsersAction) -> None:
    push = commands.add_parser("push", help="push a run's errors to Argilla as suggestions for annotators")
    push.add_argument("run", help="a run folder (runs/<name>), or the experiment config that wrote it")
    push.add_argument("--suggest-from", default=None, metavar="VARIANT",
                      help="the variant whose answers become the suggestions (default: the run's best variant by "
                           "its headline score)")
    push.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    push.add_argument("--name", default=None, help="Argilla dataset name (default: <experiment>_errors)")
    push.add_argument("--order", default="disagreement", choices=["disagreement", "consistency", "confidence"],
                      help="which records annotators see first (confidence: least sure self-consistency votes)")


def _add_pull(commands: argparse._SubParsersAction) -> None:
    pull = commands.add_parser("pull", help="pull annotators' answers for a run from Argilla into snapshots: "
                                            "corrections, point reviews and label-error verdicts")
    pull.add_argument("run", help="a run folder (runs/<name>), or the experiment config that wrote it")
    pull.add_argument("--name", default=None,
                      help="the corrections dataset (default: <experiment>_errors, the name `workbench push` gives)")
    pull.add_argument("--review-name", default=None,
                      help="base name of the review datasets <base>_points and <base>_label_issues (default: the "
                           "run's name, as `workbench points --push-review` gives)")
    pull.add_argument("--out", default="annotations",
                      help="the snapshots folder: each pull adds <out>/<dataset>/<UTC time>.jsonl (default: "
                           "annotations)")


def _add_points(commands: argparse._SubParsersAction) -> None:
    points = commands.add_parser("points", help="group a run's errors into training points; write them to the run "
                                                "folder")
    points.add_argument("run", help="a run folder (runs/<name>), or the experiment config that wrote it")
    points.add_argument("--distance-threshold", type=float, default=0.7,
                        help="cosine distance under which errors of one signature are grouped (default 0.7)")
    points.add_argument("--min-size", type=int, default=2, help="fewest examples a point needs (default 2)")
    points.add_argument("--corrections", action="append", default=[], metavar="SNAPSHOT",
                        help="an annotation snapshot (annotations/<dataset>/<time>.jsonl from `workbench pull`); "
                             "examples whose gold an annotator changed become suspected label errors (repeatable)")
    review = points.add_mutually_exclusive_group()
    review.add_argument("--push-review", action="store_true",
                        help="also push the points to Argilla for review (<run>_points) and the suspected label "
                             "errors for a verdict (<run>_label_issues)")
    review.add_argument("--pull-review", action="store_true",
                        help="do not cluster again: pull the annotators' answers to both datasets and apply them "
                             "to the points in the run folder")
    points.add_argument("--review-name", default=None,
                        help="base name of the review datasets (default: the run's name)")
    points.add_argument("--overwrite", action="store_true",
                        help="cluster again when the run has points already (default: refuse; --push-review then "
                             "pushes the points there)")


def _add_data(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="build training examples and held-out test cases for each training point")
    data.add_argument("run", help="a run folder with points (after `workbench points`), or its experiment config")
    data.add_argument("--pool", default=None,
                      help="a labelled dataset file to take neighbours from (default: the run's few-shot pool)")
    data.add_argument("--no-pool", action="store_true", help="use no neighbours: members and corrections only")
    data.add_argument("--train-variant", default="tuned",
                      help="the prompt variant the training messages are rendered with (default tuned: the compact "
                           "prompt, no label list)")
    data.add_argument("--corrections", action="append", default=[], metavar="SNAPSHOT",
                      help="an annotation snapshot whose corrections replace gold targets (repeatable)")
    data.add_argument("--regression-size", type=int, default=REGRESSION_SIZE,
                      help="most regression cases: evaluated examples in no point, re-tested to catch what a "
                           "fine-tune breaks")
    _anchors_argument(data)
    data.add_argument("--overwrite", action="store_true", help="replace training data written before")


def _add_export(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="export a run's training data for trainers (after `workbench data`)")
    export.add_argument("run", help="a run folder with training_data/ (after `workbench data`), or its config")
    export.add_argument("--format", action="append", choices=["openai", "hf", "spacy"], default=None,
                        help="what to write (repeatable; default: all three)")
    export.add_argument("--out", default=None, help="folder for the exports (default: <run>/exports)")
    export.add_argument("--overwrite", action="store_true", help="replace exports written before")
    export.add_argument("--price", type=float, default=None,
                        help="the provider's training price per million tokens, for a cost estimate")
    export.add_argument("--min-examples", type=int, default=10,
                        help="fewest training examples the chat file may hold (OpenAI: 10)")
    export.add_argument("--train-spacy", type=int, default=0, metavar="STEPS",
                        help="also train the spaCy baseline for STEPS steps and score it on each point's test cases")


def _add_finetune(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser("finetune", help="LoRA-tune the run's local model on its training data and compare it "
                                                "with the base on every point's test cases, both on one runtime: "
                                                "kind embedded (the GGUF) in llama.cpp, kind transformers (a local "
                                                "model folder) in-process with the peft adapter")
    tune.add_argument("run", help="a run folder with training_data/ (after `workbench data`), or its config")
    _training_arguments(tune, epochs=3)
    tune.add_argument("--method", choices=["lora", "prompt_tuning", "openai"], default="lora",
                      help="LoRA (embedded: run in llama.cpp; transformers: in-process), a soft prompt (run with "
                           "transformers + peft, base included), or openai: a hosted fine-tuning job at the run's "
                           "openai_compatible endpoint, its model re-tested there")
    tune.add_argument("--no-compare", action="store_true", help="train (and convert) only")
    _serve_argument(tune)
    tune.add_argument("--serve-config", default=None, metavar="FILE",
                      help="with --serve openai-compatible: a YAML file holding the serve block's keys (base_url, "
                           "model, adapter, ...), instead of the run's config.yaml serve:")
    tune.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
    _launch_arguments(tune)
    hosted = tune.add_argument_group("--method openai (a hosted job; finetune/openai/job.json lets a second call "
                                     "continue it)")
    hosted.add_argument("--base-model", default=None, metavar="NAME",
                        help="the model the provider tunes (default: the run's model)")
    hosted.add_argument("--poll", type=float, default=15.0, metavar="SECONDS", help="seconds between status checks")
    hosted.add_argument("--timeout", type=float, default=6 * 3600, metavar="SECONDS",
                        help="stop waiting after this long (the job keeps running; run again to continue)")
    hosted.add_argument("--resume", default=None, metavar="JOB_ID", help="follow this job instead of job.json's")
    hosted.add_argument("--new-job", action="store_true", help="start a new job even when job.json holds one")


def _add_loop(commands: argparse._SubParsersAction) -> None:
    loop = commands.add_parser("loop", help="run rounds of the loop: variants on the current model, points, training "
                                            "data, LoRA, re-test; each round in <run_dir>/rounds/<n>/")
    loop.add_argument("config", help="an experiment config whose model is local: kind embedded (each round's model "
                                     "in llama.cpp) or kind transformers with base_model: <folder> (in-process)")
    how_many = loop.add_mutually_exclusive_group()
    how_many.add_argument("--rounds", type=int, default=1, help="rounds to run after the finished ones (default 1)")
    how_many.add_argument("--until", type=int, default=None, metavar="N",
                          help="run rounds until N are finished (none when they are: a second call is free)")
    loop.add_argument("--limit", type=_limit_argument, default=None, metavar="N|all",
                      help="use a seeded sample of N examples; 0 or all: every example (default: the config's limit, "
                           "else all)")
    loop.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
    loop.add_argument("--variants", default=None, help="comma-separated variants instead of the config's")
    loop.add_argument("--train-variant", default="tuned",
                      help="the variant training rows are rendered with and the tuned model answers (no few-shot; "
                           "default tuned: the compact prompt, run by each round besides the experiment's variants)")
    loop.add_argument("--folder", default=None, help="the loop folder (default <run_dir>/rounds)")
    loop.add_argument("--no-replay", action="store_true", help="train only on this round's rows")
    loop.add_argument("--keep-worse", action="store_true",
                      help="build the next round on this round's model even when it fails the --margin gate")
    loop.add_argument("--regression-size", type=int, default=REGRESSION_SIZE, help="most regression cases per round")
    loop.add_argument("--margin", type=float, default=0.02,
                      help="build on a round only when its tuned model scores at least its start's score minus "
                           "MARGIN on all test cases and on the regression set (default 0.02)")
    loop.add_argument("--force", action="store_true",
                      help="run the round even when its settings differ from the last finished round's")
    loop.add_argument("--arms", default="targeted",
                      help="comma-separated arms each round trains on the same step budget: targeted (the round's "
                           "model, always included), random (as many pool rows, drawn at random), all (every pool "
                           "row); the others are references in finetune/<arm>/ and finetune/arms.csv")
    _anchors_argument(loop)
    loop.add_argument("--report-only", action="store_true", help="run no round: write rounds.html from finished ones")
    _serve_argument(loop)
    _training_arguments(loop, epochs=2)
    _launch_arguments(loop)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in --help: appended where its help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS, []) and action.option_strings != []
        if shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


class _CommandParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _limit_argument(text: str) -> int | None:
    try:
        return parse_limit(text, source="--limit")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _anchors_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anchors", type=float, default=DEFAULT_SHARE, metavar="SHARE",
                        help="add pool examples that balance the training labels, at most SHARE times the points' "
                             f"rows (default {DEFAULT_SHARE:g}; 0: none)")
    parser.add_argument("--near-duplicate", type=float, default=NEAR_DUPLICATE_COSINE, metavar="COSINE",
                        help="texts at this cosine or above (or equal) are one near-duplicate group, never split "
                             f"between training and test (default {NEAR_DUPLICATE_COSINE:g}, calibrated by "
                             "benchmarks/leakage_threshold.py)")


def _serve_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serve", choices=SERVE_MODES, default="in-process",
                        help="where the re-test's base and tuned model answer: in-process (llama.cpp or "
                             "transformers), or openai-compatible: the server the experiment config's serve: block "
                             "names, the tuned model as its adapter (vLLM --lora-modules, llama.cpp's server); a "
                             "name the server does not list is refused before the re-test")


def _launch_arguments(parser: argparse.ArgumentParser) -> None:
    """Which trainer runs a training step, and where: `workbench.finetune.launch.TrainingLaunch`."""
    group = parser.add_argument_group("the training step: its trainer, and a process group of its own "
                                      "(torchrun or accelerate launch; the re-test stays in this process)")
    group.add_argument("--trainer", choices=["workbench", "trl"], default="workbench",
                       help="workbench: the workbench's own loop; trl: TRL's SFTTrainer on the same rows, the HF chat "
                            "export's messages (LoRA only; pip install 'workbench[trl]')")
    group.add_argument("--launcher", choices=["in-process", "torchrun", "accelerate"], default="in-process",
                       help="in-process (the default): train in this process; torchrun or accelerate: as a process "
                            "group that torchrun or accelerate launch starts (one process per GPU; each takes its "
                            "share of every batch)")
    group.add_argument("--processes", type=int, default=None, metavar="N",
                       help="processes of a launched step (default: one per visible GPU, else 1)")
    group.add_argument("--launcher-args", default="", metavar="ARGS",
                       help="more arguments for the launcher, one quoted string, e.g. --launcher-args='--master_port "
                            "29600' (default: torchrun --standalone; accelerate --multi_gpu for several processes)")


def _training_arguments(parser: argparse.ArgumentParser, *, epochs: int) -> None:
    parser.add_argument("--epochs", type=int, default=epochs, help="passes over the training rows")
    parser.add_argument("--steps", type=int, default=None, help="train for this many steps instead of --epochs")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="the optimizer's (AdamW) learning rate")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r (alpha is 2r)")
    parser.add_argument("--batch-size", type=int, default=4, help="training rows per optimizer step")
    parser.add_argument("--max-length", type=int, default=MAX_LENGTH, metavar="TOKENS",
                        help=f"most tokens a training row may have, prompt and answer (default {MAX_LENGTH}); a "
                             "longer row is refused before any model call, naming it")
    parser.add_argument("--repeats", type=int, default=0,
                        help="also answer every test case N times at temperature 0.7 to compare consistency (0: no)")
