"""Command line: the same pipeline as the notebooks, headless.

    workbench run configs/demo_complaints.yaml [--limit N|all] [--model FILE] [--dataset PATH] [--name NAME]
                                               [--fail-under [VARIANT:]METRIC=VALUE]  (exit 1 when short)
                                               [--batch openai]  (OpenAI's Batch API; a second call resumes)
    workbench runs [runs/demo_complaints]                      (the runs kept: runs/<name>/<run id>/, latest)
    workbench compare runs/a runs/b [--out FILE]               (runs side by side, paired tests, answers)
    workbench preview configs/demo_complaints.yaml [--variant NAME] [--example ID]
    workbench push runs/demo_complaints [--suggest-from V]    (a run folder, or the config that wrote it)
    workbench pull runs/demo_complaints                        (annotators' answers: snapshots under annotations/)
    workbench points runs/demo_complaints                      (training points from a run's errors)
    workbench points runs/demo_complaints --push-review        (annotators review them in Argilla)
    workbench points runs/demo_complaints --pull-review        (their answers update the points)
    workbench data runs/demo_complaints                        (training data and test cases per point)
    workbench export runs/demo_complaints [--train-spacy 200]  (OpenAI JSONL, HF datasets, spaCy baseline)
    workbench finetune runs/demo_complaints [--epochs 3]       (LoRA on the run's local model; before/after per point)
    workbench finetune runs/demo_complaints --trainer trl      (TRL's SFTTrainer; --launcher torchrun|accelerate)
    workbench finetune runs/gpt_run --method openai            (a hosted fine-tuning job; before/after per point)
    workbench finetune runs/demo_complaints --serve openai-compatible  (the re-test on the config's serve: server)
    workbench loop configs/demo_complaints.yaml [--rounds 2]   (rounds: variants, points, data, LoRA, re-test)
    workbench batch export configs/x.yaml requests.jsonl       (Batch API lines for vllm run-batch or any engine)
    workbench batch import configs/x.yaml results.jsonl        (their answers into the cache; then workbench run)
    workbench argilla up | down | status
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from workbench.cli.parser import build_parser
from workbench.core.errors import InputError, MissingInputError, OverwriteError, WorkbenchError
from workbench.experiments.config import load_experiment, load_model_config
from workbench.experiments.run_history import list_runs, write_run_to_history
from workbench.experiments.runs import load_run, run_experiment
from workbench.experiments.score_gate import (
    apply_thresholds,
    check_thresholds,
    describe_check,
    gate_scores,
    parse_threshold,
)
from workbench.models.base import GenerationOptions
from workbench.prompting.runner import build_requests
from workbench.prompting.templates import format_messages
from workbench.prompting.variants import parse_variant
from workbench.reporting.sections import write_report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in `argv` (default: the process's arguments) and return its exit status:
    0 done, 1 a run with failed requests or a --fail-under gate not met, 2 a `WorkbenchError`
    (one line naming what to fix; any other exception keeps its traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["argilla"]:
        # Its own argument parsing, so that `workbench argilla up --help` reaches it.
        from workbench_argilla_embedded import main as argilla_main  # the embedded server, an app-level tool

        return argilla_main(argv[1:])
    args = build_parser(__doc__ or "").parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    handlers = {"init": _init, "run": _run, "runs": _runs, "compare": _compare, "preview": _preview, "push": _push,
                "pull": _pull, "points": _points, "data": _data, "export": _export, "finetune": _finetune,
                "loop": _loop, "batch": _batch}
    try:
        return handlers[args.command](args)
    except WorkbenchError as exc:  # a mistake in what was given: one line, the fix, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2  # any other exception is a bug and keeps its traceback


def _variant_list(text: str | None) -> list[str] | None:
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def _load_run_argument(text: str):
    """The run a command's RUN argument names: a run folder, an experiment's folder of runs (its
    latest), or the experiment config that wrote them."""
    source = Path(text)
    if source.is_dir():
        return load_run(source)
    if source.is_file():
        return load_run(load_experiment(source).run_dir)
    raise MissingInputError(f"{text} is neither a run folder (runs/<name>, runs/<name>/<run id>) nor an experiment "
                            "config: `workbench runs` lists the runs there are")


def _init(args: argparse.Namespace) -> int:
    from workbench.core.importing import import_table
    from workbench.experiments.project_init import next_commands, write_project

    imported = import_table(args.data, text_column=args.text, label_column=args.label, id_column=args.id,
                            kind=args.kind, sep=args.sep, name=args.name)
    project = write_project(imported, args.out or imported.task.name, test_size=args.test_size, seed=args.seed,
                            overwrite=args.overwrite)
    print(f"{imported.source}: {len(imported.dataset)} rows, {imported.task.kind} task {imported.task.name!r} with "
          f"{len(imported.task.labels)} labels ({imported.task.kind.counted[1]} per label):")
    print(project.counts.to_string(index=False))
    for note in project.split.notes:
        print(f"note: {note}")
    print(f"wrote {project.folder}/: task.yaml, test.jsonl ({len(project.split.test)} rows), train.jsonl "
          f"({len(project.split.train)} rows, the few-shot pool) and experiment.yaml")
    print("next:\n" + "\n".join(next_commands(project)))
    return 0


def _selected_experiment(args: argparse.Namespace):
    """The experiment of ``args.config`` with the command line's --limit, --variants, --name,
    --dataset and --model."""
    return load_experiment(
        args.config, limit=args.limit, variants=_variant_list(args.variants), name=args.name,
        # A path typed on the command line is relative to where it was typed, not to the config.
        dataset=str(Path(args.dataset).resolve()) if args.dataset else None,
        model=load_model_config(args.model) if args.model else None,
    )


def _run(args: argparse.Namespace) -> int:
    thresholds = [parse_threshold(spec) for spec in args.fail_under]
    experiment = _selected_experiment(args)
    # Refused here, before any model call: a gate that cannot be checked must not cost a run.
    check_thresholds(thresholds, experiment.task, experiment.dataset,
                     [parse_variant(spec).name for spec in experiment.variants])
    print(
        f"{experiment.name}: {len(experiment.dataset)} examples x {len(experiment.variants)} variants "
        f"x {experiment.repeats} repeat(s) on {experiment.model_config.get('kind', 'embedded')} model"
    )
    if args.batch:
        from workbench.scale.batch_runs import batch_folder, batch_run

        result, batched = batch_run(experiment, retry=args.batch_retry, poll_s=args.poll, timeout_s=args.batch_timeout,
                                    progress=not args.no_progress)
        print(f"batch: {batched.submitted} request(s) submitted, {batched.resumed} batch(es) resumed, "
              f"{batched.answered} answer(s) stored, {len(batched.failed)} failed line(s) "
              f"({'sent directly' if args.batch_retry == 'direct' else 'recorded as row errors'}); "
              f"{batch_folder(experiment)}/batches.json")
    else:
        result = run_experiment(experiment, progress=not args.no_progress)
    run = write_run_to_history(result, experiment.run_dir)
    stats = run.stats
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print(run.summary().to_string(index=False))
    print(
        f"calls sent: {stats.get('calls_sent', 0)}, from cache: {stats.get('cache_hits', 0)}, "
        f"retries: {stats.get('retries', 0)}, failed: {stats.get('failed', 0)}"
    )
    if stats.get("failed"):
        # The counts alone leave a user guessing; the model's own words say what to fix.
        failures = run.predictions["request_error"].dropna().value_counts()
        for message, count in failures.head(3).items():
            print(f"request error ({count} rows): {message[:400]}")
    report = write_report(run.path / "report.html", run.task, run.dataset, run.predictions,
                          title=f"{experiment.name}: prompt variants", provenance=run.provenance,
                          config=args.config)
    print(f"wrote run {run.run_id} to {run.path}/")
    print(f"report: {report.resolve()}")
    gate_failed = False
    if thresholds:
        metrics = list(dict.fromkeys(threshold.metric for threshold in thresholds))
        checks = apply_thresholds(thresholds, gate_scores(run.predictions, run.dataset, run.task, metrics))
        for _, check in checks.iterrows():
            print(f"fail-under: {'passed' if check['passed'] else 'FAILED'}: {describe_check(check)}")
        failed = int((~checks["passed"]).sum())
        gate_failed = failed > 0
        print(f"fail-under: {failed} of {len(checks)} threshold(s) not met" if gate_failed
              else f"fail-under: passed ({len(checks)} threshold(s) met)")
    return 1 if stats.get("failed") or gate_failed else 0


def _batch(args: argparse.Namespace) -> int:
    from workbench.scale.batch_runs import export_batch, import_batch

    experiment = _selected_experiment(args)
    if args.batch_command == "export":
        count, files = export_batch(experiment, args.out, max_lines=args.max_lines)
        written = ", ".join(str(file) for file in files) or "none"
        print(f"{count} request(s) of {experiment.name} that its cache lacks: {written}")
        if files:
            print(f"next: vllm run-batch -i {files[0]} -o results.jsonl --model {experiment.model_config.get('model')}"
                  f" (each file), then: workbench batch import {args.config} results.jsonl")
        return 0
    outcome = import_batch(experiment, args.results)
    print(f"stored {outcome.answered} answer(s) in {experiment.run_dir / 'cache.sqlite'}; {len(outcome.failed)} "
          f"line(s) came back failed; {outcome.remaining} request(s) still without an answer")
    for key, why in list(outcome.failed.items())[:3]:
        print(f"failed: {key}: {why[:300]}")
    print(f"next: workbench run {args.config} (answers from the cache; the rest are sent directly)")
    return 0


def _runs(args: argparse.Namespace) -> int:
    table = list_runs(args.folder)
    shown = table.assign(
        run_id=table["run_id"] + table["latest"].map({True: " (latest)", False: ""}),
        started_at=table["started_at"].str.slice(0, 19).str.replace("T", " "),
        best=[f"{score:.3f} {metric} ({variant})" if variant else "" for score, metric, variant
              in zip(table["best_score"], table["metric"], table["best_variant"])],
    )[["name", "run_id", "started_at", "model", "n", "variants", "best"]]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(shown.to_string(index=False))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from workbench.reporting.compare_report import write_comparison

    runs = [load_run(path) for path in args.runs]
    out = Path(args.out) if args.out else runs[0].path.parent / "comparison.html"
    if out.exists() and not args.overwrite:
        raise OverwriteError(f"{out} exists: pass --overwrite to replace it, or --out for another file")
    report = write_comparison(out, runs)
    print(f"compared {len(runs)} run(s): {', '.join(run.run_id for run in runs)}")
    print(f"report: {report.resolve()}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from workbench.annotation import AnnotationError, push_errors
    from workbench.evaluation.errors import find_errors

    # The run folder is the artifact: pushing reads it and never calls the model again.
    run = _load_run_argument(args.run)
    errors = find_errors(run.predictions, run.dataset, run.task)
    if args.suggest_from is None:
        from workbench.experiments.stages import best_variant

        suggest_from = best_variant(run)
        print(f"suggestions from {suggest_from}, the run's best variant (--suggest-from for another)")
    else:
        suggest_from = args.suggest_from
    try:
        # ARGILLA_API_URL + ARGILLA_API_KEY when set; otherwise the embedded server, started explicitly here.
        client, server = _argilla_client()
        result = push_errors(client, run.task, errors, run.predictions, run.dataset,
                             variant=suggest_from, name=args.name or f"{run.name}_errors", order=args.order,
                             progress=not args.no_progress)
    except AnnotationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"pushed {result.records} records of run {run.run_id} with {suggest_from}'s answers as suggestions "
          f"to {result.dataset!r}")
    print(f"open {result.url}")
    if server.embedded:
        _print_embedded_login()
    return 0


def _pull(args: argparse.Namespace) -> int:
    """Snapshots of every dataset pushed for the run that is on the server; `workbench points
    --corrections` reads the corrections snapshot, `--pull-review` applies point reviews."""
    from workbench.annotation import AnnotationError, find_dataset, pull_corrections
    from workbench.experiments.runs import read_frame
    from workbench.points.review import pull_point_review

    run = _load_run_argument(args.run)
    base = args.review_name or run.name
    corrections_name, points_name, issues_name = args.name or f"{run.name}_errors", f"{base}_points", \
        f"{base}_label_issues"
    pulled = []
    try:
        client, _ = _argilla_client()
        for name in (corrections_name, issues_name):
            if find_dataset(client, name, None) is not None:
                frame = pull_corrections(client, run.task, name, out_dir=args.out)
                pulled.append((name, frame, "corrections" if name == corrections_name else "label-error verdicts"))
        if find_dataset(client, points_name, None) is not None and (run.path / "points.parquet").exists():
            reviews = pull_point_review(client, run.task, read_frame(run.path / "points.parquet"), points_name,
                                        out_dir=args.out)
            pulled.append((points_name, reviews, "point reviews"))
    except AnnotationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not pulled:
        raise MissingInputError(
            f"the Argilla server has none of {corrections_name!r}, {points_name!r}, {issues_name!r} for run "
            f"{run.run_id}: push first (`workbench push {args.run}`, `workbench points {args.run} "
            "--push-review`), or name the dataset with --name / --review-name")
    for name, frame, what in pulled:
        submitted = int((frame["status"] == "submitted").sum()) if not frame.empty else 0
        print(f"{name!r}: {submitted} submitted {what} of {len(frame)} responses; snapshot "
              f"{frame.attrs.get('snapshot_path')}")
    snapshots = [frame.attrs.get("snapshot_path") for name, frame, _ in pulled if name != points_name]
    if snapshots:
        print("next: workbench points " + args.run + "".join(f" --corrections {path}" for path in snapshots))
    if any(name == points_name for name, _, _ in pulled):
        print(f"apply the point reviews: workbench points {args.run} --pull-review")
    return 0


def _points(args: argparse.Namespace) -> int:
    from workbench.experiments.stages import cluster_run_errors

    run = _load_run_argument(args.run)
    corrections = None
    if args.corrections:
        from workbench.annotation.snapshots import load_corrections

        corrections = pd.concat([load_corrections(path, run.task) for path in args.corrections], ignore_index=True)
    corrections_given = corrections is not None
    base = args.review_name or run.name
    if args.pull_review:
        return _pull_point_review(args, run, corrections, f"{base}_points", f"{base}_label_issues")
    if (run.path / "points.parquet").exists() and not args.overwrite:
        if args.push_review and not corrections_given:  # the points there are the ones to review
            from workbench.experiments.runs import read_frame

            print(f"pushing the points in {run.path}/points.parquet (--overwrite clusters the errors again)")
            return _push_point_review(run, read_frame(run.path / "points.parquet"),
                                      read_frame(run.path / "point_assignments.parquet"),
                                      read_frame(run.path / "label_issues.parquet"), f"{base}_points",
                                      f"{base}_label_issues")
        raise OverwriteError(
            f"{run.path} has training points already (points.parquet): pass --overwrite to cluster its errors "
            "again (training data built from the old points goes stale), or --pull-review to apply annotators' "
            "review to them")
    clustered = cluster_run_errors(run, distance_threshold=args.distance_threshold, min_size=args.min_size,
                                   corrections=corrections)
    points, issues = clustered.points.points, clustered.points.label_issues
    if points.empty:
        print(f"run {run.run_id} has no errors: no training points")
        return 0
    _print_points(points)
    print(f"{len(clustered.errors)} errors in {len(points)} points ({int((points['kind'] == 'point').sum())} "
          f"training points); {int(issues['is_label_issue'].sum())} suspected label errors")
    print(f"wrote {run.path}/points.parquet, point_assignments.parquet, point_map.parquet and label_issues.parquet")
    print(f"report with its training-points section: {clustered.report.resolve()}")
    if args.push_review:
        return _push_point_review(run, points, clustered.points.assignments, issues, f"{base}_points",
                                  f"{base}_label_issues")
    return 0


def _print_points(points: pd.DataFrame) -> None:
    shown = points[["point_id", "size", "action", "name"]]
    with pd.option_context("display.width", 160, "display.max_colwidth", 90):
        print(shown.to_string(index=False))


def _argilla_client():
    """A client for ARGILLA_API_URL + ARGILLA_API_KEY when set, else for the embedded server
    (started if it is not running); raises AnnotationError saying why there is none."""
    from workbench.annotation import AnnotationError, connect
    from workbench_argilla_embedded import ArgillaServerError, resolve_server

    try:
        server = resolve_server()
    except ArgillaServerError as exc:
        raise AnnotationError(str(exc)) from exc
    return connect(server.api_url, server.api_key), server


def _push_point_review(run, points: pd.DataFrame, assignments: pd.DataFrame, issues: pd.DataFrame,
                       points_name: str, issues_name: str) -> int:
    from workbench.annotation import AnnotationError
    from workbench.points.label_issues import push_label_issues
    from workbench.points.review import push_point_review

    try:
        client, server = _argilla_client()
        result = push_point_review(client, run.task, points, assignments, points_name)
        print(f"pushed {result.records} errors with their proposed points to {result.dataset!r}: {result.url}")
        if issues["is_label_issue"].any():
            verdicts = push_label_issues(client, run.task, issues, run.predictions, run.dataset, name=issues_name,
                                         progress=False)
            print(f"pushed {verdicts.records} suspected label errors for a verdict to {verdicts.dataset!r}: "
                  f"{verdicts.url}")
    except AnnotationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if server.embedded:
        _print_embedded_login()
    print("when annotators are done: workbench points <run> --pull-review")
    return 0


def _print_embedded_login() -> None:
    from workbench_argilla_embedded.manage import DEFAULT_HOME

    print(f"log in as 'annotator' (or 'owner'); passwords are in {Path(DEFAULT_HOME).resolve()}/credentials.json")


def _pull_point_review(args: argparse.Namespace, run, corrections: pd.DataFrame | None, points_name: str,
                       issues_name: str) -> int:
    from workbench.annotation import AnnotationError, find_dataset, pull_corrections
    from workbench.experiments.runs import read_frame
    from workbench.points.label_issues import find_label_issues
    from workbench.points.review import apply_point_review, pull_point_review
    from workbench.points.run_points import write_points

    if not (run.path / "points.parquet").exists():
        raise MissingInputError(f"{run.path} has no points.parquet: run `workbench points {args.run} --push-review` "
                                "first, then let annotators review them")
    points = read_frame(run.path / "points.parquet")
    assignments = read_frame(run.path / "point_assignments.parquet")
    try:
        client, _ = _argilla_client()
        reviews = pull_point_review(client, run.task, points, points_name)
        verdicts = [] if corrections is None else [corrections]
        if find_dataset(client, issues_name, None) is not None:
            verdicts.append(pull_corrections(client, run.task, issues_name))
    except AnnotationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    issues = find_label_issues(run.predictions, run.dataset, run.task,
                               pd.concat(verdicts, ignore_index=True) if verdicts else None)
    updated, moved = apply_point_review(points, assignments, reviews, run.predictions, run.task, label_issues=issues)
    changed = int((moved["point_id"] != assignments["point_id"]).sum())
    write_points(run.path, updated, moved, issues, read_frame(run.path / "point_map.parquet"))
    point_map = read_frame(run.path / "point_map.parquet")
    report = write_report(run.path / "report.html", run.task, run.dataset, run.predictions,
                          title=f"{run.name}: prompt variants", points=updated, point_map=point_map)
    _print_points(updated)
    submitted = int((reviews["status"] == "submitted").sum()) if not reviews.empty else 0
    print(f"{submitted} answers from {points_name!r} (snapshot {reviews.attrs.get('snapshot_path')}): "
          f"{changed} error rows changed point; {int((updated['name_source'] == 'annotators').sum())} points renamed; "
          f"{int(issues['is_label_issue'].sum())} suspected label errors")
    print(f"updated {run.path}/points.parquet, point_assignments.parquet, point_map.parquet and label_issues.parquet")
    print(f"report: {report.resolve()}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from workbench.core.data import load_dataset
    from workbench.experiments.runs import read_frame
    from workbench.experiments.stages import build_run_training_data, write_training_data

    run = _load_run_argument(args.run)
    if not (run.path / "points.parquet").exists():
        raise MissingInputError(f"{run.path} has no points.parquet: run `workbench points {args.run}` first")
    points = read_frame(run.path / "points.parquet")
    assignments = read_frame(run.path / "point_assignments.parquet")
    pool = None if args.no_pool else (load_dataset(args.pool, run.task) if args.pool else run.examples)
    corrections = None
    if args.corrections:
        from workbench.annotation.snapshots import load_corrections

        corrections = pd.concat([load_corrections(path, run.task) for path in args.corrections], ignore_index=True)
    folder = run.path / "training_data"
    cases = folder / "test_cases.jsonl"
    if cases.exists() and not args.overwrite:
        raise OverwriteError(f"{folder} holds training data already: pass --overwrite to replace it")
    data = build_run_training_data(run, points, assignments, pool=pool, corrections=corrections,
                                   variant=args.train_variant, anchor_share=args.anchors,
                                   threshold=args.near_duplicate, regression_size=args.regression_size)
    write_training_data(data, folder, run.task, overwrite=args.overwrite)
    table = data.leakage.merge(data.counts().reset_index().groupby("point_id").sum(numeric_only=True),
                               on="point_id", how="left")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(index=False))
    for note in data.notes:
        print(f"note: {note}")
    print(f"{len(data.examples)} rows: {int((data.examples['split'] == 'train').sum())} train, "
          f"{int((data.examples['split'] == 'test').sum())} test; leaks: {int(data.leakage['leaks'].sum())}")
    print(f"wrote {folder}/examples.parquet, leakage.csv and test_cases.jsonl (a dataset `workbench run` evaluates)")
    return 0


def _training_examples(args: argparse.Namespace):
    """(run, training-data frame) of the run folder or config in ``args.run``."""
    from workbench.experiments.runs import read_frame

    run = _load_run_argument(args.run)
    stored = run.path / "training_data" / "examples.parquet"
    if not stored.exists():
        raise MissingInputError(f"{run.path} has no training_data/examples.parquet: run "
                                f"`workbench data {args.run}` first")
    return run, read_frame(stored)


def _export(args: argparse.Namespace) -> int:
    run, examples = _training_examples(args)
    out = Path(args.out) if args.out else run.path / "exports"
    formats = args.format or ["openai", "hf", "spacy"]
    if "openai" in formats:
        from workbench.trainingdata.openai_jsonl import write_chat_jsonl

        train = write_chat_jsonl(examples, out / "openai" / "train.jsonl", price_per_million=args.price,
                                 min_examples=args.min_examples, overwrite=args.overwrite)
        print(f"openai: {train.summary()}")
        if (examples["split"] == "test").any():  # the validation file a fine-tuning job may take
            test = write_chat_jsonl(examples, out / "openai" / "validation.jsonl", split="test", min_examples=1,
                                    overwrite=args.overwrite)
            print(f"openai: {test.summary()}")
    if "hf" in formats:
        from workbench.trainingdata.export_hf import save_dataset, to_chat_dataset, to_token_classification

        chat = save_dataset(to_chat_dataset(examples, run.task), out / "hf_chat", overwrite=args.overwrite)
        print(f"hf: chat rows for supervised fine-tuning in {chat} (datasets.load_from_disk)")
        # Only a kind whose rows are tagged tokens has this export; for it, a span off token
        # boundaries is an error naming the row, not a reason to skip the export quietly.
        if "ner_tags" in run.task.kind.hf_features(run.task):
            tokens = to_token_classification(examples, run.task)
            print(f"hf: tokens with IOB2 tags in {save_dataset(tokens, out / 'hf_tokens', overwrite=args.overwrite)}")
    if "spacy" in formats:
        from workbench.trainingdata.export_spacy import spacy_predictions, train_spacy, write_docbins

        spacy_export = write_docbins(examples, run.task, out / "spacy", overwrite=args.overwrite)
        print(f"spacy: {spacy_export.docs} docs ({spacy_export.pipeline}) in {spacy_export.train_path.parent}; "
              f"{spacy_export.unaligned} span(s) not on token boundaries left out (alignment mode strict)")
        if args.train_spacy:
            from workbench.trainingdata.scoring import score_points

            model = train_spacy(spacy_export, out / "spacy" / "model", max_steps=args.train_spacy)
            scores = score_points(spacy_predictions(model, examples, run.task), examples, run.task)
            with pd.option_context("display.width", 160, "display.precision", 3):
                print(scores.drop(columns=["variant"]).to_string(index=False))
            print(f"spacy: baseline trained for {args.train_spacy} steps in {model}")
    return 0


def _training_launch(args: argparse.Namespace):
    """The `TrainingLaunch` of the command line's --trainer, --launcher, --processes and --launcher-args."""
    import shlex

    from workbench.finetune.launch import TrainingLaunch

    return TrainingLaunch(trainer=args.trainer, launcher=args.launcher, processes=args.processes,
                          launcher_args=tuple(shlex.split(args.launcher_args)))


