"""Put an engine together for a front end: worker pool, MLflow sink and controller."""
from __future__ import annotations

from typing import Any, Callable

from rftui.config.experiment import ExperimentSpec
from rftui.config.problems import ConfigError
from rftui.config.runspec import RunSpec
from rftui.engine.controller import Controller
from rftui.engine.layout import ExperimentDir
from rftui.engine.options import device_problem
from rftui.engine.store import Store
from rftui.errors import ExperimentError


def make_controller(exp: ExperimentDir, spec: ExperimentSpec, store: Store, *, workers: int = 1,
                    device: str = "auto", tracking_uri: str | None = None, tracking: bool = True,
                    create_model: Callable[..., Any] | str | None = None,
                    live_specs: dict[str, RunSpec] | None = None, backend: str | None = None,
                    backend_options: dict[str, Any] | None = None, preload: tuple[str, ...] | None = None,
                    on_warning: Callable[[str], None] | None = None) -> Controller:
    """A controller over a fresh worker pool. Nothing starts until `controller.start()`."""
    from rftui.engine.pool import WorkerPool, devices_for
    from rftui.engine.worker import DEFAULT_BACKEND

    problem = device_problem(device) if device not in ("auto", "cpu") else None
    if problem is not None:  # front ends check this first; a direct caller gets the same error
        raise ConfigError([problem])
    try:
        devices = devices_for(workers, use_cuda={"auto": None, "cpu": False, "cuda": True}[device])
    except RuntimeError as exc:  # the GPU went away between the check and here
        raise ExperimentError(f"{exc}; use --device cpu or auto") from None
    options = dict(backend_options or {})
    hook = create_model if create_model is not None else spec.create_model
    if hook is not None:
        options["create_model"] = hook
    if spec.data is not None:
        options.setdefault("hooks_base_dir", spec.data.base_dir)
    pool_kwargs = {} if preload is None else {"preload": preload}
    pool = WorkerPool(len(devices), devices, exp.logs, backend_spec=backend or DEFAULT_BACKEND,
                      backend_options=options, **pool_kwargs)
    controller = Controller(exp, spec, store, pool)
    if tracking:
        from rftui.tracking.mlflow_sink import MlflowSink, default_tracking_uri

        uri = tracking_uri or spec.tracking_uri or default_tracking_uri(exp.workdir)
        store.set_meta("tracking_uri", uri)
        controller.sink = MlflowSink(uri, spec.name, on_warning=on_warning or controller.warn,
                                     workdir=exp.workdir)
    for run_id, live in (live_specs or {}).items():
        if run_id in controller.runs:
            controller.runs[run_id].spec = live
    return controller
