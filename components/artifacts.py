"""Typed artifacts that components exchange.

An artifact is a directory (its ``uri``) plus a few typed properties. The
metadata store records both; the directory holds the payload. Each type is one
small class whose docstring states its on-disk layout and properties.

Outputs are written to ``<pipeline_root>/<pipeline>/<component_id>/<output>/<execution_id>/``
and only appear there once the execution succeeded (see ``orchestration.execution``). On an
object-store root (``s3://``, ``gs://``) a component sees local staged copies; the published
prefix ends with the marker object ``_SLUICE_PUBLISHED``, written last, which readers skip
(see ``orchestration.object_store``).

>>> examples = Examples(uri="/tmp/ex", split_names=["train", "eval"], span=3)
>>> examples.split_uri("train")
'/tmp/ex/Split-train'
>>> Examples.from_record(examples.to_record()).span
3
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

# Filled by Artifact.__init_subclass__: type name -> class.
ARTIFACT_TYPES: dict[str, type[Artifact]] = {}


@dataclasses.dataclass(kw_only=True)
class Artifact:
    """A payload directory with typed properties.

    ``id`` is assigned by the metadata store when the artifact is published;
    ``fingerprint`` is a content hash of the directory, computed at publish time
    and used in downstream cache keys.
    """

    TYPE_NAME: ClassVar[str] = "Artifact"
    # Its KFP artifact class (system.Dataset, system.Model...), as KFP's UI and lineage show it.
    KFP_TYPE: ClassVar[str] = "Artifact"

    uri: str
    id: str | None = None
    fingerprint: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Custom artifact types register themselves so records round-trip.
        ARTIFACT_TYPES[cls.TYPE_NAME] = cls

    def path(self, *parts: str) -> str:
        """A path inside the artifact directory."""
        return os.path.join(self.uri, *parts)

    def report_files(self) -> dict[str, str]:
        """Human-readable HTML reports inside the artifact, by title (none by default)."""
        return {}

    @classmethod
    def ui_outputs(cls) -> dict[str, str]:
        """The Kubeflow UI outputs this type fills, by suffix, with their KFP artifact type.

        An output ``<name>`` of this type gets one more KFP output ``<name>_<suffix>`` for each
        (see ``fill_ui``). By default: ``report`` (HTML) when the type has ``report_files``.
        """
        return {"report": "HTML"} if cls.report_files is not Artifact.report_files else {}

    def fill_ui(self, outputs: dict[str, Any]) -> None:
        """Fills the KFP artifacts of ``ui_outputs`` (by suffix) from this artifact's payload.

        By default the ``report`` output becomes one HTML page of every report file there is.
        """
        report = outputs.get("report")
        if report is None:
            return
        import html
        import shutil

        files = [path for path in self.report_files().values() if os.path.isfile(path)]
        if len(files) == 1:  # a whole page, its script included
            shutil.copyfile(files[0], report.path)
            return
        sections = []
        for title, path in self.report_files().items():
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as fh:
                    body = fh.read()
                sections.append(f"<section><h2>{html.escape(title)}</h2>{body}</section>")
        with open(report.path, "w", encoding="utf-8") as fh:
            fh.write("<!doctype html><meta charset='utf-8'>" + "".join(sections))

    def summary(self, cached: bool = False) -> str | None:
        """One line on this artifact for a run's summary (``sluice runs list``), or None (the default).

        ``cached``: the execution that lists it reused an earlier one's outputs.
        """
        return None

    def properties(self) -> dict[str, Any]:
        """The type-specific properties (everything but uri, id and fingerprint)."""
        base = {"uri", "id", "fingerprint"}
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in base
        }

    def to_record(self) -> dict[str, Any]:
        """A plain-JSON description, as stored in the metadata store and the IR."""
        return {
            "type": self.TYPE_NAME,
            "uri": self.uri,
            "id": self.id,
            "fingerprint": self.fingerprint,
            "properties": self.properties(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Artifact:
        artifact_cls = ARTIFACT_TYPES.get(record.get("type"), cls)
        known = {f.name for f in dataclasses.fields(artifact_cls)}
        props = {k: v for k, v in (record.get("properties") or {}).items() if k in known}
        return artifact_cls(
            uri=record["uri"],
            id=record.get("id"),
            fingerprint=record.get("fingerprint"),
            **props,
        )


ARTIFACT_TYPES[Artifact.TYPE_NAME] = Artifact


@dataclasses.dataclass(kw_only=True)
class Examples(Artifact):
    """Rows of examples, one folder per split.

    Layout::

        <uri>/Split-<split>/part-<shard>-of-<shards>.parquet   (file_format="parquet")
        <uri>/Split-<split>/part-<shard>-of-<shards>.tfrecord.gz (file_format="tfrecord")

    Properties: ``split_names`` (e.g. ``["train", "eval"]``), ``span`` and
    ``version`` of the input data they came from, and ``file_format``.
    """

    TYPE_NAME: ClassVar[str] = "Examples"
    KFP_TYPE: ClassVar[str] = "Dataset"

    split_names: list[str] = dataclasses.field(default_factory=list)
    span: int = 0
    version: int | None = None
    file_format: str = "parquet"

    def split_uri(self, split: str) -> str:
        return self.path(f"Split-{split}")

    def parquet_pattern(self, split: str) -> str:
        """The glob of one split's Parquet shards."""
        return os.path.join(self.split_uri(split), "*.parquet")