def _finetune(args: argparse.Namespace) -> int:
    from workbench.finetune.base_model import check_adapter_base
    from workbench.finetune.checks import check_training_rows
    from workbench.finetune.launch import TrainingLaunch, check_launch, train_step
    from workbench.finetune.local_models import (
        base_path,
        first_process,
        require_local,
        served_adapter,
    )
    from workbench.finetune.lora import AdapterSettings
    from workbench.trainingdata.examples import one_row_per_example

    launch = _training_launch(args)
    if args.method == "openai":  # a hosted job: workbench/cli/hosted_finetune.py
        if launch != TrainingLaunch():
            raise InputError("--trainer, --launcher, --processes and --launcher-args choose how a local training "
                             "runs; --method openai is trained by the provider: leave them out")
        from workbench.cli.hosted_finetune import finetune_hosted

        run, examples = _training_examples(args)
        _serve_block(args, run)  # refuses --serve: a hosted job makes no adapter for a server
        return finetune_hosted(args, run, examples)
    settings = AdapterSettings(method=args.method, r=args.rank, alpha=2 * args.rank, learning_rate=args.learning_rate,
                               epochs=args.epochs, max_steps=args.steps, batch_size=args.batch_size,
                               max_length=args.max_length)
    check_launch(launch, settings)  # TRL or the launcher missing, a soft prompt for TRL: before anything is read
    run, examples = _training_examples(args)
    serve = _serve_block(args, run)  # None: the re-test in-process (the default)
    model_config = dict(run.config.get("model") or {"kind": "embedded"})
    kind = require_local(model_config, f"run {run.name}")  # embedded (GGUF, llama.cpp) or transformers (a folder)
    base_file = base_path(model_config)  # the GGUF file or the transformers model folder trained on
    train = one_row_per_example(examples[examples["split"] == "train"])
    check_training_rows(train, run.task)
    folder = run.path / "finetune" / args.method
    served_by_config = args.method == "lora" or kind == "transformers"  # llama.cpp serves no soft prompt
    trained = None  # None: trained already, the adapter a server serves (--serve openai-compatible only)
    if serve is None or not _trained_already(folder, train, settings, served_adapter(model_config, folder), launch):
        names = [f"example {e} (point {p})" for e, p in zip(train["example_id"], train["point_id"])]
        trained = train_step(list(train["messages"]), folder, model_config, settings=settings, names=names,
                             progress=not args.no_progress, launch=launch)
    if not first_process():
        return 0  # under torchrun or `accelerate launch`, the first process converts and compares
    if trained is not None:
        adapter = served_adapter(model_config, folder) if served_by_config else trained.path
        resumed = f" (resumed from step {trained.resumed_from})" if trained.resumed_from else ""
        how = "" if launch == TrainingLaunch() else (f" by {launch.trainer}, {launch.launcher}, "
                                                   f"{trained.record.get('processes', 1)} process(es)")
        print(f"trained {trained.steps} steps on {len(train)} rows ({trained.supervised_tokens:,} supervised tokens)"
              f"{resumed}{how}: loss {trained.losses[0]:.3f} -> {trained.losses[-1]:.3f}; adapter {adapter}")
    if args.no_compare:
        return 0

    check_adapter_base(folder / "training.json", base_file)
    if serve is not None:  # both on the server: the base without the adapter, the tuned model with it
        base, tuned = _served_models(serve, folder)
    else:
        base, tuned = _local_models(model_config, folder, trained, served_by_config)
    return retest_tuned(run, examples, base, tuned, folder, repeats=args.repeats, progress=not args.no_progress)


