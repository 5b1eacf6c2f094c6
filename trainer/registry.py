"""A directory-backed model registry with promotion and rollback.

::

    <root>/models/<model_id>/model.pt      state dict + model spec + label names + dim
    <root>/models/<model_id>/meta.json     metrics, snapshot version (lineage to Kafka
                                           offsets via its manifest), config, seed, timings
    <root>/models/<model_id>/report.png    loss curve, per-label F1 vs the previous model
    <root>/PROMOTED                        id of the promoted model (the champion)
    <root>/CANDIDATE                       a model in shadow or canary rollout (JSON:
                                           model, mode, fraction, since), if any
    <root>/history.jsonl                   promotions, rollbacks and rollout decisions,
                                           append-only

Entries appear atomically (written to a temporary directory, then renamed), so a failed
or killed training leaves the registry as it was. A file lock serialises writers.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import TrainerError
from .model import LogitAdjust, build_model

log = logging.getLogger(__name__)


@dataclass
class ModelEntry:
    id: str
    path: Path
    meta: dict

    @property
    def macro_f1(self) -> float:
        return float(self.meta["metrics"]["macro_f1"])

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["label_names"])


_MODEL_ID = re.compile(r"m\d{4,9}-[0-9a-f]{1,16}")


def check_model_id(model_id: object) -> str:
    """A well-formed model id (``m0001-0123abcd``): ids come from files and requests, and
    only such a name may become a path inside the registry."""
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
        raise TrainerError(f"registry: not a model id: {str(model_id)[:80]!r}")
    return model_id


def _read_meta(d: Path) -> dict:
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise TrainerError(f"model {d.name}: meta.json unreadable ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("created_at"), int | float):
        raise TrainerError(f"model {d.name}: meta.json is not a model entry")
    return meta


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "models").mkdir(parents=True, exist_ok=True)
        # entries of trainings killed mid-write (never visible: they were not renamed)
        for tmp in (self.root / "models").glob(".tmp-*"):
            if time.time() - tmp.stat().st_mtime > 3_600:
                shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock: never two trainings or registry changes at once. Whoever takes
        it first finishes what a killed writer left half done (:meth:`recover`)."""
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                self.recover()
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def recover(self) -> list[str]:
        """Finish what a writer killed mid-way left (call under :meth:`lock`):

        * the history (``history.jsonl``, appended and fsynced first) is the truth, and
          ``PROMOTED`` is rewritten to its last promoted model when they disagree;
        * an entry whose training decided to promote it, newer than the last promotion
          in the history, is promoted (the kill came between writing it and promoting).

        * temporary entries (``models/.tmp-*``, ``.PROMOTED.tmp``) are removed: writers
          hold the lock, so whatever is left under it belongs to a writer that died.

        Returns what was done (for logs and tests)."""
        done = []
        for tmp in [*(self.root / "models").glob(".tmp-*"), self.root / ".PROMOTED.tmp",
                    self.root / ".CANDIDATE.tmp"]:  # fmt: skip
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
                done.append(f"removed {tmp.name}")
            elif tmp.exists():
                tmp.unlink(missing_ok=True)
                done.append(f"removed {tmp.name}")
        hist = [h for h in self.history() if h.get("action") in ("promote", "rollback")]
        last = hist[-1] if hist else None
        entries = self.list()
        pending = [
            e for e in entries
            if e.meta.get("decision") == "promote"
            and (last is None or e.meta["created_at"] > last.get("at", 0))
            and not any(h.get("model") == e.id for h in hist)
        ]  # fmt: skip
        if pending:
            e = pending[-1]
            reason = e.meta.get("decision_reason", "promoted by its training")
            self._set_promoted(e.id, "promote", f"{reason} (finished after an interruption)")
            done.append(f"promoted {e.id}")
            return done
        cur = (self.root / "PROMOTED").read_text().strip() if (
            self.root / "PROMOTED").exists() else None  # fmt: skip
        if last is not None and cur != last["model"]:
            self._write_promoted(last["model"])
            done.append(f"PROMOTED set to {last['model']} (history's last)")
        return done

    # ---------------------------------------------------------------- entries
    def list(self) -> list[ModelEntry]:
        """Entries, oldest first; a damaged or foreign entry is logged and skipped."""
        out = []
        for d in sorted((self.root / "models").iterdir()):
            if d.name.startswith(".") or not (d / "meta.json").exists():
                continue
            try:
                out.append(ModelEntry(check_model_id(d.name), d, _read_meta(d)))
            except TrainerError as e:
                log.error("registry %s: skipping %s: %s", self.root, d.name, e)
        return sorted(out, key=lambda e: e.meta["created_at"])

    def get(self, model_id: str) -> ModelEntry:
        d = self.root / "models" / check_model_id(model_id)
        if not (d / "meta.json").exists():
            raise TrainerError(f"registry {self.root}: no model {model_id!r}")
        return ModelEntry(model_id, d, _read_meta(d))

    def add(self, model: torch.nn.Module, meta: dict, png: bytes | None = None) -> ModelEntry:
        n = len(self.list()) + 1
        model_id = f"m{n:04d}-{meta['snapshot_version'][:8]}"
        meta = {**meta, "id": model_id, "created_at": time.time()}
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root / "models"))
        try:
            torch.save(
                {
                    "state_dict": model.state_dict(),
                    "spec": meta["config"]["model"],
                    "label_names": meta["label_names"],
                    "dim": meta["dim"],
                    "logit_adjust": isinstance(model, LogitAdjust),
                },
                tmp / "model.pt",
            )
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            if png is not None:
                (tmp / "report.png").write_bytes(png)
            os.replace(tmp, self.root / "models" / model_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(model_id)

    def load_model(self, model_id: str) -> tuple[torch.nn.Module, ModelEntry]:
        e = self.get(model_id)
        try:
            blob = torch.load(e.path / "model.pt", map_location="cpu", weights_only=True)
        except Exception as ex:  # unreadable or tampered file
            raise TrainerError(f"model {model_id}: cannot load model.pt ({ex})") from ex
        if not (
            isinstance(blob, dict)
            and isinstance(blob.get("state_dict"), dict)
            and isinstance(blob.get("label_names"), list)
            and all(isinstance(x, str) for x in blob["label_names"])
        ):
            raise TrainerError(f"model {model_id}: model.pt is not a model file of this trainer")
        if blob["label_names"] != e.label_names or blob.get("dim") != e.meta.get("dim"):
            raise TrainerError(f"model {model_id}: model.pt disagrees with meta.json")
        model = build_model(blob.get("spec"), blob.get("dim"), len(blob["label_names"]))
        if blob.get("logit_adjust") is True:
            model = LogitAdjust(model, torch.zeros(len(blob["label_names"])))
        try:
            model.load_state_dict(blob["state_dict"])  # strict: names and shapes must match
        except (RuntimeError, TypeError, ValueError) as ex:
            raise TrainerError(
                f"model {model_id}: weights do not fit the architecture ({ex})"
            ) from None
        model.eval()
        return model, e

    # ---------------------------------------------------------------- promotion
    def promoted(self) -> ModelEntry | None:
        p = self.root / "PROMOTED"
        return self.get(p.read_text().strip()) if p.exists() else None  # id checked by get

    def history(self) -> list[dict]:
        p = self.root / "history.jsonl"
        return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []

    def promote(self, model_id: str, reason: str) -> None:
        self.get(model_id)
        self._set_promoted(model_id, "promote", reason)

    def rollback(self, reason: str = "manual rollback") -> ModelEntry:
        """Promote the model that was promoted before the current one."""
        current = self.promoted()
        chain = [h["model"] for h in self.history() if h["action"] in ("promote", "rollback")]
        if current is None or len(chain) < 2:
            raise TrainerError(f"registry {self.root}: nothing to roll back to")
        # walk back past the current model to the previous distinct promoted one
        for model_id in reversed(chain[:-1]):
            if model_id != current.id:
                self._set_promoted(model_id, "rollback", f"{reason} (from {current.id})")
                return self.get(model_id)
        raise TrainerError(f"registry {self.root}: nothing to roll back to")

    # ---------------------------------------------------------------- rollout
    def candidate(self) -> dict | None:
        """The model in rollout (``{"model", "mode", "fraction", "since"}``), or None. A
        file that does not hold a valid rollout (tampered, or naming a missing model) is
        an error naming it, never a silently served model."""
        p = self.root / "CANDIDATE"
        if not p.exists():
            return None
        try:
            c = json.loads(p.read_text())
            mode, frac = c["mode"], float(c["fraction"])
            check_model_id(c["model"])
        except (OSError, ValueError, KeyError, TypeError, TrainerError) as e:
            raise TrainerError(f"registry {self.root}: CANDIDATE is not a rollout ({e})") from None
        if mode not in ("shadow", "canary") or not 0.0 <= frac <= 1.0:
            raise TrainerError(f"registry {self.root}: CANDIDATE: mode {mode!r}, fraction {frac}")
        self.get(c["model"])
        return {"model": c["model"], "mode": mode, "fraction": frac, "since": c.get("since")}

    def start_rollout(self, model_id: str, mode: str, fraction: float, reason: str) -> None:
        """Put ``model_id`` beside the champion: ``shadow`` (answers recorded, never
        returned) or ``canary`` (answers ``fraction`` of the requests). Call under
        :meth:`lock`."""
        if mode not in ("shadow", "canary"):
            raise TrainerError(f"mode: expected shadow or canary, got {mode!r}")
        if not 0.0 < fraction <= 1.0:
            raise TrainerError(f"fraction: expected (0, 1], got {fraction}")
        self.get(model_id)
        cur = self.promoted()
        if cur is not None and cur.id == model_id:
            raise TrainerError(f"model {model_id} is the champion already")
        self._append_history({"action": "rollout", "model": model_id, "mode": mode,
                              "fraction": fraction, "reason": reason})  # fmt: skip
        body = {"model": model_id, "mode": mode, "fraction": fraction, "since": time.time()}
        tmp = self.root / ".CANDIDATE.tmp"
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.root / "CANDIDATE")

    def end_rollout(self, decision: str, reason: str, evidence: dict | None = None) -> str:
        """End the rollout: ``promote`` makes the candidate the champion, ``reject`` (a
        rollback of the canary) leaves the champion. Recorded in the history. Call under
        :meth:`lock`. Returns the candidate's id."""
        c = self.candidate()
        if c is None:
            raise TrainerError(f"registry {self.root}: no model in rollout")
        if decision not in ("promote", "reject"):
            raise TrainerError(f"decision: expected promote or reject, got {decision!r}")
        self._append_history({"action": "rollout_end", "model": c["model"], "decision": decision,
                              "reason": reason, "evidence": evidence or {}})  # fmt: skip
        if decision == "promote":
            self._set_promoted(c["model"], "promote", f"rollout: {reason}")
        (self.root / "CANDIDATE").unlink(missing_ok=True)
        return c["model"]

    def _append_history(self, entry: dict) -> None:
        with open(self.root / "history.jsonl", "a") as f:
            f.write(json.dumps({"at": time.time(), **entry}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _set_promoted(self, model_id: str, action: str, reason: str) -> None:
        # the history first (it is the truth, see recover), then the PROMOTED pointer
        with open(self.root / "history.jsonl", "a") as f:
            f.write(
                json.dumps(
                    {"at": time.time(), "action": action, "model": model_id, "reason": reason}
                )
                + "\n"
            )
            f.flush()
            os.fsync(f.fileno())
        self._write_promoted(model_id)

    def _write_promoted(self, model_id: str) -> None:
        tmp = self.root / ".PROMOTED.tmp"
        tmp.write_text(model_id)
        os.replace(tmp, self.root / "PROMOTED")