@dataclasses.dataclass(kw_only=True)
class ExampleStatistics(Artifact):
    """Per-split dataset statistics in TFDV's format.

    Layout::

        <uri>/Split-<split>/FeatureStats.pb   (tensorflow_metadata DatasetFeatureStatisticsList, binary)
        <uri>/report.html                     (human-readable report: every split side by side)

    Properties: ``split_names``, ``span``.
    """

    TYPE_NAME: ClassVar[str] = "ExampleStatistics"

    split_names: list[str] = dataclasses.field(default_factory=list)
    span: int = 0

    def split_uri(self, split: str) -> str:
        return self.path(f"Split-{split}")

    def report_files(self) -> dict[str, str]:
        return {"statistics": self.path("report.html")}


@dataclasses.dataclass(kw_only=True)
class Schema(Artifact):
    """A tensorflow_metadata ``Schema``.

    Layout::

        <uri>/schema.pbtxt   (text format)

    No properties.
    """

    TYPE_NAME: ClassVar[str] = "Schema"

    @property
    def file(self) -> str:
        return self.path("schema.pbtxt")


@dataclasses.dataclass(kw_only=True)
class ExampleAnomalies(Artifact):
    """Per-split anomalies in TFDV's format.

    Layout::

        <uri>/Split-<split>/SchemaDiff.pb   (tensorflow_metadata Anomalies, binary)
        <uri>/Split-<split>/report.html

    Properties: ``split_names``, ``anomaly_count`` (total over splits).
    """

    TYPE_NAME: ClassVar[str] = "ExampleAnomalies"

    split_names: list[str] = dataclasses.field(default_factory=list)
    anomaly_count: int = 0

    def split_uri(self, split: str) -> str:
        return self.path(f"Split-{split}")

    def report_files(self) -> dict[str, str]:
        return {f"anomalies of split {s}": self.path(f"Split-{s}", "report.html") for s in self.split_names}


@dataclasses.dataclass(kw_only=True)
class TransformGraph(Artifact):
    """The preprocessing function traced into a SavedModel, with its analysis.

    Layout::

        <uri>/transform_fn/          (TF SavedModel: raw features -> transformed features; signature
                                      serving_default on serialized tf.Examples, function transform_fn
                                      on the raw features packed as tft.packed packs them)
        <uri>/transformed_metadata/schema.pbtxt
        <uri>/analysis.json          (the analyzers' computed constants, format_version)

    No properties.
    """

    TYPE_NAME: ClassVar[str] = "TransformGraph"


@dataclasses.dataclass(kw_only=True)
class Model(Artifact):
    """A trained model.

    Layout::

        <uri>/Format-Serving/   (TF SavedModel with a ``serving_default`` signature)

    Properties: ``framework`` (e.g. ``"tensorflow"``).
    """

    TYPE_NAME: ClassVar[str] = "Model"
    KFP_TYPE: ClassVar[str] = "Model"

    framework: str = "tensorflow"

    @property
    def serving_dir(self) -> str:
        return self.path("Format-Serving")


@dataclasses.dataclass(kw_only=True)
class HyperParameters(Artifact):
    """The best hyperparameters a Tuner found, as TFX writes them.

    Layout::

        <uri>/best_hyperparameters.txt   (JSON: keras-tuner's ``HyperParameters.get_config()``,
                                          ``{"space": [...], "values": {name: value}}``)
        <uri>/trials.json                (every trial: id, status, score, hyperparameter values)

    Properties: ``objective`` (the metric searched), ``best_score``, ``trials``.
    """

    TYPE_NAME: ClassVar[str] = "HyperParameters"

    objective: str = ""
    best_score: float | None = None
    trials: int = 0

    def summary(self, cached: bool = False) -> str | None:
        score = f"{self.best_score:.4g}" if self.best_score is not None else "-"
        return f"best {self.objective or 'score'} {score} of {self.trials} trial(s)"

    @property
    def file(self) -> str:
        return self.path("best_hyperparameters.txt")

    def read(self) -> dict[str, Any]:
        """The keras-tuner config (``keras_tuner.HyperParameters.from_config`` takes it)."""
        import json

        with open(self.file) as fh:
            return json.load(fh)


@dataclasses.dataclass(kw_only=True)
class ModelRun(Artifact):
    """Training-run side products: TensorBoard logs and checkpoints.

    Layout::

        <uri>/logs/   (TensorBoard event files)

    No properties.
    """

    TYPE_NAME: ClassVar[str] = "ModelRun"