def _local_models(model_config: dict, folder: Path, trained, served_by_config: bool):
    """(base, tuned) in this process for the training in `folder` (`trained`: its `TrainedAdapter`):
    on the runtime the base was evaluated on when `served_by_config` (llama.cpp with adapter.gguf,
    or transformers with the peft adapter), else both on transformers (llama.cpp has no soft
    prompts), so that the runtime is not the difference."""
    from workbench.finetune.base_model import load_base
    from workbench.finetune.local_models import tuned_model_config
    from workbench.models.registry import model_from_config

    if served_by_config:
        base = model_from_config(model_config)  # the run's own settings (n_ctx, n_threads; device, dtype)
        return base, model_from_config(tuned_model_config(model_config, folder))
    from workbench.finetune.transformers_model import TransformersModel, load_tuned

    base = TransformersModel(*load_base(model_config.get("model_path")), name="SmolLM2-135M-Instruct")
    return base, load_tuned(trained.path, load_base(model_config.get("model_path")))


def _serve_block(args: argparse.Namespace, run) -> dict | None:
    """The serve: block the re-test uses with ``--serve openai-compatible`` (``--serve-config``'s
    file, else the run's config.yaml), its base checked on the server before anything is trained;
    None in-process. Raises InputError for a missing block or a method a server cannot serve."""
    if args.serve != "openai-compatible":
        if args.serve_config:
            raise InputError("--serve-config names the server of --serve openai-compatible: add that, or drop it")
        return None
    from workbench.finetune.serving import adapter_name, pull_checked, served_configs, validate_serve_config
    from workbench.models.registry import model_from_config

    if args.method != "lora":
        raise InputError(f"--serve openai-compatible re-tests a LoRA adapter on a server (vLLM --lora-modules, "
                         f"llama.cpp's server); --method {args.method} makes none: use --method lora, or drop --serve")
    if args.serve_config:
        source = Path(args.serve_config)
        if not source.is_file():
            raise MissingInputError(f"--serve-config {source} does not exist")
        block, where = yaml.safe_load(source.read_text(encoding="utf-8")), str(source)
    else:
        block, where = run.config.get("serve"), f"{run.path}/config.yaml"
    if block is None:
        raise InputError(f"--serve openai-compatible: {where} has no serve: block; add one to the experiment config "
                         "(serve: {base_url: http://HOST:PORT/v1, api_key_env: null, model: BASE, adapter: NAME}) "
                         "and run it again, or pass --serve-config FILE")
    serve = validate_serve_config(block, source=f"{where}: serve")
    base, _ = served_configs(serve, tuned=adapter_name(serve, None))
    pull_checked(model_from_config(base), ())  # a base the server lacks is refused before any training
    return serve


