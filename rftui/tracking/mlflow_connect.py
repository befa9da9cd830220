"""Opening the MLflow tracking store for the sink's thread: the client and the experiment.

``mlflow`` is imported here, lazily (about a second of imports), on the sink's thread.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from rftui.tracking.mlflow_values import error_code, sqlite_path

PROBE_TIMEOUT = 5.0  # seconds a tracking server has to answer the first request


class TrackingServerUnreachable(ConnectionError):
    """Nothing answers at an http(s) tracking URI."""


def connect(tracking_uri: str, experiment_name: str, artifact_location: str | None, *,
            quiet: bool) -> tuple[Any, str]:
    """An MlflowClient for `tracking_uri` and the experiment id; raises when the store is unusable."""
    from mlflow.tracking import MlflowClient  # lazy: about a second of imports, on the sink's thread

    if quiet:
        _quiet_mlflow_loggers()
    check_server_answers(tracking_uri)
    db_path = sqlite_path(tracking_uri)
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    return client, ensure_experiment(client, experiment_name, artifact_location, db_path)


def is_http(tracking_uri: str) -> bool:
    """True for a tracking server URI (http or https), which can go away while a sink uses it."""
    return tracking_uri.lower().startswith(("http://", "https://"))


def check_server_answers(tracking_uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise TrackingServerUnreachable when an http(s) tracking server does not answer one quick request.

    MLflow's own client retries a refused or silent server for about four minutes (7 retries, growing
    backoff) before it raises: the sink's warning would come that late, the first start_run would wait its
    whole timeout and closing would wait on the retries. Any HTTP answer, even an error status, passes:
    MLflow's requests then say what is wrong. TLS problems are left to MLflow too (it may be told to
    accept the certificate)."""
    if not is_http(tracking_uri):
        return
    import requests  # an MLflow dependency

    url = tracking_uri.rstrip("/") + "/health"
    try:
        requests.get(url, timeout=timeout, stream=True, allow_redirects=False).close()
    except requests.exceptions.SSLError:
        return
    except requests.exceptions.Timeout as exc:
        raise TrackingServerUnreachable(f"no answer within {timeout:g} s") from exc
    except requests.exceptions.RequestException as exc:
        text = str(exc).lower()
        why = ("connection refused" if "refused" in text
               else "host name not found" if "resolve" in text or "name or service" in text
               else "cannot connect")
        raise TrackingServerUnreachable(why) from exc


def ensure_experiment(client: Any, experiment_name: str, artifact_location: str | None,
                      db_path: Path | None) -> str:
    """The id of the named experiment: created (artifacts beside an SQLite store) or restored when deleted."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        location = artifact_location
        if location is None and db_path is not None:
            safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", experiment_name) or "experiment"
            location = (db_path.parent.resolve() / "mlartifacts" / safe).as_uri()
        try:
            return client.create_experiment(experiment_name, artifact_location=location)
        except Exception as exc:  # created meanwhile by another sink/process
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _quiet_mlflow_loggers() -> None:
    """Keep MLflow/alembic from writing to stderr (the TUI owns the terminal): their records
    propagate to the application's logging configuration instead."""
    for name in ("mlflow", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers = [logging.NullHandler()]
        logger.propagate = True