@dataclasses.dataclass(kw_only=True)
class ModelEvaluation(Artifact):
    """Evaluation results of a model, overall and per slice.

    Layout::

        <uri>/metrics.json   ({"overall": {metric: value}, "slices": {"feature=value": {...}}})
        <uri>/report.html

    Properties: ``blessed`` (whether the thresholds passed), ``problem`` (binary, multiclass or
    regression: given, or inferred).
    """

    TYPE_NAME: ClassVar[str] = "ModelEvaluation"

    blessed: bool | None = None
    problem: str = ""

    @property
    def metrics_file(self) -> str:
        return self.path("metrics.json")

    def report_files(self) -> dict[str, str]:
        return {"evaluation": self.path("report.html")}

    @classmethod
    def ui_outputs(cls) -> dict[str, str]:
        """The report, the metrics (overall, and per slice as ``slice/<slice>/<metric>``), and the
        confusion matrix and ROC curve when computed."""
        return {**super().ui_outputs(), "metrics": "Metrics", "classification": "ClassificationMetrics"}

    def fill_ui(self, outputs: dict[str, Any]) -> None:
        super().fill_ui(outputs)
        if not os.path.isfile(self.metrics_file):
            return
        import json

        with open(self.metrics_file) as fh:
            evaluation = json.load(fh)
        metrics = outputs.get("metrics")
        if metrics is not None:
            small = set(evaluation.get("small_slices") or [])
            named = [("", evaluation.get("overall") or {})] + [
                (f"slice/{name}/", values) for name, values in (evaluation.get("slices") or {}).items()
                if name not in small]
            for prefix, values in named:
                for key, value in values.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        metrics.log_metric(prefix + key, float(value))
        classification = outputs.get("classification")
        plots = evaluation.get("plots") or {}
        if classification is not None:
            matrix = plots.get("confusion_matrix")
            if matrix:
                classification.log_confusion_matrix([str(c) for c in matrix["labels"]], matrix["matrix"])
            roc = plots.get("roc_curve")
            if roc:
                classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])


@dataclasses.dataclass(kw_only=True)
class InferenceResult(Artifact):
    """A model's predictions over examples (the BulkInferrer's output).

    Layout::

        <uri>/Split-<split>/part-NNNNN-of-MMMMM.parquet   (the kept input columns, then one column
                                                         per serving output: a number per row, or a
                                                         fixed-size list for a vector output)

    Properties: ``split_names``, ``model_uri`` (the model run), ``rows`` (in all splits),
    ``skipped`` and ``reason`` (no predictions: the model was not blessed).
    """

    TYPE_NAME: ClassVar[str] = "InferenceResult"
    KFP_TYPE: ClassVar[str] = "Dataset"

    split_names: list[str] = dataclasses.field(default_factory=list)
    model_uri: str = ""
    rows: int = 0
    skipped: bool = False
    reason: str = ""

    def split_uri(self, split: str) -> str:
        return self.path(f"Split-{split}")

    def summary(self, cached: bool = False) -> str | None:
        if self.skipped:
            return f"no predictions: {self.reason}"
        return f"{self.rows:,} predictions in {', '.join(self.split_names) or 'no split'}"


@dataclasses.dataclass(kw_only=True)
class ModelBlessing(Artifact):
    """Whether a model may be pushed, as TFX writes it.

    Layout::

        <uri>/BLESSED  or  <uri>/NOT_BLESSED   (empty marker file)

    Properties: ``blessed``, ``model_uri`` (the model judged), ``reason``.
    """

    TYPE_NAME: ClassVar[str] = "ModelBlessing"

    blessed: bool = False
    model_uri: str = ""
    reason: str = ""

    def summary(self, cached: bool = False) -> str | None:
        return f"{'blessed' if self.blessed else 'not blessed'}: {self.reason}" if self.reason else None


@dataclasses.dataclass(kw_only=True)
class PushedModel(Artifact):
    """The outcome of a push to a serving directory.

    Layout::

        <uri>/push.json   ({"pushed": bool, "version": int, "destination": str, "reason": str})

    Properties: ``pushed``, ``version``, ``destination`` (``<serving_dir>/<version>``),
    ``reason`` (why it was or was not pushed).
    """

    TYPE_NAME: ClassVar[str] = "PushedModel"

    pushed: bool = False
    version: int | None = None
    destination: str = ""
    reason: str = ""
    registered: str = ""  # "<name> version <n> @champion" when registered in MLflow

    def summary(self, cached: bool = False) -> str | None:
        """Whether the run pushed a model, and why (or why not)."""
        if cached:
            return f"nothing new to push (cached; version {self.version if self.pushed else '-'} stays)"
        if self.pushed:
            why = f" ({self.reason})" if self.reason else ""
            where = f" to {self.destination}" if self.destination else ""
            registered = f"; registered as {self.registered}" if self.registered else ""
            return f"pushed version {self.version}{where}{why}{registered}"
        return f"not pushed: {self.reason}"