def _trained_already(folder: Path, train: pd.DataFrame, settings, served: Path, launch) -> bool:
    """Whether `folder` holds this training (`train`'s rows, `settings`: an `AdapterSettings`, by
    `launch`'s trainer), finished, with its `served` adapter written: the file a server was started
    with, so ``--serve`` re-tests it rather than training (and converting) it again."""
    from workbench.finetune.serving import read_finished_training

    record = read_finished_training(folder, list(train["messages"]), settings, served, trainer=launch.trainer)
    if record is not None:
        print(f"trained already: {record['steps']} steps on {record['rows']} rows ({folder / 'training.json'}); "
              f"adapter {served}")
    return record is not None


def _served_models(serve: dict, folder: Path):
    """(base, tuned) on the serve: block's server, both checked against its listing (`pull_served_pair`)."""
    from workbench.finetune.serving import pull_served_pair

    pair = pull_served_pair(serve, folder)
    for note in pair.notes:
        print(f"note: {note}")
    print(f"re-test on {pair.tuned.identity['endpoint']}: base {pair.base.request_model!r}, "
          f"tuned {pair.tuned.adapter!r}")
    return pair.base, pair.tuned


def retest_tuned(run, examples: pd.DataFrame, base, tuned, folder: Path, *, repeats: int = 0,
                 progress: bool = True) -> int:
    """Answer every point's test cases with `base` and `tuned` (and the base's best prompt:
    `stages.retest`), write the tables to `folder` and the run's ``finetune/points_by_method.csv``,
    and print them: the end of every fine-tuning method, local or hosted."""
    from workbench.experiments.stages import best_variant, retest

    build_file = run.path / "training_data" / "build.json"
    build = json.loads(build_file.read_text(encoding="utf-8")) if build_file.exists() else {"variant": "zero_shot"}
    result, methods = retest(run, examples, base, tuned, folder, variant=build["variant"],
                             options=GenerationOptions(**(run.config.get("options") or {})), repeats=repeats,
                             pool=run.examples, progress=progress)
    _print_before_after(result, best_variant(run))
    print(f"wrote {folder}/before_after.csv, efficiency.csv and predictions.parquet")
    with pd.option_context("display.width", 180, "display.precision", 2, "display.max_colwidth", 40):
        print(methods.to_string(index=False))
    print(f"which method fixes which point: {run.path}/finetune/points_by_method.csv")
    return 0


def _print_before_after(result, best: str) -> None:
    with pd.option_context("display.width", 180, "display.precision", 3, "display.max_columns", 20):
        print(result.table.to_string(index=False))
        if result.versus_best is not None:
            print(f"tuned against the base model with its best prompt ({best}), on all test cases:")
            print(result.versus_best.tail(1).to_string(index=False))
        print(result.efficiency[["variant", "prompt", "latency_p50_s", "latency_p95_s", "tokens_in_mean",
                                 "parse_failure_rate"]].to_string(index=False))
        if not result.consistency.empty:
            print(result.consistency.to_string(index=False))


def _best_prompt_start(record: dict) -> str:
    """Where the gate measured the round against the start's best prompt, not its answers with the
    training variant, that figure: otherwise "0.000 -> 0.000" hides that the start scored 0.182."""
    check = next((c for c in record.get("gate") or [] if c.get("set") == "all test cases"), None)
    if not check or check.get("start_prompt") != "best prompt":
        return ""
    return f"; the start's best prompt scored {check['base']:.3f} on them, the gate's start"


def _loop(args: argparse.Namespace) -> int:
    from workbench.experiments.round_comparison import write_loop_report
    from workbench.experiments.rounds import RoundError, RoundSettings, finished_rounds, loop_folder, run_round
    from workbench.finetune.lora import AdapterSettings

    experiment = load_experiment(args.config, limit=args.limit, variants=_variant_list(args.variants))
    folder = Path(args.folder) if args.folder else loop_folder(experiment)
    training = AdapterSettings(r=args.rank, alpha=2 * args.rank, learning_rate=args.learning_rate, epochs=args.epochs,
                               max_steps=args.steps, batch_size=args.batch_size, checkpoint_every=10,
                               max_length=args.max_length)
    settings = RoundSettings(variant=args.train_variant, training=training, replay=not args.no_replay,
                             compare_repeats=args.repeats, regression_size=args.regression_size,
                             keep_worse=args.keep_worse, anchor_share=args.anchors, margin=args.margin,
                             near_duplicate=args.near_duplicate,
                             arms=tuple(arm.strip() for arm in args.arms.split(",") if arm.strip()),
                             serve=args.serve, launch=_training_launch(args))
    wanted = args.rounds if args.until is None else max(0, args.until - len(finished_rounds(folder)))
    for _ in range(0 if args.report_only else wanted):
        try:
            done = run_round(experiment, folder=folder, settings=settings, progress=not args.no_progress,
                             force=args.force)
        except RoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        counts = done.record.get("counts", {})
        every = done.record.get("all_test_cases")
        print(f"round {done.number} ({done.record['started_from']}) in {done.path}: "
              + (f"{counts['points']} training points, {counts['train_rows']} rows trained "
                 f"({counts['replayed_rows']} replayed); all test cases {every['base']:.3f} -> {every['tuned']:.3f} "
                 f"({every['verdict']}, {every['cases']} cases){_best_prompt_start(done.record)}"
                 if every else done.record.get("stopped", "")))
        if done.record.get("rejected_because"):
            print(f"round {done.number}'s tuned model is {done.record['rejected_because']}: kept for "
                  "the record, not built on; the next round starts from the model it started from "
                  "(--keep-worse builds on it anyway)")
        if done.adapter is None:
            break  # nothing was trained: a next round would start from the same model
    if not finished_rounds(folder):
        print(f"no finished rounds in {folder}")
        return 0
    report, comparison = write_loop_report(folder)
    with pd.option_context("display.width", 200, "display.precision", 3, "display.max_columns", 30):
        print(comparison.summary.drop(columns=["started_from", "variant", "rejected_because"]).to_string(index=False))
        statuses = comparison.points.groupby(["round", "status"]).size().unstack(fill_value=0)
        print(statuses.to_string())
    print(f"{len(comparison.new_points)} new points, {len(comparison.regressions)} regressions; report: "
          f"{report.resolve()}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.config)
    dataset = experiment.dataset
    if args.example is not None:
        dataset = dataset[dataset["example_id"] == args.example]
        if dataset.empty:
            raise InputError(f"example_id {args.example!r} is not in {args.config}'s dataset")
    variants = [v for v in experiment.variants if args.variant in (None, parse_variant(v).name)]
    if not variants:
        names = [parse_variant(v).name for v in experiment.variants]
        raise InputError(f"variant {args.variant!r} is not in {args.config}; its variants are {names}")
    requests = build_requests(experiment.task, dataset.head(1), variants, examples=experiment.examples,
                              template_dir=experiment.template_dir)  # the config's templates: folder first
    for row in requests.itertuples():
        print(f"===== {row.variant} / {row.example_id} =====")
        print(format_messages(row.messages))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
